"""``QuantizationResult``: what ``monoquant.quantize`` returns.

    result = monoquant.quantize(model, bits=8, dynamic=True)
    print(result.report)            # per layer: scheme, bytes before/after, weight SQNR; totals
    result.save("out_dir")          # .safetensors, .pt, or a model directory (config.json inside)
    check = result.validate(batches)  # output SQNR/cosine vs the float model, save/reload round trip
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from . import io
from .calibration import _run
from .metrics import error_metrics
from .model_files import dequantize_model, load, quantized_modules, save_model, write_quantized
from .report import QuantizationReport

#: Output quality below these figures is reported as a warning by validate().
OUTPUT_SQNR_WARN_DB = 20.0


@dataclass
class ValidationReport:
    weights_ok: bool = True
    roundtrip_identical: Optional[bool] = None   # reloaded codes and outputs bit-identical
    output_sqnr_db: Optional[float] = None       # quantized vs float, over all outputs
    output_cosine: Optional[float] = None        # over all outputs
    mean_sample_cosine: Optional[float] = None   # mean over samples of the per-sample cosine
    batches: int = 0
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.weights_ok and self.roundtrip_identical is not False and not self.problems

    def to_dict(self) -> Dict[str, Any]:
        return {"ok": self.ok, "weights_ok": self.weights_ok, "roundtrip_identical": self.roundtrip_identical,
                "output_sqnr_db": self.output_sqnr_db, "output_cosine": self.output_cosine,
                "mean_sample_cosine": self.mean_sample_cosine, "batches": self.batches,
                "problems": list(self.problems), "notes": list(self.notes)}

    def __str__(self) -> str:
        parts = [f"validation {'passed' if self.ok else 'FAILED'}"]
        if self.output_sqnr_db is not None:
            parts.append(f"output SQNR {self.output_sqnr_db:.1f} dB, cosine {self.output_cosine:.5f}, "
                         f"mean per-sample cosine {self.mean_sample_cosine:.5f} over {self.batches} batches")
        if self.roundtrip_identical is not None:
            parts.append("save/reload bit-identical" if self.roundtrip_identical else "save/reload DIFFERS")
        return "; ".join(parts) + "".join(f"\n  problem: {p}" for p in self.problems) + \
            "".join(f"\n  note: {n}" for n in self.notes)


def _float_outputs(out) -> List[torch.Tensor]:
    """Every floating-point tensor in a model output (tensors, tuples, dicts, ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, dict) or hasattr(out, "values") and callable(out.values):
        return [t for v in out.values() for t in _float_outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _float_outputs(v)]
    return []


def _run_outputs(model: nn.Module, batch) -> List[torch.Tensor]:
    with torch.no_grad():
        out = _run(model, batch)
    return [t.detach().float() for t in _float_outputs(out)]


