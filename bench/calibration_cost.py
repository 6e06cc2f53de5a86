"""What calibrating costs over the forward passes themselves, on the real MiniLM, one run.

    .venv/bin/python bench/calibration_cost.py [--threads 1,2] [--reps 15] [--batch 16]

One repeat runs the same calibration batches (the 64 calibration sentences of
tests/python/minilm.py, batches of --batch) through the model three ways, round-robin:
  plain          the forward passes alone (torch.no_grad, eval);
  monoquant      monoquant.calibrate(model, batches, observer=...) on every nn.Linear's input
                 (what quantize(..., calibration_data=...) runs), for each observer given;
  torch.ao       a forward hook per nn.Linear feeding torch.ao.quantization.HistogramObserver.
Each repeat runs every variant once, in a random order, plus the plain passes a second
time ("plain again", the noise floor). It prints the median over repeats of each variant's
overhead over the plain passes of the same repeat (t / t_plain - 1); beside it the overhead
of its fastest run over the fastest plain run, and the paired overhead in the process's CPU
time (time.process_time).
The target of issue 12 is monoquant's histogram within 5% of plain.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import minilm  # noqa: E402

import monoquant as mq  # noqa: E402
from machine import cpu_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--observers", default="histogram,minmax")
    args = ap.parse_args()

    tok, model = minilm.load()
    batches = minilm.batches(tok, minilm.calibration_sentences(64), args.batch)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]

    def plain():
        with torch.no_grad():
            for b in batches:
                model(**b)

    def monoquant_with(observer):
        return lambda: mq.calibrate(model, batches, observer=observer, show_progress=False)

    def torch_ao():
        observers = [torch.ao.quantization.HistogramObserver() for _ in linears]

        def hook_for(observer):
            def hook(module, inputs, output):
                observer(inputs[0])  # returns its input; the hook must return None to keep the output
            return hook
        handles = [lin.register_forward_hook(hook_for(o)) for lin, o in zip(linears, observers)]
        try:
            plain()
        finally:
            for h in handles:
                h.remove()
        for o in observers:
            o.calculate_qparams()

    variants = {"plain forward": plain}
    for obs in args.observers.split(","):
        variants[f"monoquant {obs}"] = monoquant_with(obs)
    variants["torch.ao HistogramObserver"] = torch_ao

    # A second plain variant, timed like the others, measures the noise floor: on a
    # shared VM two runs of the same forward passes differ by several percent.
    variants["plain again"] = plain
    print(f"CPU: {cpu_model()}; torch {torch.__version__}; MiniLM-L6, {len(batches)} batches of {args.batch} "
          f"calibration sentences; {len(linears)} nn.Linear inputs observed; {args.reps} repeats, each running "
          f"every variant once in a random order\n")
    print("Overhead = median over repeats of (variant / plain forward of the same repeat) - 1; in brackets\n"
          "the ratio of the fastest times (the least disturbed run of each) and the paired overhead in the\n"
          "process's CPU time (not counting time the VM's cores were taken away). 'plain again' is the noise floor.\n")
    print("| threads | plain forward | " + " | ".join(k for k in variants if k != "plain forward") + " |")
    print("|---|" + "---|" * len(variants))
    rng = random.Random(0)
    for t in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(t)
        for fn in variants.values():
            fn()  # warm-up
        samples = {k: [] for k in variants}
        cpu = {k: [] for k in variants}
        for _ in range(args.reps):
            order = list(variants)
            rng.shuffle(order)
            for k in order:
                time.sleep(0.02)
                t0, c0 = time.perf_counter(), time.process_time()
                variants[k]()
                samples[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        base = samples["plain forward"]
        cells = [f"{statistics.median(base) * 1e3:.0f} ms"]
        for k in variants:
            if k == "plain forward":
                continue
            paired = statistics.median(x / b for x, b in zip(samples[k], base)) - 1
            fastest = min(samples[k]) / min(base) - 1
            cpu_paired = statistics.median(x / b for x, b in zip(cpu[k], cpu["plain forward"])) - 1
            cells.append(f"{paired:+.1%} ({fastest:+.1%}; CPU {cpu_paired:+.1%})")
        print(f"| {t} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
