"""What asymmetric int4 weights buy on MiniLM, simulated: a cheap way to try which layers to keep at W8.

    .venv/bin/python bench/asymmetric_int4_potential.py          # ~1 min

Written before quantize(scheme="asymmetric") existed (bench/accuracy_peers.py now measures the
real thing, on the kernels, and agrees to 0.0003). This script *simulates*: it runs monoquant's own GPTQ
driver (python/monoquant/gptq.py: sequential stages, shared Hessians) with the C++ sweep, and
puts each layer's dequantized result, (q - z) * s, back into the float nn.Linear. The cosine
is what a model with those exact codes computes, up to float rounding in the GEMM; no file
is written and no quantized kernel runs. Mean embedding cosine to fp32 on minilm.HELD_OUT,
calibration minilm.CALIBRATION (128 sentences, batches of 16), act order on.

Bits per weight over every Linear: codes + float32 scales (+ 4-bit packed zero points when
asymmetric); layers kept at W8 (GPTQ, per channel) count 8 + 32 / K.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import minilm  # noqa: E402

from monoquant import _core, gptq  # noqa: E402
from monoquant.schemes import LayerScheme  # noqa: E402
from machine import cpu_model  # noqa: E402

L = "encoder.layer.{}."
W8_SETS = {
    "none": [],
    "every attention.output.dense": [L.format(i) + "attention.output.dense" for i in range(6)],
    "every attention.self.value": [L.format(i) + "attention.self.value" for i in range(6)],
    "encoder.layer.5.output.dense": [L.format(5) + "output.dense"],
}


class _Dequantized:
    """What run_gptq needs of a result: dequantize() (the float weight later stages calibrate on)."""

    def __init__(self, w):
        self.w = w

    def dequantize(self):
        return self.w


def _sweep(symmetric: bool, w8: set):
    def weight_of(m, h, scheme, *, dampening, block_size, act_order):
        w = gptq._weight_2d(m).float().contiguous()
        n, k = w.shape
        if m._bench_name in w8:
            r = _core.gptq_quantize(w, h, 8, 0, "absmax", "float32", dampening, block_size, act_order, act_order)
            deq = r["codes"].float() * r["scales"].reshape(n, 1)
        else:
            g = scheme.group_size
            r = _core.gptq_quantize(w, h, 4, g, scheme.scale_method, "float32", dampening, block_size, act_order,
                                    act_order, symmetric, symmetric)
            deq = _core.dequantize(r["codes"].view(torch.uint8), r["scales"].contiguous(),
                                   None if symmetric else r["zero_points"].contiguous(), [n, k], 4,
                                   "symmetric" if symmetric else "asymmetric", "per_group", 0, g)
        return _Dequantized(deq), {"g_idx": None, "error": r["error"], "rtn_error": r["rtn_error"],
                                   "dampening": r["dampening"]}
    return weight_of


def run(model, held, ref, cal, group: int, symmetric: bool, w8_names) -> tuple:
    m = copy.deepcopy(model)
    names = [n for n, x in m.named_modules() if isinstance(x, torch.nn.Linear)]
    for n in names:
        m.get_submodule(n)._bench_name = n
    real = gptq.gptq_weight
    gptq.gptq_weight = _sweep(symmetric, set(w8_names))
    try:
        scheme = LayerScheme(format="int4", mode="weight_only", group_size=group, scale_method="mse")
        gptq.run_gptq(m, names, cal, lambda mod: scheme, lambda *a: None, act_order=True)
    finally:
        gptq.gptq_weight = real
    cos = minilm.mean_cosine(minilm.embed(m, held), ref)
    bits = 0.0
    for n in names:
        w = m.get_submodule(n).weight
        per = 8 + 32 / w.shape[1] if n in w8_names else 4 + 32 / group + (0 if symmetric else 4 / group)
        bits += per * w.numel()
    return cos, bits / sum(m.get_submodule(n).weight.numel() for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok, model = minilm.load()
    held, cal = minilm.batches(tok, minilm.HELD_OUT), minilm.batches(tok, minilm.CALIBRATION)
    ref = minilm.embed(model, held)
    print(f"CPU: {cpu_model()}, torch {torch.__version__}, {args.threads} threads; GPTQ act order, mse scales, "
          f"simulated (dequantized weights in float layers)\n")
    print("| int4 weights | group | layers at W8 | mean cosine | bits/weight |")
    print("|---|---|---|---|---|")
    rows = [(128, True, "none"), (128, False, "none"), (64, True, "none"), (64, False, "none")]
    rows += [(64, False, k) for k in W8_SETS if k != "none"]
    for group, symmetric, w8 in rows:
        cos, bpw = run(model, held, ref, cal, group, symmetric, W8_SETS[w8])
        print(f"| {'symmetric' if symmetric else 'asymmetric'} | {group} | {w8} | {cos:.5f} | {bpw:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
