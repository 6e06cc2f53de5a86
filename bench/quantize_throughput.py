#!/usr/bin/env python3
"""Quantization throughput on one float32 matrix (default 4096 x 4096, 64 MiB):
monoquant against torch doing the same job, and against a memcpy of the same
bytes (the bandwidth ceiling), with 1 and 2 threads, all in one run.

    .venv/bin/python bench/quantize_throughput.py [--reps 15] [--json bench/results/run.json]

Method. For each thread count (torch.set_num_threads and
monoquant.set_num_threads both set), every op is first run --warmup times,
then the ops are timed round-robin: repetition i runs op A, op B, ... once
each, so that load from other processes lands on all of them alike. Each
timing is one call (wall clock); the table shows the median over --reps
repetitions, and every ratio divides two medians of the same run.

Columns:
    GB/s      input bytes (the float32 matrix, 10^9 bytes) / median time
    vs torch  torch's median time / monoquant's, for the same job
    %memcpy   effective bandwidth (bytes read + bytes written, each counted
              once) / time, as a fraction of memcpy's (2 x matrix bytes) / time;
              memcpy = monoquant._core.copy_bytes into a preallocated buffer,
              at the same thread count
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch

import monoquant
from monoquant import _core

# torch.quantize_per_channel warns that quantized dtypes are deprecated; the
# baseline is still what torch offers for this job.
warnings.filterwarnings("ignore", message=".*quantize_per_channel.*deprecated.*")
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")

GROUP = 128


@dataclass
class Op:
    name: str          # the job: int8_per_channel, int4_g128, fp16, memcpy
    impl: str          # monoquant | torch
    fn: Callable[[], object]
    moved_bytes: int   # bytes read + bytes written, each counted once
    note: str = ""


@dataclass
class Row:
    op: str
    impl: str
    threads: int
    median_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    gb_per_s: float
    moved_bytes: int
    speedup_vs_torch: Optional[float] = None
    frac_memcpy: Optional[float] = None
    frac_torch_copy: Optional[float] = None
    # The same ratios as medians of per-repetition ratios (the two ops of a
    # pair ran back to back, so slow drifts in machine load cancel).
    speedup_vs_torch_paired: Optional[float] = None
    frac_memcpy_paired: Optional[float] = None
    note: str = ""
    samples_ms: list = field(default_factory=list)


# ---------------------------------------------------------------- the jobs

def torch_int8_per_channel(x: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 per output channel (rows), as torch does it."""
    scales = x.abs().amax(dim=1) / 127
    return torch.quantize_per_channel(x, scales.double(), zeros, 0, torch.qint8)


