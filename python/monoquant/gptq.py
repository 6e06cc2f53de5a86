"""GPTQ over a whole model (``quantize(..., method="gptq", calibration_data=...)``).

The numerics are C++ (``_core.HessianAccumulator``, ``_core.gptq_quantize``;
include/monoquant/gptq.hpp). This file only walks the model:

1. A probe forward pass on the first batch records the order in which the
   selected layers run, and which of them take the very same input tensor
   (a transformer's query/key/value): those share one Hessian.
2. Layers are grouped into stages: the layers of one block (an element of an
   ``nn.ModuleList``, such as ``encoder.layer.3``) form one stage; a layer
   outside any block is a stage of its own.
3. Stage by stage (``sequential=True``), every calibration batch runs through
   the model — whose earlier stages are already quantized — up to the end of
   the stage, where a hook stops the forward pass. Forward pre-hooks add each
   layer's inputs to its Hessian as they stream by (only the rows of real
   tokens when the batch has an attention_mask: token_mask.py); no
   activation is kept.
   Then the stage's layers are quantized by GPTQ and their float weights
   replaced by the dequantized result, so the next stage calibrates on the
   quantized weights (run by torch's GEMM, which is fast at calibration batch
   sizes; activation quantization, in the A8 modes, is not simulated). The
   quantized modules are swapped in at the end.
   ``sequential=False`` collects every Hessian in one pass of the float model.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import _core
from .calibration import _batch_size, _run, _take
from .errors import InvalidArgumentError
from .progress import progress
from .schemes import LayerScheme
from .token_mask import batch_token_mask, real_rows
from .weights import _DTYPE_NAMES, QuantizedWeight, scale_dtype_for


class _StopForward(Exception):
    """Raised by a hook at the end of a stage: the rest of the model need not run."""


def materialize(data, max_samples: Optional[int]) -> Tuple[list, int]:
    """The calibration batches as a list (GPTQ passes over them once per stage), capped at max_samples."""
    out, samples = [], 0
    for batch in data:
        size = _batch_size(batch)
        if max_samples is not None and samples + size > max_samples:
            batch = _take(batch, max_samples - samples, size)
            size = max_samples - samples
        out.append(batch)
        samples += size
        if max_samples is not None and samples >= max_samples:
            break
    return out, samples


def _weight_2d(m: nn.Module) -> torch.Tensor:
    w = m.weight.detach()
    return w.t() if type(m).__name__ == "Conv1D" else w  # transformers' Conv1D holds [in, out]


def _input_of(args) -> Optional[torch.Tensor]:
    return next((a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), None)


def _block_of(name: str, lists: set) -> Optional[str]:
    parts = name.split(".")
    for i in range(1, len(parts)):
        if ".".join(parts[:i]) in lists:
            return ".".join(parts[: i + 1])
    return None


def run_batches(model: nn.Module, batches: list, handles: list, on_batch: Optional[Callable] = None) -> None:
    """Every batch through the model under no_grad (a hook may end a pass early with _StopForward); the
    hooks in `handles` are removed afterwards, whatever happens. on_batch(batch) runs before each pass."""
    try:
        with torch.no_grad():
            for batch in batches:
                if on_batch is not None:
                    on_batch(batch)
                try:
                    _run(model, batch)
                except _StopForward:
                    pass
    finally:
        for h in handles:
            h.remove()


def plan_stages(model: nn.Module, names: Sequence[str], first_batch) -> Tuple[List[Tuple[Optional[str], List[str]]],
                                                                              Dict[str, str]]:
    """[(block name or None, [layer names in call order])] and {layer: leader whose input it shares}."""
    modules = dict(model.named_modules())
    order: List[str] = []
    seen_inputs: Dict[Tuple, str] = {}
    shares: Dict[str, str] = {}
    alive: List[torch.Tensor] = []  # held until the probe ends, so that no later input can reuse an address

    def hook_for(name):
        def hook(module, args):
            x = _input_of(args)
            if x is None or name in order:
                return
            order.append(name)
            alive.append(x)
            key = (x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.dtype)
            shares[name] = seen_inputs.setdefault(key, name)
        return hook

    run_batches(model, [first_batch], [modules[n].register_forward_pre_hook(hook_for(n)) for n in names])
    lists = {n for n, m in modules.items() if isinstance(m, nn.ModuleList)}
    stages: List[Tuple[Optional[str], List[str]]] = []
    for n in order:
        block = _block_of(n, lists)
        if block is not None and stages and stages[-1][0] == block:
            stages[-1][1].append(n)
        else:
            stages.append((block, [n]))
    return stages, shares


def leader_of(name: str, layers, shares: Dict[str, str]) -> str:
    """The layer whose Hessian `name` uses: the first one that took the same input, if it is in this stage."""
    leader = shares.get(name, name)
    return leader if leader in layers else name


def _collect(model: nn.Module, batches: list, layers: Dict[str, nn.Module], shares: Dict[str, str],
             stop_at: Optional[nn.Module]) -> Dict[str, "_core.HessianAccumulator"]:
    """Hessians of `layers` (leaders only) over all batches, stopping each forward after `stop_at`."""
    acc: Dict[str, _core.HessianAccumulator] = {}
    handles = []
    mask: List[Optional[torch.Tensor]] = [None]  # the current batch's real tokens (token_mask.py)

    def on_batch(batch):
        mask[0] = batch_token_mask(batch)

    def hook_for(name, k):
        def hook(module, args):
            x = _input_of(args)
            if x is None:
                return
            if x.shape[-1] != k:
                raise InvalidArgumentError(f"layer {name!r}: input has {x.shape[-1]} features, weight {k}")
            try:
                rows = real_rows(x.detach(), mask[0])
                if rows.shape[0]:
                    acc[name].add(rows.to(torch.float32).contiguous())
            except InvalidArgumentError as e:
                raise InvalidArgumentError(f"layer {name!r}: {e}") from None
        return hook

    for name, m in layers.items():
        if leader_of(name, layers, shares) != name:
            continue
        k = int(_weight_2d(m).shape[1])
        acc[name] = _core.HessianAccumulator(k)
        handles.append(m.register_forward_pre_hook(hook_for(name, k)))
    if stop_at is not None:
        def stop(module, args, output):
            raise _StopForward()
        handles.append(stop_at.register_forward_hook(stop))
    run_batches(model, batches, handles, on_batch)
    return acc


def gptq_weight(m: nn.Module, hessian: torch.Tensor, scheme: LayerScheme, *, dampening: float, block_size: int,
                act_order: bool) -> Tuple[QuantizedWeight, Dict]:
    """GPTQ's codes and scales for one linear layer, in the canonical form (weights.py)."""
    w = _weight_2d(m).to(torch.float32).contiguous()
    n, k = (int(v) for v in w.shape)
    bits, g = (scheme.bits, 0) if scheme.format == "int8" else (4, scheme.group_size)
    # Activation order keeps the groups contiguous (llm-compressor's actorder="weight": group scales from the
    # original weight, only the sweep order changes), so the result runs on the kernels as it is, with no g_idx.
    r = _core.gptq_quantize(w, hessian, bits, g, scheme.scale_method, _DTYPE_NAMES[scale_dtype_for(m.weight.dtype)],
                            dampening, block_size, act_order, act_order,
                            bits == 4 and scheme.full_range and scheme.weight_symmetric,
                            scheme.weight_symmetric)
    zp = r["zero_points"]
    if scheme.format == "int8":
        qw = QuantizedWeight("int8", (n, k), r["codes"], r["scales"].reshape(n, 1), 0,
                             zero_points=None if zp is None else zp.reshape(n, 1))
    else:
        qw = QuantizedWeight("int4", (n, k), r["codes"].view(torch.uint8), r["scales"], g, zero_points=zp)
    return qw, {"g_idx": r["g_idx"], "error": r["error"], "rtn_error": r["rtn_error"], "dampening": r["dampening"]}


