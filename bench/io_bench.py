"""Checkpoint I/O: monoquant vs the reference readers and writer, one run.

  .venv/bin/python bench/io_bench.py [--gib 1.0] [--repeat 3]

Writes a ~1 GiB state dict (256 float32 tensors) to a temporary directory
under /tmp and removes it afterwards. Reported, median of --repeat runs, with
the file in the page cache (a warm read: parsing and mapping cost, not the disk):
  * open + touch: open the file and read one element of every tensor;
  * open + read all: open and sum every tensor (every byte read; torch.sum
    dominates, so expect ~1x);
  * write: the whole state dict to a new file. monoquant fsyncs before its
    atomic rename; safetensors.save_file and torch.save do not, so their
    numbers are also given with an explicit os.fsync for a fair comparison.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

import torch
from safetensors.torch import load_file, save_file

from monoquant import io as mqio


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def touch(sd):
    s = 0.0
    for t in sd.values():
        s += float(t.reshape(-1)[0])
    return s


def read_all(sd):
    s = 0.0
    for t in sd.values():
        s += float(t.sum())
    return s


def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = 256
    per = int(args.gib * (1 << 30) / 4 / n)
    sd = {f"layer.{i}.weight": torch.randn(per) for i in range(n)}
    total = sum(t.numel() * 4 for t in sd.values())
    tmp = tempfile.mkdtemp(prefix="mq_io_bench_", dir="/tmp")
    rows = []
    try:
        st = os.path.join(tmp, "m.safetensors")
        pt = os.path.join(tmp, "m.pt")
        save_file(sd, st)
        torch.save(sd, pt)
        # Correctness before speed.
        ours = mqio.load_state_dict(st)
        assert all(torch.equal(ours[k], sd[k]) for k in sd)
        ours = mqio.load_state_dict(pt)
        assert all(torch.equal(ours[k], sd[k]) for k in sd)
        del ours
        r = args.repeat
        a = timed(lambda: touch(mqio.load_state_dict(st)), r)
        b = timed(lambda: touch(load_file(st)), r)
        rows.append(("safetensors open + touch", a, "safetensors.torch.load_file", b))
        a = timed(lambda: read_all(mqio.load_state_dict(st)), r)
        b = timed(lambda: read_all(load_file(st)), r)
        rows.append(("safetensors open + read all", a, "safetensors.torch.load_file", b))
        a = timed(lambda: touch(mqio.load_state_dict(pt)), r)
        b = timed(lambda: touch(torch.load(pt, mmap=True, weights_only=True)), r)
        rows.append((".pt open + touch", a, "torch.load(mmap=True, weights_only=True)", b))
        a = timed(lambda: read_all(mqio.load_state_dict(pt)), r)
        b = timed(lambda: read_all(torch.load(pt, mmap=True, weights_only=True)), r)
        rows.append((".pt open + read all", a, "torch.load(mmap=True, weights_only=True)", b))
        # Writes go to a path that does not exist yet (removed, untimed, before each run),
        # so no run pays for freeing the previous run's file; peers alternate with us.
        def timed_write(write, path):
            times = []
            for _ in range(r):
                if os.path.exists(path):
                    os.remove(path)
                t0 = time.perf_counter()
                write(path)
                times.append(time.perf_counter() - t0)
            os.remove(path)
            return statistics.median(times)
        out = os.path.join(tmp, "w.safetensors")
        a = timed_write(lambda p: mqio.save_state_dict(sd, p), out)
        b = timed_write(lambda p: save_file(sd, p), out)
        c = timed_write(lambda p: (save_file(sd, p), fsync(p)), out)
        rows.append(("safetensors write (fsync)", a, "safetensors save_file (no fsync)", b))
        rows.append(("safetensors write (fsync)", a, "safetensors save_file + fsync", c))
        out = os.path.join(tmp, "w.pt")
        a = timed_write(lambda p: mqio.save_state_dict(sd, p), out)
        c = timed_write(lambda p: (torch.save(sd, p), fsync(p)), out)
        rows.append((".pt write (fsync)", a, "torch.save + fsync", c))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"checkpoint I/O, {total / 2**30:.2f} GiB in {n} float32 tensors, median of {args.repeat}, page cache warm")
    print(f"{'monoquant':32s} {'s':>8s}   {'peer':44s} {'s':>8s}  {'peer / monoquant':>16s}")
    for name, a, peer, b in rows:
        print(f"{name:32s} {a:8.3f}   {peer:44s} {b:8.3f}  {b / a:15.2f}x")


if __name__ == "__main__":
    main()
