"""Activation-aware weight scaling (AWQ, Lin et al., arXiv 2306.00978; ``quantize(..., method="awq")``).

Input channels that carry large activations matter most to a layer's output, so AWQ scales them up in
the weight before rounding (W' = W * s, x' = x / s) and their weights lose less to quantization. Per group
of layers reading one input, s = mean|x|^alpha (normalised so that sqrt(max s * min s) = 1), with alpha
searched on a grid for the smallest output error over the calibration data,

    sum over the group's layers of tr(D H D^T),   D = W - dequantize(quantize(W * s)) / s,

where H = X^T X is the Hessian of the layer's inputs, accumulated in C++ during the statistics pass, so
the search needs no stored activations and no extra forward passes (C++ hessian_error). alpha = 0 is
s = 1, round-to-nearest itself: a group where no alpha helps is left alone. The factors are then applied by
smoothing.py: folded into a preceding norm where the float model provably stays equal, else by the module.

The search rounds with absmax scales (fast); the final weights use the layer's own scale method.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional

import torch
from torch import nn

from . import _core
from .gptq import _weight_2d
from .schemes import LayerScheme
from .smoothing import ChannelStats
from .weights import quantize_weight, scale_dtype_for

GRID = 20


def _error(layers: List[nn.Module], weights: List[torch.Tensor], schemes: List[LayerScheme], h: torch.Tensor,
           s: torch.Tensor) -> float:
    total = 0.0
    for m, w, sch in zip(layers, weights, schemes):
        qw = quantize_weight(w * s.unsqueeze(0), sch, scale_dtype_for(m.weight.dtype))
        total += _core.hessian_error(w, (qw.dequantize() / s.unsqueeze(0)).contiguous(), h)
    return total


def awq_factors(scheme_for: Callable[[nn.Module], LayerScheme], grid: int = GRID) -> Callable:
    """The factors(layers, stats) rule for smoothing.smooth (stats must carry the Hessian)."""

    def factors(layers: List[nn.Module], stats: ChannelStats) -> Optional[torch.Tensor]:
        schemes = [dataclasses.replace(scheme_for(m), scale_method="absmax") for m in layers]
        if any(s.is_half for s in schemes):
            return None
        h = stats.acc.hessian()
        weights = [_weight_2d(m).float().contiguous() for m in layers]
        mean = stats.abs_mean.clamp_min(1e-8)
        best_alpha, best = 0.0, _error(layers, weights, schemes, h, torch.ones_like(mean))
        best_s = None
        for i in range(1, grid):
            alpha = i / grid
            s = mean.pow(alpha)
            s = (s / (s.max() * s.min()).sqrt()).clamp_min(1e-4)
            e = _error(layers, weights, schemes, h, s)
            if e < best:
                best_alpha, best, best_s = alpha, e, s
        return best_s

    return factors


__all__ = ["awq_factors", "GRID"]
