"""What each monoquant.quantize mode costs on the real MiniLM, in one run:
mean sentence-embedding cosine to fp32 on 60 held-out sentences, bytes of the
saved file, bits per quantized weight (scales counted), quantize wall time,
and whole-model latency as a ratio to fp32 (timed round-robin, medians).

    .venv/bin/python bench/minilm_modes.py                  # ~1-2 minutes
    .venv/bin/python bench/minilm_modes.py --threads 1 --batch 1 --seq 128

The README's table of modes is this script's output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import minilm  # noqa: E402  (the shared MiniLM helpers and sentences)

import monoquant as mq  # noqa: E402
from machine import cpu_model  # noqa: E402

warnings.filterwarnings("ignore")

MODES = [
    ("W8A8 dynamic", "bits=8, dynamic=True", dict(bits=8, dynamic=True)),
    ("W7A8 dynamic", "bits=7, dynamic=True", dict(bits=7, dynamic=True)),
    ("W8A8 static", "bits=8, calibration_data=data", dict(bits=8, calibration_data="calib")),
    ("W8A8 dynamic, act groups 32", "bits=8, dynamic=True, act_group_size=32",
     dict(bits=8, dynamic=True, act_group_size=32)),
    ("W8A8 static + SmoothQuant", "bits=8, calibration_data=data, smoothquant=0.8",
     dict(bits=8, calibration_data="calib", smoothquant=0.8)),
    ("W8A16", "bits=8, weight_only=True", dict(bits=8, weight_only=True)),
    ("W4A16 g128", "bits=4, weight_only=True, group_size=128", dict(bits=4, weight_only=True, group_size=128)),
    ("W4A16 g128 absmax", "... scale_method='absmax'", dict(bits=4, weight_only=True, group_size=128,
                                                          scale_method="absmax")),
    ("W4A16 g32", "bits=4, weight_only=True, group_size=32", dict(bits=4, weight_only=True, group_size=32)),
    ("W4A16 g128 GPTQ", "... method='gptq', act_order=True, calibration_data=data",
     dict(bits=4, weight_only=True, group_size=128, method="gptq", act_order=True, calibration_data="calib")),
    ("W4A16 g32 GPTQ", "... group_size=32, method='gptq', act_order=True",
     dict(bits=4, weight_only=True, group_size=32, method="gptq", act_order=True, calibration_data="calib")),
    ("W4A8 dynamic", "bits=4, dynamic=True", dict(bits=4, dynamic=True)),
    ("W4A8 static", "bits=4, calibration_data=data", dict(bits=4, calibration_data="calib")),
    ("W8A8 dynamic + int8 embeddings", "bits=8, layer_types=(nn.Linear, nn.Embedding)",
     dict(bits=8, layer_types=(nn.Linear, nn.Embedding))),
    ("W4A16 g128 + int4 embeddings", "bits=4, layer_types=(nn.Linear, nn.Embedding)",
     dict(bits=4, layer_types=(nn.Linear, nn.Embedding))),
    ("FP16", "bits=16", dict(bits=16)),
    ("BF16", "bits=16, dtype=torch.bfloat16", dict(bits=16, dtype=torch.bfloat16)),
]


def time_round_robin(fns, reps: int, settle_s: float = 0.005):
    """Median seconds per call of each fn; repetition i calls every fn once, so drifting load hits all alike."""
    samples = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            time.sleep(settle_s)  # let the previous peer's spinning threads go idle
            t = time.perf_counter()
            f()
            samples[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64, help="tokens per sequence for the latency timing")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mq.set_num_threads(args.threads)

    tok, model = minilm.load()
    held = minilm.batches(tok, minilm.HELD_OUT)
    calib = minilm.batches(tok, minilm.CALIBRATION)
    ref = minilm.embed(model, held)
    ids = torch.randint(1000, 20000, (args.batch, args.seq))
    timing_input = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    fp32_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())

    rows, runners = [], {"fp32": model}
    with tempfile.TemporaryDirectory() as tmp:
        for name, call, kwargs in MODES:
            kw = dict(kwargs)
            if kw.get("calibration_data") == "calib":
                kw["calibration_data"] = calib
            t0 = time.perf_counter()
            r = mq.quantize(model, **kw)
            qtime = time.perf_counter() - t0
            cos = minilm.mean_cosine(minilm.embed(r.model, held), ref)
            path = os.path.join(tmp, name.replace(" ", "_") + ".safetensors")
            r.save(path)
            t = r.report.totals()
            rows.append((name, call, cos, os.path.getsize(path), t["bits_per_weight"], qtime))
            runners[name] = r.model

    def call(m):
        with torch.no_grad():
            m(**timing_input)

    for m in runners.values():  # warm-up
        call(m)
    times = time_round_robin({k: (lambda m=m: call(m)) for k, m in runners.items()}, args.reps)

    print(f"CPU: {cpu_model()}; kernel set {mq.ops.kernel_name()}; threads {args.threads}; torch {torch.__version__}")
    print(f"MiniLM fp32 state dict {fp32_bytes / 2**20:.1f} MiB; latency at batch {args.batch} x {args.seq} tokens; "
          f"cosine = mean over {len(minilm.HELD_OUT)} held-out sentences of the embedding cosine to fp32")
    print()
    print("| mode | call | mean cosine | file MiB | vs fp32 size | bits/weight | quantize s | speed vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, call_text, cos, size, bpw, qtime in rows:
        print(f"| {name} | `{call_text}` | {cos:.5f} | {size / 2**20:.1f} | {fp32_bytes / size:.2f}x | "
              f"{bpw:.2f} | {qtime:.2f} | {times['fp32'] / times[name]:.2f}x |")


if __name__ == "__main__":
    main()
