"""Whole-model speed on the real MiniLM: monoquant against every CPU peer, one process, one run.

    .venv/bin/python bench/model_peers.py                      # batch 1 and 32 x seq 128, 1 and 2 threads
    .venv/bin/python bench/model_peers.py --batches 1 --threads 2 --reps 5

Every variant is first checked against fp32 (mean and minimum sentence-embedding cosine on the
held-out sentences); then each cell (threads x batch) times all variants round-robin, in a new
random order each repetition, with a short sleep before each call so that the previous
variant's worker threads have gone idle, and reports the median as a speed ratio to torch fp32
of the same cell (> 1: faster).

Peers: torch fp32; torch bf16 (model.to(torch.bfloat16)); torch.ao quantize_dynamic qint8 on the
x86 and onednn engines; torchao 0.18 int8 dynamic and int8 weight-only; optimum-quanto qint8
weights; ONNX Runtime (torch.onnx.export + onnxruntime.quantization.quantize_dynamic, intra-op
spinning off). A peer that does not install or run is listed with the reason, not dropped silently.
monoquant: every mode of monoquant.quantize on all Linear layers (its defaults skip nothing here
but the pooler's activations), with fp32 and with bf16 compute for the rest of the model.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import tempfile
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import minilm  # noqa: E402

import monoquant as mq  # noqa: E402
from machine import cpu_model  # noqa: E402

warnings.filterwarnings("ignore")

SEQ = 128

MQ_MODES = [
    ("mq W8A8 dynamic", dict(bits=8, dynamic=True)),
    ("mq W8A8 dynamic + SmoothQuant 0.5", dict(bits=8, dynamic=True, calibration_data="calib", smoothquant=0.5)),
    ("mq W7A8 dynamic", dict(bits=7, dynamic=True)),
    ("mq W7A8 dynamic + SmoothQuant 0.5", dict(bits=7, dynamic=True, calibration_data="calib", smoothquant=0.5)),
    ("mq W8A8 static", dict(bits=8, calibration_data="calib")),
    ("mq W7A8 static", dict(bits=7, calibration_data="calib")),
    ("mq W8A8 static + SmoothQuant 0.8", dict(bits=8, calibration_data="calib", smoothquant=0.8)),
    ("mq W8A8 dyn act-groups 32", dict(bits=8, dynamic=True, act_group_size=32)),
    ("mq W4A8 dynamic", dict(bits=4, dynamic=True)),
    ("mq W8A16", dict(bits=8, weight_only=True)),
    ("mq W4A16 g128", dict(bits=4, weight_only=True, group_size=128)),
    ("mq FP16", dict(bits=16)),
    ("mq BF16", dict(bits=16, dtype=torch.bfloat16)),
]


class HiddenStates(nn.Module):
    """(input_ids, attention_mask) -> last_hidden_state in float32, whatever the model's dtype."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()


def torch_variant(model: nn.Module, engine: str | None = None):
    wrapped = HiddenStates(model).eval()

    def run(ids, mask):
        if engine:
            torch.backends.quantized.engine = engine
        with torch.no_grad():
            return wrapped(ids, mask)
    return run


