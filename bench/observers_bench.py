"""Observers side by side with torch.ao's, in one run.

For each pair, one repeat = observe `--batches` batches of `--numel` float32
values, then compute the quantization parameters once. Each repeat starts
from a fresh observer; the figure is the median over `--repeats` repeats,
and the ratio is torch's median over ours. Both sides get the same batches,
already in memory, and the same number of threads (torch's intra-op threads
and monoquant's pool, default: all cores).

Pairs: monoquant.HistogramObserver vs torch.ao.quantization.HistogramObserver
(torchao's copy, torchao.quantization.pt2e.observer, when torch no longer
ships one) and monoquant.MinMaxObserver vs torch.ao MinMaxObserver.
Scenarios: "iid" (independent N(0, 1) batches, fresh from memory: the range
settles early), "growing" (batch i scaled by 1 + i / batches: the range grows
every batch, which makes both histograms re-bin every time) and "hot" (the
same iid batches but only two distinct ones, so they sit in the last-level
cache, as an activation does when a forward hook sees it right after the
layer that wrote it).

Both sides are bound by memory traffic in "iid": 1M floats are 4 MB per
batch, so neither can beat the machine's read bandwidth; "hot" shows the
compute side.

    python bench/observers_bench.py [--batches 100] [--numel 1048576] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import torch

import monoquant


def torch_observers():
    try:
        from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver
        return HistogramObserver, MinMaxObserver, "torch.ao.quantization.observer"
    except ImportError:
        from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver
        return HistogramObserver, MinMaxObserver, "torchao.quantization.pt2e.observer"


def run_ours(make, batches):
    obs = make()
    t0 = time.perf_counter()
    for b in batches:
        obs.observe(b)
    scale, zero_point = obs.calculate_qparams(8, "asymmetric")
    return time.perf_counter() - t0, scale.item()


def run_torch(make, batches):
    obs = make()
    t0 = time.perf_counter()
    for b in batches:
        obs(b)
    scale, zero_point = obs.calculate_qparams()
    return time.perf_counter() - t0, scale.item()


def median_time(fn, make, batches, repeats):
    times, scale = [], None
    for _ in range(repeats):
        t, scale = fn(make, batches)
        times.append(t)
    return statistics.median(times), min(times), max(times), scale


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--numel", type=int, default=1 << 20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="threads for both sides (default: torch's)")
    p.add_argument("--scenario", choices=["iid", "growing", "hot", "all"], default="all")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    warnings.filterwarnings("ignore")
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    monoquant.set_num_threads(threads)
    THist, TMinMax, source = torch_observers()
    print(f"observers: {args.batches} batches x {args.numel} float32, median of {args.repeats}, "
          f"{threads} threads; torch {torch.__version__} ({source}), monoquant {monoquant.__version__} "
          f"(isa {monoquant._core.active_isa()})")
    print(f"{'scenario':<9} {'observer':<10} {'monoquant ms':>13} {'torch ms':>10} {'ratio':>8}   "
          f"(min..max ms: monoquant | torch)")

    scenarios = ["iid", "growing", "hot"] if args.scenario == "all" else [args.scenario]
    results = []
    g = torch.Generator().manual_seed(0)
    for scenario in scenarios:
        batches = []
        for i in range(args.batches):
            if scenario == "hot" and i >= 2:
                batches.append(batches[i % 2])
                continue
            b = torch.randn(args.numel, generator=g)
            if scenario == "growing":
                b *= 1 + i / args.batches
            batches.append(b)
        pairs = [("histogram", monoquant.HistogramObserver, THist),
                 ("minmax", monoquant.MinMaxObserver, TMinMax)]
        for name, ours, theirs in pairs:
            # Interleave the two sides so that both see the same machine load.
            o_times, t_times = [], []
            for _ in range(args.repeats):
                o_times.append(run_ours(ours, batches)[0])
                t_times.append(run_torch(theirs, batches)[0])
            o, t = statistics.median(o_times), statistics.median(t_times)
            ratio = t / o
            print(f"{scenario:<9} {name:<10} {o * 1e3:13.1f} {t * 1e3:10.1f} {ratio:7.1f}x   "
                  f"({min(o_times) * 1e3:.1f}..{max(o_times) * 1e3:.1f} | "
                  f"{min(t_times) * 1e3:.1f}..{max(t_times) * 1e3:.1f})")
            results.append({"scenario": scenario, "observer": name, "monoquant_ms": o * 1e3, "torch_ms": t * 1e3,
                            "ratio": ratio, "monoquant_all_ms": [x * 1e3 for x in o_times],
                            "torch_all_ms": [x * 1e3 for x in t_times]})
        del batches
    targets = {"histogram": 50.0, "minmax": 5.0}
    for r in results:
        r["target"] = targets[r["observer"]]
        r["meets_target"] = r["ratio"] >= r["target"]
    missed = [f"{r['scenario']}/{r['observer']} {r['ratio']:.1f}x < {r['target']:.0f}x" for r in results
              if not r["meets_target"]]
    print("targets (histogram >= 50x, minmax >= 5x): " + ("all met" if not missed else "missed: " + ", ".join(missed)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": threads, "batches": args.batches, "numel": args.numel, "results": results}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