class QuantizationResult:
    """The quantized model (``.model``: an nn.Module, or a state dict for state-dict input), its
    ``.config`` (what was asked for), ``.report`` and ``.warnings``."""

    def __init__(self, model, config: Dict[str, Any], report: QuantizationReport, warnings_: List[str],
                 float_model: Optional[nn.Module] = None, sample_batches: Optional[list] = None,
                 records: Optional[Dict[str, Dict[str, Any]]] = None, float_state_dict=None,
                 model_config: Optional[Dict[str, Any]] = None):
        self.model = model
        self.config = config
        self.report = report
        self.warnings = warnings_
        self.float_model = float_model
        self._sample_batches = sample_batches or []
        self._records = records            # state-dict results only
        self._float_state_dict = float_state_dict
        self._model_config = model_config

    @property
    def is_state_dict(self) -> bool:
        return not isinstance(self.model, nn.Module)

    def save(self, path, max_shard_size: Optional[int] = None) -> None:
        """Write the quantized model: ``.safetensors`` (one file), ``.pt``/``.pth`` (a torch.save archive that
        ``torch.load(weights_only=True)`` reads), or any other path: a model directory with ``config.json``
        (a transformers model's own config plus ``quantization_config``, so ``from_pretrained`` loads it)."""
        recipe = json.dumps(self.config["recipe"]) if self.config.get("recipe") else ""
        if self.is_state_dict:
            write_quantized(self.model, self._records, path, self._model_config, max_shard_size,
                            recipe_json=recipe)
        else:
            save_model(self.model, path, max_shard_size, recipe_json=recipe)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def validate(self, sample_inputs=None, max_batches: int = 8) -> ValidationReport:
        """Check the result: every quantized weight's scales finite and positive; save to a temporary
        file and reload (codes and outputs must be bit-identical); and, given ``sample_inputs`` (the forms
        ``calibration_data`` takes) or the calibration batches seen, the output SQNR and cosine against
        the float model. Problems are added to ``.warnings``."""
        rep = ValidationReport()
        if self.is_state_dict:
            return self._validate_state_dict(rep)
        qmods = quantized_modules(self.model)
        for name, m in qmods.items():
            qw = m.quantized_weight()
            if qw.scales is not None and not bool(torch.isfinite(qw.scales).all() and (qw.scales > 0).all()):
                rep.weights_ok = False
                rep.problems.append(f"{name}: scales not finite and positive")
        batches = list(sample_inputs) if sample_inputs is not None else list(self._sample_batches)
        if isinstance(sample_inputs, (torch.Tensor, dict)):
            batches = [sample_inputs]
        batches = batches[:max_batches]
        rep.batches = len(batches)
        with tempfile.TemporaryDirectory(prefix="monoquant-validate-") as tmp:
            path = os.path.join(tmp, "model.safetensors")
            save_model(self.model, path)
            reloaded = load(path, dequantize_model(self.model))
        again = quantized_modules(reloaded)
        same = set(again) == set(qmods) and all(again[n].quantized_weight().equal(m.quantized_weight())
                                                and again[n].act_scale == m.act_scale
                                                and again[n].act_zero_point == m.act_zero_point
                                                for n, m in qmods.items())
        if not same:
            rep.problems.append("the reloaded model's codes or scales differ from the quantized model's")
        if not batches:
            rep.notes.append("no sample inputs: outputs were not compared (pass sample_inputs=...)")
        elif self.float_model is None:
            rep.notes.append("the float model is not kept with inplace=True: outputs were not compared")
        ref_all, q_all, cos = [], [], []
        self.model.eval()
        reloaded.eval()
        for batch in batches:
            q_out = _run_outputs(self.model, batch)
            r_out = _run_outputs(reloaded, batch)
            if len(r_out) != len(q_out) or not all(torch.equal(a, b) for a, b in zip(q_out, r_out)):
                same = False
                rep.problems.append("the reloaded model computes different outputs")
            if self.float_model is not None:
                was = self.float_model.training
                self.float_model.eval()
                f_out = _run_outputs(self.float_model, batch)
                self.float_model.train(was)
                if [t.shape for t in f_out] != [t.shape for t in q_out]:
                    rep.problems.append("the quantized model's outputs have other shapes than the float model's")
                    continue
                for f, q in zip(f_out, q_out):
                    ref_all.append(f.reshape(-1))
                    q_all.append(q.reshape(-1))
                    rows = f.reshape(f.shape[0], -1) if f.dim() > 1 else f.reshape(1, -1)
                    qrows = q.reshape(rows.shape)
                    cos.extend(error_metrics(r, s).cosine_similarity for r, s in zip(rows, qrows))
        rep.roundtrip_identical = same
        if ref_all:
            m = error_metrics(torch.cat(ref_all), torch.cat(q_all))
            rep.output_sqnr_db, rep.output_cosine = m.sqnr_db, m.cosine_similarity
            rep.mean_sample_cosine = sum(cos) / len(cos)
            if m.sqnr_db < OUTPUT_SQNR_WARN_DB:
                rep.problems.append(f"output SQNR {m.sqnr_db:.1f} dB against the float model is under "
                                    f"{OUTPUT_SQNR_WARN_DB:.0f} dB: accuracy at risk")
            if not math.isfinite(m.sqnr_db) and m.sqnr_db < 0:
                rep.problems.append("outputs are not finite")
        for p in rep.problems:
            self._warn(f"validate: {p}")
        return rep

    def _validate_state_dict(self, rep: ValidationReport) -> ValidationReport:
        with tempfile.TemporaryDirectory(prefix="monoquant-validate-") as tmp:
            path = os.path.join(tmp, "model.safetensors")
            self.save(path)
            back = io.load_state_dict(path)
            same = set(back) == set(self.model) and all(
                back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in self.model.items())
        rep.roundtrip_identical = same
        if not same:
            rep.problems.append("the reloaded tensors differ from the quantized state dict")
        rep.notes.append("a state dict has no forward: outputs were not compared")
        for p in rep.problems:
            self._warn(f"validate: {p}")
        return rep

    def __repr__(self) -> str:
        t = self.report.totals()
        return (f"QuantizationResult({t['layers_quantized']} layers quantized, {t['compression_ratio']:.2f}x, "
                f"{len(self.warnings)} warnings)")


__all__ = ["QuantizationResult", "ValidationReport"]
