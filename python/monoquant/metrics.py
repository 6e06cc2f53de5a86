"""Error metrics between a reference tensor and its quantized approximation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import _core
from .errors import InvalidArgumentError


@dataclass(frozen=True)
class ErrorMetrics:
    """sqnr_db is 20*log10(||x|| / ||x - y||), the definition torch.ao, torchao
    and ONNX Runtime share (inf when y equals x). Sums run in float64."""

    sqnr_db: float
    mse: float
    max_abs_error: float
    cosine_similarity: float
    reference_energy: float  # sum of x^2: lets callers aggregate SQNR over many tensors
    error_energy: float      # sum of (x - y)^2


def error_metrics(reference: torch.Tensor, approximation: torch.Tensor) -> ErrorMetrics:
    for name, t in (("reference", reference), ("approximation", approximation)):
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
            raise InvalidArgumentError(f"{name} must be a CPU torch.Tensor")
    return ErrorMetrics(**_core.compare(reference.detach(), approximation.detach()))


def aggregate_sqnr_db(metrics) -> float:
    """SQNR over several tensors taken together (their energies summed)."""
    signal = sum(m.reference_energy for m in metrics)
    noise = sum(m.error_energy for m in metrics)
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return 10.0 * math.log10(signal / noise)


def sqnr(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    return error_metrics(reference, approximation).sqnr_db