def torch_int4_g128(x: torch.Tensor):
    """Symmetric int4, one scale per 128 consecutive elements of a row, two codes
    per byte (first in the low nibble, stored as q + 8): monoquant's layout,
    in plain torch ops."""
    rows, k = x.shape
    g = x.view(rows, k // GROUP, GROUP)
    scales = g.abs().amax(dim=2, keepdim=True) / 7
    scales = torch.where(scales == 0, torch.ones_like(scales), scales)
    q = torch.round(g * scales.reciprocal()).clamp_(-7, 7).add_(8).to(torch.uint8).view(rows, k)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    return packed, scales.view(rows, k // GROUP)


def build_ops(x: torch.Tensor, dst: torch.Tensor) -> list[Op]:
    rows, k = x.shape
    n = x.numel()
    xb = n * 4
    zeros = torch.zeros(rows, dtype=torch.int64)
    int8_out = n + rows * 4
    int4_out = n // 2 + rows * (k // GROUP) * 4
    return [
        Op("memcpy", "monoquant", lambda: _core.copy_bytes(dst, x), 2 * xb,
           "_core.copy_bytes into a preallocated buffer: the ceiling"),
        Op("memcpy", "torch", lambda: dst.copy_(x), 2 * xb, "dst.copy_(x), for reference"),
        Op("int8_per_channel", "monoquant", lambda: monoquant.quantize_tensor(x, bits=8), xb + int8_out),
        Op("int8_per_channel", "torch", lambda: torch_int8_per_channel(x, zeros), xb + int8_out,
           "amax scales + torch.quantize_per_channel"),
        Op("int4_g128", "monoquant", lambda: monoquant.quantize_tensor(x, bits=4), xb + int4_out),
        Op("int4_g128", "torch", lambda: torch_int4_g128(x), xb + int4_out,
           "view/amax/mul/round/clamp/to(uint8)/nibble pack"),
        Op("fp16", "monoquant", lambda: monoquant.quantize_tensor(x, bits=16), xb + n * 2,
           "also checks NaN/Inf/overflow"),
        Op("fp16", "torch", lambda: x.to(torch.float16), xb + n * 2, "x.to(torch.float16)"),
    ]


def check_same_job(x: torch.Tensor) -> dict:
    """Not timed: both sides of each comparison produce the same bits."""
    zeros = torch.zeros(x.shape[0], dtype=torch.int64)
    out = {}
    mq8 = monoquant.quantize_tensor(x, bits=8)
    t8 = torch_int8_per_channel(x, zeros)
    out["int8_per_channel"] = {
        "codes_differ": int((mq8.codes != t8.int_repr()).sum()),
        "scales_equal": bool(torch.equal(mq8.scale.double(), t8.q_per_channel_scales())),
    }
    mq4 = monoquant.quantize_tensor(x, bits=4)
    p4, s4 = torch_int4_g128(x)
    out["int4_g128"] = {
        "bytes_differ": int((mq4.codes != p4).sum()),
        "scales_equal": bool(torch.equal(mq4.scale, s4)),
    }
    h = monoquant.quantize_tensor(x, bits=16).codes
    out["fp16"] = {"values_differ": int((h.view(torch.int16) != x.to(torch.float16).view(torch.int16)).sum())}
    return out


# ---------------------------------------------------------------- timing

def time_round_robin(ops: list[Op], reps: int, warmup: int) -> list[list[float]]:
    for op in ops:
        for _ in range(warmup):
            op.fn()
    samples: list[list[float]] = [[] for _ in ops]
    for _ in range(reps):
        for i, op in enumerate(ops):
            t0 = time.perf_counter_ns()
            r = op.fn()
            t1 = time.perf_counter_ns()
            del r  # freed outside the timed region
            samples[i].append((t1 - t0) / 1e6)
    return samples


def quantiles(v: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return q[0], statistics.median(v), q[2]


def run(threads: int, x: torch.Tensor, dst: torch.Tensor, reps: int, warmup: int) -> list[Row]:
    torch.set_num_threads(threads)
    monoquant.set_num_threads(threads)
    ops = build_ops(x, dst)
    samples = time_round_robin(ops, reps, warmup)
    xb = x.numel() * 4
    rows = []
    for op, s in zip(ops, samples):
        p25, med, p75 = quantiles(s)
        rows.append(Row(op.name, op.impl, threads, med, p25, p75, min(s), xb / (med / 1e3) / 1e9,
                        op.moved_bytes, note=op.note, samples_ms=[round(v, 4) for v in s]))
    by = {(r.op, r.impl): r for r in rows}
    memcpy_bw = by[("memcpy", "monoquant")].moved_bytes / by[("memcpy", "monoquant")].median_ms
    tcopy_bw = by[("memcpy", "torch")].moved_bytes / by[("memcpy", "torch")].median_ms
    memcpy_row = by[("memcpy", "monoquant")]
    for r in rows:
        bw = r.moved_bytes / r.median_ms
        r.frac_memcpy = bw / memcpy_bw
        r.frac_torch_copy = bw / tcopy_bw
        r.frac_memcpy_paired = statistics.median(
            (r.moved_bytes / t) / (memcpy_row.moved_bytes / m) for t, m in zip(r.samples_ms, memcpy_row.samples_ms))
        if r.impl == "monoquant" and r.op != "memcpy":
            torch_row = by[(r.op, "torch")]
            r.speedup_vs_torch = torch_row.median_ms / r.median_ms
            r.speedup_vs_torch_paired = statistics.median(
                t / m for t, m in zip(torch_row.samples_ms, r.samples_ms))
    return rows


# ---------------------------------------------------------------- report

def fmt_opt(v: Optional[float], f: str) -> str:
    return "-" if v is None else format(v, f)


def print_table(rows: list[Row]) -> None:
    head = (f"{'op':<17} {'impl':<9} {'thr':>3} {'median ms':>9} {'p25..p75 ms':>15} {'GB/s':>6} "
            f"{'vs torch':>8} {'%memcpy':>7}  note")
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        if last is not None and r.threads != last:
            print()
        last = r.threads
        spread = f"{r.p25_ms:.2f}..{r.p75_ms:.2f}"
        speed = "-" if r.speedup_vs_torch is None else f"{r.speedup_vs_torch:.2f}x"
        print(f"{r.op:<17} {r.impl:<9} {r.threads:>3} {r.median_ms:>9.2f} {spread:>15} {r.gb_per_s:>6.2f} "
              f"{speed:>8} {100 * r.frac_memcpy:>6.0f}%  {r.note}")


def targets(rows: list[Row]) -> list[dict]:
    out = []
    for r in rows:
        if (r.op, r.impl) != ("int8_per_channel", "monoquant"):
            continue
        out.append({"threads": r.threads, "target": ">= 5x torch", "value": r.speedup_vs_torch,
                    "paired": r.speedup_vs_torch_paired, "met": r.speedup_vs_torch >= 5.0})
        out.append({"threads": r.threads, "target": ">= 50% of memcpy bandwidth", "value": r.frac_memcpy,
                    "paired": r.frac_memcpy_paired, "met": r.frac_memcpy >= 0.5,
                    "vs_torch_copy": r.frac_torch_copy})
    return out


def environment() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "monoquant": monoquant.__version__,
        "monoquant_isa": _core.active_isa(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096, help=f"a multiple of {GROUP} (int4 g128)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=21, help="timed repetitions per op (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per op before timing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="also write all results (and raw samples) here")
    args = ap.parse_args(argv)
    if args.cols % GROUP:
        ap.error(f"--cols must be a multiple of {GROUP}")

    torch.manual_seed(args.seed)
    x = torch.randn(args.rows, args.cols, dtype=torch.float32)
    dst = torch.empty_like(x)
    dst.copy_(x)  # touch every page of the memcpy target once, before timing
    env = environment()
    mb = x.numel() * 4 / 2**20
    print(f"monoquant {env['monoquant']} ({env['monoquant_isa']}) vs torch {env['torch']} "
          f"({env['torch_cpu_capability']}); {env['cpu']}, {env['cpu_count']} CPUs, "
          f"load average {env['loadavg_start'][0]:.2f}")
    print(f"input: {args.rows} x {args.cols} float32 ({mb:.0f} MiB), N(0, 1); "
          f"{args.reps} timed repetitions per op, round-robin, after {args.warmup} warm-up calls")
    same = check_same_job(x)
    print(f"same job check (untimed): {json.dumps(same)}")
    print()
    print("GB/s = input bytes (10^9) / median time.  vs torch = torch median / monoquant median.")
    print("%memcpy = effective bandwidth ((bytes read + bytes written) / time) relative to memcpy's")
    print(f"          (2 x {mb:.0f} MiB) / time, memcpy = monoquant._core.copy_bytes at the same thread count.")
    print()

    rows: list[Row] = []
    for t in args.threads:
        rows += run(t, x, dst, args.reps, args.warmup)
    print_table(rows)

    print()
    print("int8 per-channel targets (monoquant):")
    tg = targets(rows)
    for t in tg:
        if "torch" in t["target"]:
            v, p, extra = f"{t['value']:.2f}x", f"{t['paired']:.2f}x", ""
        else:
            v, p = f"{100 * t['value']:.0f}%", f"{100 * t['paired']:.0f}%"
            extra = f"; against torch's dst.copy_ instead: {100 * t['vs_torch_copy']:.0f}%"
        print(f"  threads={t['threads']}: {t['target']:<28} {v:>7}  {'MET' if t['met'] else 'MISSED':<6} "
              f"(median of paired ratios {p}{extra})")
    for r in rows:
        if r.impl == "monoquant" and r.op in ("int4_g128", "fp16"):
            print(f"  threads={r.threads}: {r.op} vs torch {r.speedup_vs_torch:.2f}x, "
                  f"{100 * r.frac_memcpy:.0f}% of memcpy bandwidth")
    env["loadavg_end"] = os.getloadavg()
    print(f"load average at the end: {env['loadavg_end'][0]:.2f} (on a shared machine, compare ratios, "
          f"not absolute times)")

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"environment": env, "config": vars(args), "same_job_check": same,
                       "definitions": {
                           "gb_per_s": "input bytes / median time / 1e9",
                           "speedup_vs_torch": "torch median time / monoquant median time",
                           "frac_memcpy": "((bytes read + bytes written) / median time) / "
                                          "((2 x input bytes) / memcpy median time), same thread count",
                       },
                       "rows": [asdict(r) for r in rows], "targets": tg}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
