"""Per-input-channel smoothing (SmoothQuant, ``quantize(..., smoothquant=alpha)``).

Activation outliers live in a few input channels; SmoothQuant moves them into
the weights, which quantize per output channel and can take them:

    s_j = max|x_j|^alpha / max|W_:j|^(1 - alpha)      x' = x / s,  W' = W * s

so x' W'^T = x W^T exactly in float. The layers that read one input tensor
(a transformer's query/key/value) share one s. Where the division x / s can be
folded into the module that produced x (a LayerNorm / RMSNorm whose output
only these layers read: gamma / s, beta / s), it costs nothing at run time;
whether that holds is checked every time, by running calibration batches
through the float model with and without the fold: BERT is post-LN, its
LayerNorm outputs also feed the residual, so the fold would change the model
and is refused there. Otherwise the quantized module itself multiplies its
input by 1 / s (``QuantLinear.input_smooth``) before the kernels quantize it.

While the model is being calibrated and quantized, an un-folded layer gets a
forward pre-hook that applies 1 / s, so that observers and GPTQ see the
smoothed inputs and the float model stays equal to the original.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .calibration import _run
from .errors import InvalidArgumentError
from .gptq import _input_of, _weight_2d, plan_stages

#: relative output difference under which a fold counts as exact (float32 rounding)
FOLD_TOLERANCE = 1e-4


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.LayerNorm) or type(m).__name__.endswith("RMSNorm")


def _channel_absmax(model: nn.Module, names: Sequence[str], batches: list) -> Dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    out: Dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(module, args):
            x = _input_of(args)
            if x is None:
                return
            a = x.detach().reshape(-1, x.shape[-1]).abs().amax(0).float()
            out[name] = a if name not in out else torch.maximum(out[name], a)
        return hook

    handles = [modules[n].register_forward_pre_hook(hook_for(n)) for n in names]
    try:
        with torch.no_grad():
            for b in batches:
                _run(model, b)
    finally:
        for h in handles:
            h.remove()
    return out


def _producers(model: nn.Module, names: Sequence[str], batch) -> Dict[str, str]:
    """{layer: the norm module whose output tensor is the layer's input}, from one probe pass."""
    modules = dict(model.named_modules())
    outputs: Dict[Tuple, str] = {}
    found: Dict[str, str] = {}
    alive: List[torch.Tensor] = []
    handles = []
    for n, m in modules.items():
        if _is_norm(m):
            def record(module, args, output, n=n):
                if isinstance(output, torch.Tensor):
                    alive.append(output)
                    outputs[(output.data_ptr(), tuple(output.shape), output.dtype)] = n
            handles.append(m.register_forward_hook(record))
    for n in names:
        def check(module, args, n=n):
            x = _input_of(args)
            if x is not None and n not in found:
                alive.append(x)
                p = outputs.get((x.data_ptr(), tuple(x.shape), x.dtype))
                if p is not None:
                    found[n] = p
        handles.append(modules[n].register_forward_pre_hook(check))
    try:
        with torch.no_grad():
            _run(model, batch)
    finally:
        for h in handles:
            h.remove()
    return found


def _outputs(model: nn.Module, batches: list) -> List[torch.Tensor]:
    from .calibration import _first_tensor
    with torch.no_grad():
        return [_first_tensor(_run(model, b)).detach().clone() for b in batches]


def _close(a: List[torch.Tensor], b: List[torch.Tensor]) -> bool:
    for x, y in zip(a, b):
        scale = float(x.abs().max()) or 1.0
        if float((x - y).abs().max()) > FOLD_TOLERANCE * scale:
            return False
    return True


class Smoothing:
    """The smoothing applied to a model: folded groups and in-module factors (with their pre-hooks)."""

    def __init__(self):
        self.inverse: Dict[str, torch.Tensor] = {}   # layer -> 1 / s, applied by the module
        self.folded: Dict[str, str] = {}             # layer -> norm it was folded into
        self._handles = []

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def smooth(model: nn.Module, names: Sequence[str], batches: list, alpha: float,
           reference: Optional[nn.Module] = None) -> Smoothing:
    """Smooth the linear layers `names` of `model` in place. `reference` (default: `model` before any
    change) gives the float outputs a fold must reproduce."""
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise InvalidArgumentError(f"smoothquant takes the migration strength alpha in (0, 1), e.g. 0.5, "
                                   f"got {alpha!r}")
    modules = dict(model.named_modules())
    names = [n for n in names if isinstance(modules[n], nn.Linear) or type(modules[n]).__name__ == "Conv1D"]
    result = Smoothing()
    if not names:
        return result
    check_batches = batches[:2]
    expected = _outputs(reference if reference is not None else model, check_batches)
    absmax = _channel_absmax(model, names, batches)
    _, shares = plan_stages(model, names, batches[0])
    producers = _producers(model, names, batches[0])
    groups: Dict[str, List[str]] = {}
    for n in names:
        if n in absmax:
            groups.setdefault(shares.get(n, n), []).append(n)
    for leader, layers in groups.items():
        a = absmax[leader].clamp_min(1e-5)
        w = torch.stack([_weight_2d(modules[n]).float().abs().amax(0) for n in layers]).amax(0).clamp_min(1e-5)
        s = (a.pow(alpha) / w.pow(1.0 - alpha)).clamp_min(1e-5)
        with torch.no_grad():
            for n in layers:
                _scale_inputs(modules[n], s)
        norm = producers.get(leader)
        if norm is not None and all(producers.get(n) == norm for n in layers) and _fold(modules[norm], s):
            if _close(expected, _outputs(model, check_batches)):
                result.folded.update({n: norm for n in layers})
                continue
            _fold(modules[norm], 1.0 / s)  # the norm's output is read elsewhere too: undo
        inv = (1.0 / s).contiguous()
        for n in layers:
            result.inverse[n] = inv
            result._handles.append(modules[n].register_forward_pre_hook(_pre_hook(inv)))
    return result


def _scale_inputs(m: nn.Module, s: torch.Tensor) -> None:
    if type(m).__name__ == "Conv1D":  # weight [in, out]
        m.weight.mul_(s.to(m.weight.dtype).unsqueeze(1))
    else:
        m.weight.mul_(s.to(m.weight.dtype).unsqueeze(0))


def _fold(norm: nn.Module, s: torch.Tensor) -> bool:
    """norm's output divided by s: gamma / s and beta / s. False when the norm has no per-channel affine."""
    w = getattr(norm, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 1 or w.numel() != s.numel():
        return False
    with torch.no_grad():
        w.div_(s.to(w.dtype))
        b = getattr(norm, "bias", None)
        if isinstance(b, torch.Tensor):
            b.div_(s.to(b.dtype))
    return True


def _pre_hook(inv: torch.Tensor):
    def hook(module, args):
        x = _input_of(args)
        if x is None:
            return None
        i = next(k for k, a in enumerate(args) if a is x)
        return args[:i] + (x * inv.to(x.dtype),) + args[i + 1:]
    return hook


__all__ = ["smooth", "Smoothing", "FOLD_TOLERANCE"]
