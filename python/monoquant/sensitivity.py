"""Which layers hurt: ``monoquant.sensitivity(model, calibration_data, candidates=("int4", "int8"))``.

Per quantizable layer and candidate scheme:

* the measured effect of quantizing that layer alone: the model's output cosine and SQNR
  against the float model's on the calibration batches (at real tokens only, when a batch
  carries an ``attention_mask``) (the layer is swapped for its
  quantized module, the batches run, the float layer goes back: nothing else changes and no
  activations are kept, only the float model's outputs);
* a proxy that needs no extra forward pass: the activation-weighted weight error
  tr(D H D^T), D = W - dequantize(quantize(W)), with H = X^T X accumulated in C++ during the
  one statistics pass (the quantity GPTQ minimises; llama.cpp's importance matrix is its
  diagonal), and how well it ranks the layers against the measured effect (Spearman);
* bytes saved, and activation outlier statistics: max over channels of the per-channel
  max |x| against their median, which flags layers where activation quantization (or
  SmoothQuant) matters.

Cost: one statistics pass, one pass for the float outputs, and one pass per layer and
candidate (what "quantize this layer alone" means).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from . import _core
from .calibration import _first_tensor, _run
from .errors import InvalidArgumentError, UnsupportedError
from .gptq import _weight_2d, materialize
from .model_files import replace_module
from .progress import progress, progress_enabled
from .schemes import LayerScheme
from .selection import select_layers
from .smoothing import _channel_stats

#: the note of a layer whose measurement the caller's time budget cut off (auto_recipe)
BUDGET_NOTE = "not measured: the time budget ran out"

#: the candidate names sensitivity() takes, and the scheme each means
CANDIDATES = {
    "int8": dict(format="int8", mode="dynamic"),           # W8A8, activations per token
    "w8a16": dict(format="int8", mode="weight_only"),
    "int4": dict(format="int4", mode="weight_only"),       # W4A16, groups of group_size
    "w4a8": dict(format="int4", mode="dynamic"),
}


@dataclass
class LayerSensitivity:
    name: str
    candidate: str
    scheme: str
    output_cosine: Optional[float]   # the model's output with only this layer quantized, vs float
    output_sqnr_db: Optional[float]
    proxy: Optional[float]           # tr(D H D^T) / rows: activation-weighted weight error
    bytes_saved: int
    note: str = ""                   # why a candidate does not apply (e.g. K not a multiple of the group)


@dataclass
class SensitivityReport:
    layers: List[LayerSensitivity]
    #: per layer: max and median over input channels of the channel's max |x|, and their ratio
    outliers: Dict[str, Dict[str, float]]
    #: per candidate: Spearman rank correlation of the proxy with the measured effect (1 - cosine)
    proxy_rank_correlation: Dict[str, Optional[float]]
    samples: int
    candidates: List[str] = field(default_factory=list)

    def ranking(self, candidate: str) -> List[LayerSensitivity]:
        """The candidate's layers, most damaging first (lowest output cosine)."""
        rows = [l for l in self.layers if l.candidate == candidate and l.output_cosine is not None]
        return sorted(rows, key=lambda l: l.output_cosine)

    def to_dict(self) -> Dict[str, Any]:
        return {"samples": self.samples, "candidates": list(self.candidates),
                "proxy_rank_correlation": dict(self.proxy_rank_correlation),
                "outliers": {k: dict(v) for k, v in self.outliers.items()},
                "layers": [asdict(l) for l in self.layers]}

    def to_json(self, path: Optional[os.PathLike] = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def __str__(self) -> str:
        lines = [f"sensitivity over {self.samples} calibration samples; proxy rank correlation "
                 + ", ".join(f"{c}: {'-' if r is None else f'{r:.2f}'}" for c, r in self.proxy_rank_correlation.items())]
        lines.append(f"{'layer':<48} {'candidate':<8} {'cosine':>9} {'SQNR dB':>8} {'proxy':>10} {'saved':>9}  "
                     f"{'act max/median':>14}")
        for l in sorted(self.layers, key=lambda l: (l.candidate, l.output_cosine if l.output_cosine is not None
                                                     else 2.0)):
            o = self.outliers.get(l.name, {})
            cos = "-" if l.output_cosine is None else f"{l.output_cosine:.5f}"
            sq = "-" if l.output_sqnr_db is None else f"{l.output_sqnr_db:.1f}"
            px = "-" if l.proxy is None else f"{l.proxy:.3g}"
            lines.append(f"{l.name:<48} {l.candidate:<8} {cos:>9} {sq:>8} {px:>10} {l.bytes_saved:>9}  "
                         f"{o.get('ratio', float('nan')):>14.1f}" + (f"  ({l.note})" if l.note else ""))
        return "\n".join(lines)

    def plot(self, path: os.PathLike) -> None:
        """The per-layer sensitivity (1 - output cosine, log scale) of every candidate, as a PNG."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise UnsupportedError("SensitivityReport.plot needs matplotlib (an optional extra): "
                                   "pip install matplotlib") from None
        names = list(dict.fromkeys(l.name for l in self.layers))
        fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(names)), 4.0))
        for c in self.candidates:
            vals = {l.name: l.output_cosine for l in self.layers if l.candidate == c}
            ys = [max(1e-7, 1.0 - vals[n]) if vals.get(n) is not None else float("nan") for n in names]
            ax.plot(range(len(names)), ys, marker="o", label=c)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=6)
        ax.set_ylabel("1 - output cosine (this layer alone)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png")
        plt.close(fig)


def _spearman(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    if len(a) < 3:
        return None
    ra = torch.tensor(a, dtype=torch.float64).argsort().argsort().double()
    rb = torch.tensor(b, dtype=torch.float64).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den else None


def _scheme(candidate: str, group_size: int) -> LayerScheme:
    if candidate not in CANDIDATES:
        raise InvalidArgumentError(f"unknown candidate {candidate!r}; expected some of {sorted(CANDIDATES)}")
    spec = dict(CANDIDATES[candidate])
    if spec["format"] == "int4":
        return LayerScheme(group_size=group_size, scale_method="mse", **spec)
    return LayerScheme(**spec)


def _outputs(model: nn.Module, batches: list) -> List[torch.Tensor]:
    outs = []
    with torch.no_grad():
        for b in batches:
            y = _first_tensor(_run(model, b))
            if y is None or not y.is_floating_point():
                raise InvalidArgumentError("sensitivity compares the model's outputs: its first output must be a "
                                           "floating-point tensor")
            outs.append(_real_tokens(b, y.detach().float()).clone())
    return outs


def _real_tokens(batch, y: torch.Tensor) -> torch.Tensor:
    """The outputs at real tokens only: a padded batch's padding positions carry values nobody uses
    (and BERT's are large), which would otherwise dominate the comparison."""
    mask = batch.get("attention_mask") if isinstance(batch, dict) or hasattr(batch, "keys") else None
    if isinstance(mask, torch.Tensor) and mask.dim() == 2 and y.dim() >= 2 and tuple(y.shape[:2]) == tuple(mask.shape):
        return y[mask.bool()]
    return y


def _compare(ref: List[torch.Tensor], got: List[torch.Tensor]):
    num = den = dot = na = nb = 0.0
    for r, g in zip(ref, got):
        r64, g64 = r.double().flatten(), g.double().flatten()
        num += float(r64.pow(2).sum())
        den += float((r64 - g64).pow(2).sum())
        dot += float((r64 * g64).sum())
        na += float(r64.pow(2).sum())
        nb += float(g64.pow(2).sum())
    cos = dot / math.sqrt(na * nb) if na and nb else 1.0
    sqnr = 10 * math.log10(num / den) if den else float("inf")
    return cos, sqnr


def sensitivity(model: nn.Module, calibration_data, candidates: Sequence[str] = ("int4", "int8"), *,
                group_size: int = 128, layer_types=None, skip=None, include=None,
                num_calibration_samples: Optional[int] = None, show_progress: Optional[bool] = None,
                _deadline: Optional[float] = None) -> SensitivityReport:
    """Per layer and candidate scheme, the effect of quantizing that layer alone (see the module docstring).

    candidates: names from ``CANDIDATES`` ("int8" = W8A8 dynamic, "w8a16", "int4" = W4A16 in groups of
    ``group_size``, "w4a8"). Layers are the ones ``quantize`` would consider (``layer_types``, ``skip``,
    ``include``; embeddings and output heads are left out unless included). The model is not changed.
    """
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"sensitivity takes an nn.Module, got {type(model).__name__}")
    if isinstance(candidates, str):
        candidates = [candidates]
    schemes = {c: _scheme(c, group_size) for c in candidates}
    if not schemes:
        raise InvalidArgumentError("candidates is empty")
    if show_progress is None:
        show_progress = progress_enabled()
    data = [calibration_data] if isinstance(calibration_data, (torch.Tensor, dict)) else calibration_data
    batches, samples = materialize(data, num_calibration_samples)
    if not batches:
        raise InvalidArgumentError("calibration_data held no batches")
    choices, _ = select_layers(model, bits=8, layer_types=layer_types, skip=skip, include=include,
                               quality_defaults=True)
    layers = [c for c in choices if c.quantize and (isinstance(c.module, nn.Linear)
                                                    or type(c.module).__name__ == "Conv1D")]
    names = [c.name for c in layers]
    was_training = model.training
    model.eval()
    try:
        reference = _outputs(model, batches)
        stats = _channel_stats(model, names, batches, hessian=True)
        from .api import _quantize_module  # the modules quantize() itself builds
        rows: List[LayerSensitivity] = []
        outliers: Dict[str, Dict[str, float]] = {}
        work = [(c, cand) for c in layers for cand in schemes]
        for c, cand in (progress(work, total=len(work), desc="sensitivity") if show_progress else work):
            st = stats.get(c.name)
            if st is not None and c.name not in outliers:
                med = float(st.absmax.median())
                outliers[c.name] = {"max": float(st.absmax.max()), "median": med,
                                    "ratio": float(st.absmax.max()) / med if med > 0 else float("inf")}
            sch = schemes[cand]
            w = _weight_2d(c.module).float()
            before = c.module.weight.numel() * c.module.weight.element_size()
            if sch.group_size and w.shape[1] % sch.group_size:
                rows.append(LayerSensitivity(c.name, cand, sch.label, None, None, None, 0,
                                             f"K = {w.shape[1]} is not a multiple of group size {sch.group_size}"))
                continue
            if st is None:
                rows.append(LayerSensitivity(c.name, cand, sch.label, None, None, None, 0,
                                             "the calibration data never reached it"))
                continue
            q = _quantize_module(c.name, c.module, sch, (None, 0))
            if _deadline is not None and time.monotonic() >= _deadline:
                # out of time: the bytes are known (quantizing is cheap), the effect is not
                rows.append(LayerSensitivity(c.name, cand, sch.label, None, None, None, before - q.weight_nbytes,
                                             BUDGET_NOTE))
                continue
            deq = q.dequantized_weight().float()
            deq = deq.t().contiguous() if type(c.module).__name__ == "Conv1D" else deq
            proxy = _core.hessian_error(w.contiguous(), deq.contiguous(), st.acc.hessian()) / max(st.rows, 1)
            replace_module(model, c.module, q)
            try:
                cos, sqnr = _compare(reference, _outputs(model, batches))
            finally:
                replace_module(model, q, c.module)
            rows.append(LayerSensitivity(c.name, cand, sch.label, cos, sqnr, proxy, before - q.weight_nbytes))
        corr = {}
        for cand in schemes:
            pts = [(l.proxy, 1.0 - l.output_cosine) for l in rows
                   if l.candidate == cand and l.proxy is not None and l.output_cosine is not None]
            corr[cand] = _spearman([p for p, _ in pts], [e for _, e in pts])
        return SensitivityReport(rows, outliers, corr, samples, list(schemes))
    finally:
        model.train(was_training)


__all__ = ["sensitivity", "SensitivityReport", "LayerSensitivity", "CANDIDATES", "BUDGET_NOTE"]