def build_peers(model: nn.Module, skipped: dict, tmp: str, ids, mask) -> dict:
    peers = {"torch fp32": torch_variant(model)}

    def add(name, make):
        try:
            fn = make()
            fn(ids[:1], mask[:1])
            peers[name] = fn
        except Exception as e:  # reported in the output, not fatal
            skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"

    add("torch bf16", lambda: torch_variant(copy.deepcopy(model).to(torch.bfloat16)))

    def ao(engine):
        def make():
            torch.backends.quantized.engine = engine
            q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
            return torch_variant(q, engine)
        return make
    add("torch.ao dynamic x86", ao("x86"))
    add("torch.ao dynamic onednn", ao("onednn"))

    def torchao(config_name):
        def make():
            import torchao.quantization as tq
            m = copy.deepcopy(model)
            tq.quantize_(m, getattr(tq, config_name)())
            return torch_variant(m)
        return make
    add("torchao int8 dynamic", torchao("Int8DynamicActivationInt8WeightConfig"))
    add("torchao int8 weight-only", torchao("Int8WeightOnlyConfig"))

    def quanto():
        from optimum.quanto import freeze, qint8, quantize
        m = copy.deepcopy(model)
        quantize(m, weights=qint8)
        freeze(m)
        return torch_variant(m)
    add("quanto qint8", quanto)

    def onnxruntime_dynamic():
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
        fp32_path, q_path = os.path.join(tmp, "minilm.onnx"), os.path.join(tmp, "minilm.int8.onnx")
        torch.onnx.export(HiddenStates(model).eval(), (ids[:1], mask[:1]), fp32_path, dynamo=False,
                          input_names=["ids", "mask"], output_names=["hidden"], opset_version=17,
                          dynamic_axes={"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}, "hidden": {0: "b", 1: "s"}})
        quantize_dynamic(fp32_path, q_path, weight_type=QuantType.QInt8)
        sessions = {}

        def run(i, m):
            threads = torch.get_num_threads()
            if threads not in sessions:
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
                sessions[threads] = ort.InferenceSession(q_path, so, providers=["CPUExecutionProvider"])
            out = sessions[threads].run(None, {"ids": i.numpy(), "mask": m.numpy()})[0]
            return torch.from_numpy(out)
        return run
    add("onnxruntime dynamic", onnxruntime_dynamic)
    return peers


def build_monoquant(model: nn.Module, calib, skipped: dict, compute_dtypes) -> dict:
    out = {}
    for name, opts in MQ_MODES:
        opts = {k: (calib if v == "calib" else v) for k, v in opts.items()}
        for cd in compute_dtypes:
            label = name + (" + bf16 compute" if cd is torch.bfloat16 else "")
            try:
                extra = {"compute_dtype": cd} if cd is not None else {}
                res = mq.quantize(copy.deepcopy(model), show_progress=False, **opts, **extra)
                out[label] = (torch_variant(res.model), res.model)
            except Exception as e:
                skipped[label] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return out


def embeddings(fn, batches) -> torch.Tensor:
    outs = []
    for b in batches:
        h = fn(b["input_ids"], b["attention_mask"])
        m = b["attention_mask"].unsqueeze(-1).float()
        outs.append((h * m).sum(1) / m.sum(1))
    return torch.cat(outs)


def time_cell(fns: dict, ids, mask, reps: int, settle_s: float = 0.02, seed: int = 0) -> dict:
    for fn in fns.values():  # warm-up: packing, first-call allocations, ORT session
        fn(ids, mask)
    samples = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(seed)
    for _ in range(reps):
        # A new order every repetition: a variant that disturbs the next one (ONNX Runtime's
        # pool, measured: it slowed whatever ran right after it at 2 threads by up to 25% despite
        # the settling sleep) then disturbs a different one each time, not always the same.
        rng.shuffle(order)
        for k in order:
            fn = fns[k]
            time.sleep(settle_s)
            t = time.perf_counter()
            fn(ids, mask)
            samples[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in samples.items()}


def cpu_flags() -> str:
    try:
        flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return "?"
    keep = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
    return " ".join(f for f in keep if f in flags)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-bf16-compute", action="store_true", help="skip the compute_dtype=torch.bfloat16 variants")
    args = ap.parse_args()
    batch_sizes = [int(b) for b in args.batches.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]

    tok, model = minilm.load()
    passages = minilm.calibration_passages(max(batch_sizes))
    timing = tok(passages, padding="max_length", truncation=True, max_length=SEQ, return_tensors="pt")
    ids, mask = timing["input_ids"], timing["attention_mask"]
    held_out = minilm.batches(tok, minilm.HELD_OUT, 16)
    calib = minilm.batches(tok, minilm.calibration_sentences(64), 16)

    skipped: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_peers(model, skipped, tmp, ids, mask)
        compute = [None] if args.no_bf16_compute else [None, torch.bfloat16]
        mq_variants = build_monoquant(model, calib, skipped, compute)
        variants.update({k: v[0] for k, v in mq_variants.items()})

        # Correctness first: every variant against fp32 on sentences no variant was calibrated on.
        ref = embeddings(variants["torch fp32"], held_out)
        accuracy = {}
        for name, fn in variants.items():
            e = embeddings(fn, held_out)
            cos = torch.nn.functional.cosine_similarity(e, ref, dim=-1)
            accuracy[name] = (cos.mean().item(), cos.min().item())

        results = {}
        for t in thread_counts:
            torch.set_num_threads(t)
            for b in batch_sizes:
                results[(t, b)] = time_cell(variants, ids[:b], mask[:b], args.reps)

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; flags: {cpu_flags()}")
    print(f"torch {torch.__version__}; monoquant {mq.__version__}, linear kernels {mq._core.linear_kernel_name()}, "
          f"threads on {mq._core.parallel_runtime()}")
    print(f"MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2), seq {SEQ}; speed = torch fp32 time / variant time "
          f"in the same cell (median of {args.reps}, round-robin)\n")
    cells = [(t, b) for t in thread_counts for b in batch_sizes]
    head = "| variant | mean cos | min cos | " + " | ".join(f"{t}t b{b}" for t, b in cells) + " |"
    print(head)
    print("|" + "---|" * (3 + len(cells)))
    for name in variants:
        mean, low = accuracy[name]
        ratios = [results[c]["torch fp32"] / results[c][name] for c in cells]
        print(f"| {name} | {mean:.5f} | {low:.5f} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    print("\nfp32 milliseconds per call: " + ", ".join(f"{t}t b{b}: {results[(t, b)]['torch fp32'] * 1e3:.1f}"
                                                       for t, b in cells))
    for name, why in skipped.items():
        print(f"not run: {name}: {why}")
    # The targets: monoquant's fastest mode with cosine >= 0.995 against the fastest peer, per cell.
    print()
    for c in cells:
        good = [n for n in variants if n.startswith("mq ") and accuracy[n][0] >= 0.995]
        peers = [n for n in variants if not n.startswith("mq ")]
        best_mq = min(good, key=lambda n: results[c][n]) if good else None
        best_peer = min(peers, key=lambda n: results[c][n])
        if best_mq:
            print(f"{c[0]}t b{c[1]}: fastest monoquant (cos >= 0.995) {best_mq} "
                  f"{results[c]['torch fp32'] / results[c][best_mq]:.2f}x fp32; fastest peer {best_peer} "
                  f"{results[c]['torch fp32'] / results[c][best_peer]:.2f}x; monoquant / peer "
                  f"{results[c][best_peer] / results[c][best_mq]:.2f}x")
    if len(thread_counts) > 1:
        for b in batch_sizes:
            t1, t2 = thread_counts[0], thread_counts[-1]
            worse = [n for n in variants if results[(t2, b)][n] > results[(t1, b)][n]]
            print(f"b{b}: slower at {t2} threads than at {t1}: {', '.join(worse) if worse else 'none'}")


if __name__ == "__main__":
    main()
