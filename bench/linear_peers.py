"""Side-by-side CPU timings of quantized linear layers, all peers in one run.

    .venv/bin/python bench/linear_peers.py                 # full grid
    .venv/bin/python bench/linear_peers.py --quick         # M in {1, 8}, two shapes
    .venv/bin/python bench/linear_peers.py --threads 1 --shapes 4096x4096

Grid: M in {1, 8, 32, 128}; (K, N) in {(384, 384), (384, 1536), (1536, 384),
(4096, 4096), (4096, 11008)}; 1 and 2 threads (torch and monoquant both set).

Peers (each skipped with the reason printed when it does not install or run):
  fp32          torch F.linear (nn.Linear)
  bf16          torch F.linear in bfloat16 (oneDNN; AMX tiles where the CPU has them)
  ao_dyn        torch.ao quantize_dynamic qint8 on the 'x86' engine (FBGEMM)
  ao_onednn     the same on the 'onednn' engine
  tao_w8a8      torchao Int8DynamicActivationInt8WeightConfig
  tao_w8        torchao Int8WeightOnlyConfig
  tao_w4        torchao int4 weight-only on CPU: Int4WeightOnlyConfig needs
                CUDA/mslk in torchao 0.18, so IntxWeightOnlyConfig(int4,
                PerGroup(128)) stands in
  quanto_w8 / quanto_w4   optimum-quanto qint8 / qint4 weights
  mq_*          monoquant: w8a8 (dynamic), w8a8s (static), w7a8 (7-bit weights,
                dynamic), w8 / w4 (g=128)
                weight-only, w4a8, f16, bf16; on AMX CPUs also mq_w8a8_vnni /
                mq_w8_vnni, the same layers pinned to the AVX-512 VNNI set
Before timing, every peer's output is compared with fp32 on the same input
(relative error, printed and written with the table).
Each cell is the median of repeated timings of one call (microseconds), the
peers of a cell timed round-robin;
ratios are speed-ups (peer time / monoquant time) measured in the same run.
Results are printed and written to bench/results/linear_peers.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn

import monoquant
from monoquant import ops

warnings.filterwarnings("ignore")

M_VALUES = [1, 8, 32, 128]
SHAPES = [(384, 384), (384, 1536), (1536, 384), (4096, 4096), (4096, 11008)]


def time_cell(fns: dict, x, budget_s=0.25, min_reps=5, settle_s=0.005):
    """Median microseconds per call of each fn, timed round-robin: repetition
    i runs every peer's batch of calls back to back, so that load from other
    processes on this shared machine hits all peers of a cell alike. Before
    each batch the process sleeps settle_s: the previous peer's worker
    threads (torch's OpenMP team, monoquant's pool) spin for a while after
    their last call, and on a 2-core machine they would otherwise take the
    cores from the next peer's threads (a stall of a scheduler tick)."""
    inner, one = {}, {}
    for name, fn in fns.items():
        for _ in range(2):
            fn(x)
        t0 = time.perf_counter()
        fn(x)
        one[name] = max(time.perf_counter() - t0, 1e-7)
        inner[name] = max(1, int(0.01 / one[name]))
    per_rep = sum(one[n] * inner[n] for n in fns)
    reps = max(min_reps, min(25, int(budget_s * len(fns) / max(per_rep, 1e-9))))
    samples = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            if settle_s:
                time.sleep(settle_s)
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn(x)
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return {name: statistics.median(v) * 1e6 for name, v in samples.items()}


