"""monoquant.sensitivity on the real MiniLM: the per-layer ranking, the proxy's rank correlation with the
measured effect, and the wall time as a ratio to one calibration pass.

    .venv/bin/python bench/sensitivity_minilm.py [--threads 2] [--top 8] [--json out.json]

Calibration: minilm.CALIBRATION (128 everyday sentences, batches of 16). Candidates int4 (W4A16 g128,
mse scales, full range) and int8 (W8A8 dynamic).
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import minilm  # noqa: E402

import monoquant  # noqa: E402
from machine import cpu_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    monoquant.set_num_threads(args.threads)
    tok, model = minilm.load()
    cal = minilm.batches(tok, minilm.CALIBRATION)
    passes = []
    with torch.no_grad():
        for _ in range(5):
            t = time.perf_counter()
            for b in cal:
                model(**b)
            passes.append(time.perf_counter() - t)
    one = statistics.median(passes)
    t = time.perf_counter()
    rep = monoquant.sensitivity(model, cal, candidates=("int4", "int8"), show_progress=False)
    total = time.perf_counter() - t
    layers = len({l.name for l in rep.layers})
    print(f"CPU: {cpu_model()}; threads {args.threads}; torch {torch.__version__}")
    print(f"sensitivity of {layers} layers x {len(rep.candidates)} candidates: {total:.1f} s = "
          f"{total / one:.1f} calibration passes ({total / one / layers:.2f} per layer; one pass {one:.2f} s)")
    print("proxy rank correlation (Spearman, proxy vs 1 - output cosine): " +
          ", ".join(f"{c} {r:.2f}" for c, r in rep.proxy_rank_correlation.items()))
    for cand in rep.candidates:
        print(f"\nmost sensitive under {cand}:")
        for l in rep.ranking(cand)[:args.top]:
            o = rep.outliers[l.name]
            print(f"  {l.name:<44} cosine {l.output_cosine:.5f}  SQNR {l.output_sqnr_db:5.1f} dB  "
                  f"proxy {l.proxy:9.3g}  act max/median {o['ratio']:6.1f}")
    if args.json:
        rep.to_json(args.json)


if __name__ == "__main__":
    main()
