"""Activation-aware weight scaling (AWQ, Lin et al., arXiv 2306.00978; ``quantize(..., method="awq")``).

Input channels that carry large activations matter most to a layer's output, so AWQ scales them up in
the weight before rounding (W' = W * s, x' = x / s) and their weights lose less to quantization. Per group
of layers reading one input, s = mean|x|^alpha (normalised so that sqrt(max s * min s) = 1), with alpha
searched on a grid for the smallest output error over the calibration data. alpha = 0 is s = 1,
round-to-nearest itself: a group where no alpha helps is left alone. The factors are then applied by
smoothing.py: folded into a preceding norm where the float model provably stays equal, else by the module.

The error a candidate is judged by:

- a group of one layer: its own output error, sum over the group's layers of tr(D H D^T),
  D = W - dequantize(quantize(W * s)) / s, where H = X^T X is the Hessian of the layer's inputs,
  accumulated in C++ during the statistics pass, so the search needs no stored activations and no
  extra forward passes (C++ hessian_error);
- a group of several layers (a transformer's query / key / value, LLaMA's gate / up): the output error
  of the smallest module that holds them all (the attention, the MLP), run on its calibration inputs
  with the group's weights fake-quantized, as AWQ's own search does. The attention's softmax and the
  MLP's gating weigh the layers' errors unequally, which a sum of per-layer errors cannot see: on the
  random LLaMA of tests/python/test_methods_llms.py the per-layer sum chose factors that raised the
  held-out error over round-to-nearest (1.00x-1.03x on 4 sets of 32 batches), the block's output
  error lowers it. The block's inputs are captured in one pass that stops at the block
  (one block's inputs held at a time), and any caches in its keyword arguments are dropped.

The search rounds with the layer's own scale method (the MSE clipping search by default at 4 bits), so a
candidate is judged by the weights it will really get: with absmax in the search (about 4x faster) the
factors did not carry over to the MSE-scaled weights.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import _core
from .calibration import _first_tensor
from .gptq import _StopForward, _weight_2d, run_batches
from .schemes import LayerScheme
from .smoothing import ChannelStats
from .weights import quantize_weight, scale_dtype_for

GRID = 20

# Keyword arguments of a block that carry state between calls (KV caches): dropped when its inputs are
# replayed, or every candidate would append to them.
_STATE_KWARGS = ("past_key_value", "past_key_values", "layer_past")


def _fake_quantized(m: nn.Module, w: torch.Tensor, scheme: LayerScheme, s: torch.Tensor) -> torch.Tensor:
    """dequantize(quantize(W * s)) / s, [N, K] float32."""
    qw = quantize_weight(w * s.unsqueeze(0), scheme, scale_dtype_for(m.weight.dtype))
    return (qw.dequantize() / s.unsqueeze(0)).contiguous()


def _error(layers: List[nn.Module], weights: List[torch.Tensor], schemes: List[LayerScheme], h: torch.Tensor,
           s: torch.Tensor) -> float:
    return sum(_core.hessian_error(w, _fake_quantized(m, w, sch, s), h) for m, w, sch in zip(layers, weights, schemes))


def _block_inputs(model: nn.Module, block: nn.Module, batches: list) -> List[Tuple[tuple, dict]]:
    """The (args, kwargs) `block` is called with on each batch; each pass stops at the block."""
    cached: List[Tuple[tuple, dict]] = []

    def hook(module, args, kwargs):
        kw = {k: v for k, v in kwargs.items() if k not in _STATE_KWARGS}
        if "use_cache" in kw:
            kw["use_cache"] = False
        cached.append((args, kw))
        raise _StopForward

    run_batches(model, batches, [block.register_forward_pre_hook(hook, with_kwargs=True)])
    return cached


class _BlockObjective:
    """The output error of `block` over its captured inputs with `layers` fake-quantized for a candidate s."""

    def __init__(self, block: nn.Module, cached: List[Tuple[tuple, dict]], layers: List[nn.Module],
                 weights: List[torch.Tensor], schemes: List[LayerScheme]):
        self.block, self.cached, self.layers, self.weights, self.schemes = block, cached, layers, weights, schemes
        with torch.no_grad():
            self.refs = [_first_tensor(block(*a, **k)).detach() for a, k in cached]

    def __call__(self, s: torch.Tensor) -> float:
        saved = [m.weight.data for m in self.layers]
        try:
            for m, w, sch in zip(self.layers, self.weights, self.schemes):
                deq = _fake_quantized(m, w, sch, s)
                m.weight.data = (deq.t() if type(m).__name__ == "Conv1D" else deq).to(m.weight.dtype).contiguous()
            with torch.no_grad():
                return float(sum((_first_tensor(self.block(*a, **k)).float() - ref.float()).pow(2).sum()
                                 for (a, k), ref in zip(self.cached, self.refs)))
        finally:
            for m, w in zip(self.layers, saved):
                m.weight.data = w


def _common_block(model: nn.Module, names: Sequence[str]) -> Optional[nn.Module]:
    """The smallest module holding every named layer; None when that is the whole model."""
    parts = [n.split(".") for n in names]
    prefix = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        prefix.append(level[0])
    if not prefix or len(prefix) == min(len(p) for p in parts):
        return None
    return model.get_submodule(".".join(prefix))


def awq_factors(scheme_for: Callable[[nn.Module], LayerScheme], grid: int = GRID, *,
                model: Optional[nn.Module] = None, batches: Optional[list] = None) -> Callable:
    """The factors(layers, stats) rule for smoothing.smooth (stats must carry the Hessian where
    ``factors.needs_hessian(layers)``). With `model` and `batches`, groups of several layers are judged by
    their block's output error (module docstring) and need no Hessian."""
    names_of: Dict[int, str] = {id(m): n for n, m in model.named_modules()} if model is not None else {}

    def block_for(layers: List[nn.Module]) -> Optional[nn.Module]:
        if len(layers) > 1 and model is not None and batches:
            return _common_block(model, [names_of[id(m)] for m in layers])
        return None

    def factors(layers: List[nn.Module], stats: ChannelStats) -> Optional[torch.Tensor]:
        schemes = [scheme_for(m) for m in layers]
        if any(s.is_half for s in schemes):
            return None
        weights = [_weight_2d(m).float().contiguous() for m in layers]
        objective = None
        block = block_for(layers)
        if block is not None:
            objective = _BlockObjective(block, _block_inputs(model, block, batches), layers, weights, schemes)
        if objective is None:
            h = stats.acc.hessian()
            objective = lambda s: _error(layers, weights, schemes, h, s)  # noqa: E731
        mean = stats.abs_mean.clamp_min(1e-8)
        best, best_s = objective(torch.ones_like(mean)), None
        for i in range(1, grid):
            s = mean.pow(i / grid)
            s = (s / (s.max() * s.min()).sqrt()).clamp_min(1e-4)
            e = objective(s)
            if e < best:
                best, best_s = e, s
        return best_s

    # Only groups judged by the Hessian need it accumulated (smoothing.smooth asks before its statistics pass).
    factors.needs_hessian = lambda layers: block_for(layers) is None
    return factors


__all__ = ["awq_factors", "GRID"]