def build_peers(lin: nn.Linear, x_cal: torch.Tensor, skipped: dict, only=None):
    peers = {}

    def add(name, make):
        if only is not None and name not in only:
            return
        try:
            f = make()
            with torch.no_grad():
                f(x_cal)
            peers[name] = f
        except Exception as e:  # a peer that does not run is reported, not fatal
            skipped.setdefault(name, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")

    add("fp32", lambda: lin)

    def bf16():  # torch's own bf16 Linear: oneDNN, on AMX tiles where the CPU has them
        lb = copy.deepcopy(lin).to(torch.bfloat16)
        return lambda x: lb(x.to(torch.bfloat16)).float()
    add("bf16", bf16)

    def ao_dyn(engine):
        def make():
            torch.backends.quantized.engine = engine
            m = torch.ao.quantization.quantize_dynamic(nn.Sequential(copy.deepcopy(lin)), {nn.Linear},
                                                       dtype=torch.qint8)

            def run(x):
                torch.backends.quantized.engine = engine
                return m(x)
            return run
        return make
    add("ao_dyn", ao_dyn("x86"))
    add("ao_onednn", ao_dyn("onednn"))

    try:
        import torchao.quantization as tq
        from torchao.quantization import quantize_

        def tao(config):
            def make():
                m = nn.Sequential(copy.deepcopy(lin))
                quantize_(m, config())
                return m
            return make
        add("tao_w8a8", tao(lambda: tq.Int8DynamicActivationInt8WeightConfig()))
        add("tao_w8", tao(lambda: tq.Int8WeightOnlyConfig()))

        def tao_w4():
            from torchao.quantization.granularity import PerGroup
            m = nn.Sequential(copy.deepcopy(lin))
            quantize_(m, tq.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(128)))
            return m
        add("tao_w4", tao_w4)
    except Exception as e:
        skipped["torchao"] = f"{type(e).__name__}: {e}"

    try:
        from optimum.quanto import freeze, qint4, qint8, quantize

        def quanto(wt):
            def make():
                m = nn.Sequential(copy.deepcopy(lin))
                quantize(m, weights=wt)
                freeze(m)
                return m
            return make
        add("quanto_w8", quanto(qint8))
        add("quanto_w4", quanto(qint4))
    except Exception as e:
        skipped["quanto"] = f"{type(e).__name__}: {e}"

    act_scale = float(x_cal.abs().max()) / 127.0
    q = monoquant.QuantLinear.from_float
    add("mq_w8a8", lambda: q(lin, mode="dynamic", format="int8"))
    add("mq_w8a8s", lambda: q(lin, mode="static", format="int8", act_scale=act_scale))
    # 7-bit weights (bits=7): the narrow-code kernels where the set has them (avx2)
    add("mq_w7a8", lambda: q(lin, scheme=monoquant.schemes.LayerScheme(format="int8", mode="dynamic", int8_bits=7)))
    add("mq_w8", lambda: q(lin, mode="weight_only", format="int8"))
    add("mq_w4", lambda: q(lin, mode="weight_only", format="int4", group_size=128))
    add("mq_w4a8", lambda: q(lin, mode="dynamic", format="int4", group_size=128))
    add("mq_f16", lambda: q(lin, mode="weight_only", format="float16"))
    add("mq_bf16", lambda: q(lin, mode="weight_only", format="bfloat16"))
    if "amx" in monoquant._core.available_linear_kernel_sets():
        # The same monoquant layers pinned to the AVX-512 VNNI set: what AMX adds.
        def pinned(layer):
            def run(x):
                monoquant._core.use_linear_kernel_set("avx512_vnni")
                try:
                    return layer(x)
                finally:
                    monoquant._core.use_linear_kernel_set("best")
            return run
        add("mq_w8a8_vnni", lambda: pinned(q(lin, mode="dynamic", format="int8")))
        add("mq_w8_vnni", lambda: pinned(q(lin, mode="weight_only", format="int8")))
    return peers


def check_outputs(peers: dict, x: torch.Tensor) -> dict:
    """Relative error of each peer's output against fp32 on the same input, before any timing: a fast
    peer that computes something else is reported, not compared."""
    with torch.no_grad():
        ref = peers["fp32"](x).float()
        return {name: float((fn(x).float() - ref).norm() / ref.norm()) for name, fn in peers.items()}


