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

from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import _core
from .calibration import _run
from .errors import InvalidArgumentError
from .gptq import _input_of, _weight_2d, plan_stages, run_batches

#: relative output difference under which a fold counts as exact (float32 rounding)
FOLD_TOLERANCE = 1e-4


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.LayerNorm) or type(m).__name__.endswith("RMSNorm")


class ChannelStats:
    """Per input channel statistics of one layer's inputs: max |x|, mean |x|, and (when asked) the
    Hessian X^T X accumulated in C++."""

    def __init__(self, k: int, hessian: bool):
        self.absmax = torch.zeros(k)
        self.abs_sum = torch.zeros(k, dtype=torch.float64)
        self.rows = 0
        self.acc = _core.HessianAccumulator(k) if hessian else None

    @property
    def abs_mean(self) -> torch.Tensor:
        return (self.abs_sum / max(self.rows, 1)).float()


def _channel_stats(model: nn.Module, names: Sequence[str], batches: list,
                   hessian: Union[bool, Collection[str]]) -> Dict[str, ChannelStats]:
    """Statistics of the inputs of `names`; the Hessian for all of them (True) or for those in `hessian`."""
    modules = dict(model.named_modules())
    out: Dict[str, ChannelStats] = {}

    def hook_for(name):
        def hook(module, args):
            x = _input_of(args)
            if x is None:
                return
            x2 = x.detach().reshape(-1, x.shape[-1]).float()
            st = out.get(name)
            if st is None:
                wanted = hessian if isinstance(hessian, bool) else name in hessian
                st = out[name] = ChannelStats(x2.shape[1], wanted)
            a = x2.abs()
            st.absmax = torch.maximum(st.absmax, a.amax(0))
            st.abs_sum += a.sum(0, dtype=torch.float64)
            st.rows += x2.shape[0]
            if st.acc is not None:
                st.acc.add(x2.contiguous())
        return hook

    run_batches(model, batches, [modules[n].register_forward_pre_hook(hook_for(n)) for n in names])
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
    run_batches(model, [batch], handles)
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
        self.factors: Dict[str, torch.Tensor] = {}   # layer -> s
        self._handles = []

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def smoothquant_factors(alpha: float) -> Callable:
    """SmoothQuant's rule: s = max|x|^alpha / max|W|^(1 - alpha), the weights' max over every layer that
    reads this input."""
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise InvalidArgumentError(f"smoothquant takes the migration strength alpha in (0, 1), e.g. 0.5, "
                                   f"got {alpha!r}")

    def factors(layers: List[nn.Module], stats: ChannelStats) -> Optional[torch.Tensor]:
        a = stats.absmax.clamp_min(1e-5)
        w = torch.stack([_weight_2d(m).float().abs().amax(0) for m in layers]).amax(0).clamp_min(1e-5)
        return (a.pow(alpha) / w.pow(1.0 - alpha)).clamp_min(1e-5)
    return factors


def smooth(model: nn.Module, names: Sequence[str], batches: list, factors: Callable, *, hessian: bool = False,
           reference: Optional[nn.Module] = None) -> Smoothing:
    """Smooth the linear layers `names` of `model` in place, with s = factors(layers, stats) per group of
    layers reading one input (None: leave the group alone). `reference` (default: `model` before any
    change) gives the float outputs a fold must reproduce; `hessian` collects X^T X into the stats."""
    modules = dict(model.named_modules())
    names = [n for n in names if isinstance(modules[n], nn.Linear) or type(modules[n]).__name__ == "Conv1D"]
    result = Smoothing()
    if not names:
        return result
    check_batches = batches[:2]
    expected = _outputs(reference if reference is not None else model, check_batches)
    _, shares = plan_stages(model, names, batches[0])
    producers = _producers(model, names, batches[0])
    # Layers reading one input form a group; its statistics are its leader's (the same tensor), and
    # the Hessian is accumulated only for groups whose factors rule asks for it.
    groups: Dict[str, List[str]] = {}
    for n in names:
        groups.setdefault(shares.get(n, n), []).append(n)
    wants = getattr(factors, "needs_hessian", None)
    need = {leader for leader, layers in groups.items()
            if hessian and (wants is None or wants([modules[n] for n in layers]))}
    stats = _channel_stats(model, list(groups), batches, need)
    for leader, layers in groups.items():
        if leader not in stats:  # never called on the calibration data
            continue
        s = factors([modules[n] for n in layers], stats[leader])
        if s is None:
            continue
        result.factors.update({n: s for n in layers})
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


__all__ = ["smooth", "smoothquant_factors", "Smoothing", "ChannelStats", "FOLD_TOLERANCE"]
