"""monoquant.auto_recipe on the real MiniLM: target output cosine 0.99, measured on held-out sentences, with
the size-vs-cosine curve of its recipes beside uniform INT4, uniform INT8 and recipes with the same number
of INT8 layers chosen at random.

    .venv/bin/python bench/auto_recipe_minilm.py [--threads 2] [--plot bench/auto_recipe_minilm.png]

Data: minilm.CALIBRATION split 96 / 32 -- the first 96 sentences calibrate (sensitivity, GPTQ), the last 32
are auto_recipe's evaluation set; minilm.HELD_OUT (60 sentences, never seen by either) gives every figure
printed here (mean embedding cosine to fp32). Bits per weight count every Linear's bytes (scales
included, float layers at 32 bits) over its parameters. Candidates: INT4 W4A16 g128 (mse scales, full
range) and INT8 W8A8 dynamic.
"""

import argparse
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import minilm  # noqa: E402

import monoquant  # noqa: E402
from monoquant.auto_recipe import random_recipe  # noqa: E402
from machine import cpu_model  # noqa: E402


def bits_per_weight(model, recipe_model) -> float:
    """Bytes of every considered Linear (quantized or float) over its parameters."""
    float_mods = dict(model.named_modules())
    nbytes = params = 0
    for name, m in recipe_model.named_modules():
        if isinstance(m, monoquant.QuantModule):
            nbytes += m.weight_nbytes
            params += float_mods[name].weight.numel()
        elif isinstance(m, torch.nn.Linear):
            nbytes += m.weight.numel() * m.weight.element_size()
            params += m.weight.numel()
    return 8.0 * nbytes / params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plot", default=os.path.join(os.path.dirname(__file__), "auto_recipe_minilm.png"))
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    monoquant.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # every INT4 layer warns about its SQNR
    tok, model = minilm.load()
    cal = minilm.batches(tok, minilm.CALIBRATION[:96])
    val = minilm.batches(tok, minilm.CALIBRATION[96:])
    held = minilm.batches(tok, minilm.HELD_OUT)
    ref = minilm.embed(model, held)

    def held_out(recipe, method="rtn", **options):
        r = monoquant.quantize(model, bits=4, recipe=recipe, method=method, show_progress=False,
                               calibration_data=None if method == "rtn" else cal, **options)
        return minilm.mean_cosine(ref, minilm.embed(r.model, held)), bits_per_weight(model, r.model)

    print(f"CPU: {cpu_model()}; threads {args.threads}; torch {torch.__version__}")
    t = time.perf_counter()
    report = monoquant.sensitivity(model, cal, candidates=("int4", "int8"), show_progress=False)
    print(f"sensitivity: {time.perf_counter() - t:.1f} s; proxy rank correlation "
          + ", ".join(f"{c} {r:.2f}" for c, r in report.proxy_rank_correlation.items()))
    names = list(dict.fromkeys(l.name for l in report.layers))
    print("\nauto_recipe target min_cosine 0.99 (measured on the 32 evaluation sentences); held-out figures:")
    print(f"{'method':<8} {'eval cosine':>11} {'held-out cosine':>15} {'bits/weight':>11} {'int8 layers':>11} "
          f"{'probes':>6} {'time s':>7}")
    results = {}
    for label, method, options in (("rtn", "rtn", {}), ("gptq", "gptq", {}),
                                   ("gptq+ao", "gptq", {"act_order": True})):
        t = time.perf_counter()
        ar = monoquant.auto_recipe(model, cal, {"min_cosine": 0.99}, evaluation_data=val, report=report,
                                   method=method, quantize_options=options, show_progress=False)
        took = time.perf_counter() - t
        cos, bpw = held_out(ar.recipe, method, **options)
        method = label
        results[method] = (ar, cos, bpw)
        n8 = sum(1 for v in ar.recipe.values() if isinstance(v, dict) and v["bits"] == 8)
        print(f"{method:<8} {ar.cosine:>11.5f} {cos:>15.5f} {bpw:>11.2f} {n8:>11} {len(ar.points):>6} {took:>7.1f}")

    # The curve: recipes along auto_recipe's path, against uniform schemes and random choices of as many
    # INT8 layers.
    ar = results["rtn"][0]
    picks = sorted({round(i * (len(ar.path) - 1) / 12) for i in range(13)})
    curve, rand = [], []
    for i in picks:
        p = ar.path[i]
        if p.counts.get("float"):
            continue  # the float end of the path: not a quantization recipe
        cos, bpw = held_out(p.recipe)
        curve.append((bpw, cos, p.counts.get("int8", 0)))
        for seed in range(args.seeds):
            rc, rb = held_out(random_recipe(report, p.counts.get("int8", 0), seed=seed))
            rand.append((rb, rc, p.counts.get("int8", 0)))
    u4 = held_out({n: {"bits": 4, "mode": "weight_only", "group_size": 128} for n in names})
    u8 = held_out({n: {"bits": 8, "mode": "dynamic"} for n in names})
    print(f"\nsize vs held-out cosine (uniform INT4 {u4[0]:.5f} at {u4[1]:.2f} bits, uniform INT8 {u8[0]:.5f} "
          f"at {u8[1]:.2f} bits)")
    print(f"{'int8 layers':>11} {'bits/weight':>11} {'sensitivity-driven':>18} {'random (median of seeds)':>24}")
    dominated = 0
    for bpw, cos, n8 in curve:
        rs = sorted(c for b, c, k in rand if k == n8)
        med = rs[len(rs) // 2]
        dominated += cos >= med
        print(f"{n8:>11} {bpw:>11.2f} {cos:>18.5f} {med:>24.5f}")
    print(f"sensitivity-driven >= random median at {dominated} of {len(curve)} sizes")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        ax.plot([c[0] for c in curve], [1 - c[1] for c in curve], "o-", label="auto_recipe path (sensitivity)")
        ax.scatter([r[0] for r in rand], [1 - r[1] for r in rand], marker="x", color="gray",
                   label="same number of INT8 layers, random")
        ax.scatter([u4[1]], [1 - u4[0]], marker="s", s=60, label="uniform INT4 g128")
        ax.scatter([u8[1]], [1 - u8[0]], marker="D", s=60, label="uniform INT8 (W8A8)")
        for m, marker in (("rtn", "*"), ("gptq", "P"), ("gptq+ao", "X")):
            a, c, b = results[m]
            ax.scatter([b], [1 - c], marker=marker, s=140, label=f"auto_recipe 0.99 ({m})")
        ax.set_yscale("log")
        ax.set_xlabel("bits per weight (Linear layers, scales counted)")
        ax.set_ylabel("1 - held-out mean cosine")
        ax.set_title(f"MiniLM-L6: size vs accuracy ({cpu_model()})", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, format="png", dpi=110)
        print(f"plot: {args.plot}")
    except ImportError:
        print("matplotlib missing: no plot")


if __name__ == "__main__":
    main()