# (monoquant kernel, peer) pairs whose ratio the report lists, with the
# issue's targets where it sets one.
RATIOS = [
    ("mq_w8a8", "fp32", "W8A8 vs fp32 (target >= 1.5x for M >= 8)"),
    ("mq_w8a8", "ao_dyn", "W8A8 vs torch.ao x86/fbgemm (target >= 1.0x)"),
    ("mq_w8a8", "tao_w8a8", "W8A8 vs torchao int8 dyn"),
    ("mq_w8a8", "ao_onednn", "W8A8 vs torch.ao onednn"),
    ("mq_w8a8", "bf16", "W8A8 vs torch bf16 (oneDNN, AMX where present)"),
    ("mq_w8a8", "mq_w8a8_vnni", "W8A8: AMX set vs the same layer on AVX-512 VNNI"),
    ("mq_w8", "bf16", "W8 weight-only vs torch bf16"),
    ("mq_w8", "mq_w8_vnni", "W8 weight-only: AMX-BF16 vs AVX-512"),
    ("mq_w8a8s", "fp32", "W8A8 static vs fp32"),
    ("mq_w7a8", "fp32", "W7A8 (7-bit weights) vs fp32"),
    ("mq_w7a8", "ao_dyn", "W7A8 vs torch.ao x86/fbgemm"),
    ("mq_w7a8", "mq_w8a8", "W7A8 vs W8A8 (the narrow-code kernel's gain)"),
    ("mq_w8", "fp32", "W8 weight-only vs fp32 (target >= 2.5x at M = 1)"),
    ("mq_w8", "tao_w8", "W8 vs torchao int8 weight-only"),
    ("mq_w8", "quanto_w8", "W8 vs quanto qint8"),
    ("mq_w4", "fp32", "W4 weight-only vs fp32 (target >= 4x at M = 1, 4096 shapes)"),
    ("mq_w4", "tao_w4", "W4 vs torchao intx int4 weight-only"),
    ("mq_w4", "quanto_w4", "W4 vs quanto qint4"),
    ("mq_w4a8", "fp32", "W4A8 vs fp32"),
    ("mq_f16", "fp32", "FP16 weights vs fp32"),
    ("mq_bf16", "fp32", "BF16 weights vs fp32"),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--m", type=int, nargs="*", default=M_VALUES)
    ap.add_argument("--shapes", nargs="*", default=None, help="KxN, e.g. 4096x4096")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peers", nargs="*", default=None, help="only these columns, e.g. fp32 ao_dyn mq_w8a8")
    ap.add_argument("--settle-ms", type=float, default=5.0,
                    help="sleep before each timed batch so other peers' spinning threads go idle")
    ap.add_argument("--budget", type=float, default=0.25, help="seconds of timing per cell")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "linear_peers.md"))
    args = ap.parse_args(argv)
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    ms = args.m
    if args.quick:
        shapes, ms = [(384, 1536), (4096, 4096)], [1, 8]

    torch.manual_seed(0)
    rows, skipped, errors = [], {}, []
    header = None
    print(f"torch {torch.__version__}, monoquant {monoquant.__version__}, kernels {ops.kernel_name()}, "
          f"cpu {monoquant._core.cpu_features()}", flush=True)
    for k, n in shapes:
        lin = nn.Linear(k, n)
        with torch.no_grad():
            lin.weight.mul_(0.5)
        peers = build_peers(lin, torch.randn(8, k), skipped, args.peers)
        names = list(peers)
        if "fp32" in peers:
            errs = check_outputs(peers, torch.randn(max(ms), k))
            errors.append((k, n, errs))
            print(f"K={k} N={n} relative error vs fp32 at M={max(ms)}: " +
                  ", ".join(f"{a}={e:.2e}" for a, e in errs.items()), flush=True)
        header = header or names
        for t in args.threads:
            torch.set_num_threads(t)
            monoquant.set_num_threads(t)
            for m in ms:
                x = torch.randn(m, k)
                with torch.no_grad():
                    times = time_cell({name: peers[name] for name in names}, x, args.budget, settle_s=args.settle_ms / 1000)
                rows.append((t, k, n, m, times))
                print(f"t={t} K={k} N={n} M={m}: " + ", ".join(f"{a}={v:.1f}" for a, v in times.items()), flush=True)
        del peers, lin

    cols = header
    lines = ["# Quantized linear: monoquant vs peers (median microseconds per call)", "",
             f"torch {torch.__version__}; monoquant kernel set `{ops.kernel_name()}`; same process, same run.", ""]
    for name, why in skipped.items():
        lines.append(f"- skipped `{name}`: {why}")
    if errors:
        lines += ["", "Outputs checked before timing: relative error ||y - y_fp32|| / ||y_fp32|| on the same input "
                  "(a peer far above its format's error would be computing something else).", "",
                  "| K | N | " + " | ".join(cols) + " |", "|" + "---|" * (2 + len(cols))]
        for k, n, errs in errors:
            lines.append(f"| {k} | {n} | " + " | ".join(f"{errs.get(c, float('nan')):.1e}" for c in cols) + " |")
    lines += ["", "| threads | K | N | M | " + " | ".join(cols) + " |", "|" + "---|" * (4 + len(cols))]
    for t, k, n, m, times in rows:
        lines.append(f"| {t} | {k} | {n} | {m} | " + " | ".join(f"{times.get(c, float('nan')):.1f}" for c in cols) + " |")
    lines += ["", "## Speed-ups (peer time / monoquant time; > 1 means monoquant is faster)", ""]
    ratio_cols = [(a, b, why) for a, b, why in RATIOS if any(a in r[4] and b in r[4] for r in rows)]
    lines.append("| threads | K | N | M | " + " | ".join(f"{a}/{b}" for a, b, _ in ratio_cols) + " |")
    lines.append("|" + "---|" * (4 + len(ratio_cols)))
    for t, k, n, m, times in rows:
        cells = []
        for a, b, _ in ratio_cols:
            cells.append(f"{times[b] / times[a]:.2f}" if a in times and b in times else "-")
        lines.append(f"| {t} | {k} | {n} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "Ratio columns:"] + [f"- `{a}/{b}`: {why}" for a, b, why in ratio_cols]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