def run_gptq(model: nn.Module, names: Sequence[str], batches: list, scheme_for: Callable[[nn.Module], LayerScheme],
             swap: Callable[[str, nn.Module, QuantizedWeight, Dict], None], *, dampening: float = 0.01,
             block_size: int = 128, act_order: bool = False, sequential: bool = True,
             show_progress: bool = False) -> Dict[str, Dict]:
    """Quantize the linear layers `names` of `model` in place by GPTQ; returns per-layer figures.

    swap(name, float_module, weight, info) replaces the module (the API builds the QuantLinear)."""
    if not batches:
        raise InvalidArgumentError("method='gptq' needs calibration_data with at least one batch")
    modules = dict(model.named_modules())
    was_training = model.training
    model.eval()
    try:
        stages, shares = plan_stages(model, names, batches[0])
        if not sequential:
            layers = [n for _, s in stages for n in s]
            stages = [(None, layers)]
        info: Dict[str, Dict] = {}
        results: List[Tuple[str, nn.Module, QuantizedWeight, Dict]] = []
        bar = progress(stages, total=len(stages), desc="GPTQ") if show_progress else stages
        for block, layer_names in bar:
            layers = {n: modules[n] for n in layer_names}
            stop_at = (modules[block] if block is not None else layers[layer_names[-1]]) if sequential else None
            acc = _collect(model, batches, layers, shares, stop_at)
            for n in layer_names:
                leader = leader_of(n, layers, shares)
                h = acc[leader].hessian()
                qw, figures = gptq_weight(layers[n], h, scheme_for(layers[n]), dampening=dampening,
                                          block_size=block_size, act_order=act_order)
                figures["tokens"] = acc[leader].rows
                info[n] = figures
                results.append((n, layers[n], qw, figures))
            for _, m, qw, _ in results[-len(layer_names):]:  # later stages see this stage's quantized weights
                deq = qw.dequantize()
                with torch.no_grad():
                    m.weight.copy_((deq.t() if type(m).__name__ == "Conv1D" else deq).to(m.weight.dtype))
        for n, m, qw, figures in results:
            swap(n, m, qw, figures)
        return info
    finally:
        model.train(was_training)


__all__ = ["run_gptq", "plan_stages", "materialize", "gptq_weight"]
