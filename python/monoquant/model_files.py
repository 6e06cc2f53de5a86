"""Quantized models on disk and back: ``save_model``, ``load`` and
``dequantize_model``.

A saved model is its ``state_dict()`` (quantized modules contribute their
compressed-tensors tensors) plus two JSON strings:
``quantization_config`` (compressed-tensors' schema, so transformers and vLLM
load it) and ``monoquant`` (``{"format": "monoquant.model", "modules": {...}}``:
each quantized module's type, scheme and geometry, which compressed-tensors
cannot express, e.g. FP16 layers, convolutions and embeddings). A
``.safetensors`` file keeps both in ``__metadata__``; a directory also gets
``config.json`` with ``quantization_config`` (the transformers model's own
config when there is one); a ``.pt`` archive the entry ``"__metadata__"``.

``load`` reads files written by monoquant or by other compressed-tensors tools
with monoquant's C++ reader and rebuilds quantized modules that run on
monoquant's kernels; it never dequantizes to float.
"""

from __future__ import annotations

import copy
import json
import os
import re
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from . import _core, io
from . import compute_dtype as _compute_dtype
from .errors import FormatError, InvalidArgumentError, UnsupportedError
from .modules import (QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear, QuantModule,
                      half_weight_from_float_shape)
from .schemes import LayerScheme
from .weights import QuantizedWeight, from_compressed

MONOQUANT_FORMAT = "monoquant.model"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


# ---------------------------------------------------------------- module tree helpers

def replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> int:
    """Put ``new`` wherever ``old`` is a child (a module shared at several names stays shared)."""
    count = 0
    for m in root.modules():
        for key, child in list(m._modules.items()):
            if child is old:
                m._modules[key] = new
                count += 1
    return count


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    parent._modules[leaf] = new


# ---------------------------------------------------------------- describing a quantized model

def module_record(module: QuantModule) -> Dict[str, Any]:
    rec: Dict[str, Any] = {"type": module.source_type, "scheme": module.scheme.to_dict(),
                           "shape": list(module._weight_shape), "float_dtype": str(module.float_dtype).split(".")[-1]}
    if isinstance(module, QuantConv2d):
        rec.update(in_channels=module.in_channels, kernel_size=list(module.kernel_size), stride=list(module.stride),
                   padding=list(module.padding), dilation=list(module.dilation))
    if isinstance(module, QuantEmbedding):
        rec["padding_idx"] = module.padding_idx
    return rec


def quantized_modules(model: nn.Module) -> Dict[str, QuantModule]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantModule)}


def _record_for_core(name: str, rec: Dict[str, Any]) -> Dict[str, Any]:
    base = ("type", "scheme", "shape", "float_dtype")
    return {"name": name, "type": rec["type"], "scheme": rec["scheme"], "shape": list(rec["shape"]),
            "float_dtype": rec["float_dtype"],
            "extra_json": json.dumps({k: v for k, v in rec.items() if k not in base})}


def write_quantized(tensors: Dict[str, torch.Tensor], records: Dict[str, Dict[str, Any]], path,
                    model_config: Optional[Dict[str, Any]] = None, max_shard_size: Optional[int] = None,
                    extra_files=None, recipe_json: str = "") -> None:
    """Write quantized tensors and their metadata to ``.safetensors``, ``.pt`` or a directory, with the
    checkpoint pipeline's streaming writer (the one `monoquant quantize` uses): ``quantization_config`` and
    ``monoquant`` in the metadata, and for a directory ``config.json`` (``model_config`` or the directory's
    existing config.json, with ``quantization_config`` merged). ``recipe_json`` (the canonical recipe) is
    recorded in the ``monoquant`` metadata."""
    path = os.fspath(path)
    items, _keep = io._items(tensors)
    config = ""
    if model_config:
        config = json.dumps(model_config)
    elif os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = f.read()
    _core.write_quantized_model(path, items, [_record_for_core(n, r) for n, r in records.items()], config,
                                int(max_shard_size or 0), recipe_json)
    if not path.endswith((".safetensors", ".pt", ".pth", ".bin")):
        for save in extra_files or ():
            save(path)


def transformers_config(model: nn.Module) -> Optional[Dict[str, Any]]:
    cfg = getattr(model, "config", None)
    to_dict = getattr(cfg, "to_dict", None)
    if not callable(to_dict):
        return None
    d = to_dict()
    d.pop("quantization_config", None)
    # A model built from a config (not from_pretrained) has no architectures yet: record its class, as
    # save_pretrained does, so that loading builds this class and not the bare base model.
    if not d.get("architectures") and hasattr(model, "_from_config"):
        d["architectures"] = [type(model).__name__]
    return d


def save_model(model: nn.Module, path, max_shard_size: Optional[int] = None, recipe_json: str = "") -> None:
    records = {n: module_record(m) for n, m in quantized_modules(model).items()}
    if not records:
        raise InvalidArgumentError("the model has no monoquant quantized modules to save")
    ordered = [n for n, m in quantized_modules(model).items() if getattr(m, "input_order", None) is not None]
    if ordered:
        import warnings
        warnings.warn(f"{len(ordered)} layers (e.g. {ordered[0]!r}) hold activation-ordered weights (weight_g_idx, "
                      f"from the file they were loaded from); compressed-tensors dropped that ordering in 2026, so "
                      f"only monoquant.load and older readers apply it", RuntimeWarning, stacklevel=3)
    smoothed = [n for n, m in quantized_modules(model).items() if getattr(m, "input_smooth", None) is not None]
    if smoothed:
        import warnings
        warnings.warn(f"{len(smoothed)} layers (e.g. {smoothed[0]!r}) multiply their input by SmoothQuant factors "
                      f"that could not be folded into the model; the file keeps them as '<layer>.input_smooth', "
                      f"which monoquant.load applies and other compressed-tensors readers (transformers, vLLM) "
                      f"do not: load it with monoquant", RuntimeWarning, stacklevel=3)
    extra = []
    gen = getattr(model, "generation_config", None)
    if gen is not None and callable(getattr(gen, "save_pretrained", None)) and \
            getattr(model, "can_generate", lambda: False)():
        extra.append(gen.save_pretrained)
    write_quantized(dict(model.state_dict()), records, path, transformers_config(model), max_shard_size, extra,
                    recipe_json)


# ---------------------------------------------------------------- reading

def read_metadata(path) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """(quantization_config, monoquant model info) of a checkpoint; either may be None."""
    path = os.fspath(path)
    meta = io.load_metadata(path)
    qcfg = meta.get("quantization_config")
    qcfg = json.loads(qcfg) if qcfg else None
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        if isinstance(cfg, dict) and isinstance(cfg.get("quantization_config"), dict):
            qcfg = cfg["quantization_config"]
    info = None
    if meta.get("monoquant"):
        try:
            parsed = json.loads(meta["monoquant"])
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}: the monoquant metadata is not valid JSON: {e}") from None
        if isinstance(parsed, dict) and parsed.get("format") == MONOQUANT_FORMAT:
            info = parsed
    if qcfg is not None and qcfg.get("quant_method") not in (None, "compressed-tensors"):
        raise UnsupportedError(f"{path}: quant_method {qcfg.get('quant_method')!r} is not compressed-tensors")
    return qcfg, info


def model_from_directory(path) -> nn.Module:
    """A transformers model built from ``path/config.json`` (its ``architectures[0]``) in the config's dtype,
    its weights not initialized (they are loaded next; the checkpoint must hold every one)."""
    import contextlib

    import transformers  # a directory with a transformers config needs transformers

    config = transformers.AutoConfig.from_pretrained(os.fspath(path))
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # build the float skeleton; monoquant does the quantized part
    archs = list(getattr(config, "architectures", None) or [])
    cls = getattr(transformers, archs[0], None) if archs else None
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        dtype = None
    try:  # skip the random initialization (as from_pretrained does): most of the build time
        from transformers.initialization import no_init_weights
    except ImportError:
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        if cls is None:
            return transformers.AutoModel.from_config(config, dtype=dtype)
        return cls._from_config(config, dtype=dtype)


def _targets_match(target: str, name: str, module: nn.Module) -> bool:
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    return target == name or type(module).__name__ == target


def _specs_from_config(qcfg: Dict[str, Any], model: nn.Module) -> Dict[str, Tuple[Dict, Optional[Dict], str]]:
    """module name -> (weight args, input activation args, format) from compressed-tensors config_groups."""
    groups = qcfg.get("config_groups") or {}
    if not isinstance(groups, dict):
        raise FormatError("quantization_config.config_groups is not an object")
    ignore = [str(i) for i in (qcfg.get("ignore") or [])]
    named = [(n, m) for n, m in model.named_modules() if n]
    out: Dict[str, Tuple[Dict, Optional[Dict], str]] = {}
    for gname, g in groups.items():
        if not isinstance(g, dict) or not isinstance(g.get("weights"), dict):
            continue
        fmt = g.get("format") or qcfg.get("format") or ""
        for target in g.get("targets") or []:
            for n, m in named:
                if n in out or not _targets_match(str(target), n, m):
                    continue
                if any(_targets_match(i, n, m) for i in ignore):
                    continue
                if getattr(m, "weight", None) is None:
                    continue
                out[n] = (g["weights"], g.get("input_activations"), fmt)
    return out


def _scheme_for(qw: QuantizedWeight, act: Optional[Dict], name: str, bits: int = 8) -> LayerScheme:
    if not act:  # 7-bit weight-only files load as the int8 weights they are
        return LayerScheme(format=qw.format, mode="weight_only", group_size=qw.group_size,
                           weight_symmetric=qw.zero_points is None)
    if int(act.get("num_bits", 8)) != 8 or act.get("type", "int") != "int":
        raise UnsupportedError(f"{name}: input activations {act.get('type')}{act.get('num_bits')} are not "
                               f"supported (int8 only)")
    dynamic = act.get("dynamic") in (True, "true")
    strategy = act.get("strategy")
    if dynamic and strategy == "group":
        g = int(act.get("group_size") or 0)
        if qw.format != "int8" or g != qw.group_size:
            raise UnsupportedError(f"{name}: activation groups of {g} run with int8 weights in the same groups "
                                   f"(the weights here: {qw.format}, group {qw.group_size})")
        return LayerScheme(format="int8", mode="dynamic", group_size=g, int8_bits=7 if bits == 7 else 8)
    if dynamic and strategy not in ("token", None):
        raise UnsupportedError(f"{name}: dynamic activations per {strategy!r}; monoquant quantizes per token or "
                               f"per group")
    if not dynamic and strategy not in ("tensor", None):
        raise UnsupportedError(f"{name}: static activations per {strategy!r}; monoquant takes one scale per tensor")
    if dynamic and not act.get("symmetric", True):
        raise UnsupportedError(f"{name}: asymmetric dynamic activations; monoquant's are symmetric per token")
    return LayerScheme(format=qw.format, mode="dynamic" if dynamic else "static", group_size=qw.group_size,
                       act_symmetric=bool(act.get("symmetric", True)),
                       int8_bits=7 if bits == 7 and qw.format == "int8" else 8)


def _build(name: str, skeleton: nn.Module, qw: QuantizedWeight, scheme: LayerScheme, tensors: Dict[str, torch.Tensor],
           source_type: Optional[str] = None) -> QuantModule:
    p = name + "."
    bias = tensors.get(p + "bias")
    float_dtype = skeleton.weight.dtype if getattr(skeleton, "weight", None) is not None else torch.float32
    act_scale = act_zp = 0
    if scheme.mode == "static":
        if p + "input_scale" not in tensors:
            raise FormatError(f"{name}: static activations but no {p}input_scale")
        act_scale = float(tensors[p + "input_scale"].float().reshape(-1)[0])
        if p + "input_zero_point" in tensors:
            act_zp = int(tensors[p + "input_zero_point"].reshape(-1)[0])
    kind = source_type or type(skeleton).__name__
    want = tuple(skeleton.weight.shape)
    flat = (want[0], int(skeleton.weight.numel() // want[0])) if want else ()
    if kind == "Conv1D":
        flat = (want[1], want[0])
    if tuple(qw.shape) != flat:
        raise FormatError(f"{name}: the file's weight is {list(qw.shape)}, the model's layer {list(want)}")
    if isinstance(skeleton, nn.Embedding):
        return QuantEmbedding(qw, scheme, skeleton.padding_idx, float_dtype)
    for conv_type, quant_type in ((nn.Conv1d, QuantConv1d), (nn.Conv2d, QuantConv2d)):
        if isinstance(skeleton, conv_type):
            return quant_type(qw, scheme, bias, skeleton.in_channels, *quant_type._geometry(skeleton), float_dtype,
                              act_scale, act_zp)
    if isinstance(skeleton, nn.Linear) or kind in ("Linear", "Conv1D"):
        q = QuantLinear(qw, scheme, bias, float_dtype, act_scale, act_zp, "Conv1D" if kind == "Conv1D" else "Linear")
        if p + "input_smooth" in tensors:
            smooth = tensors[p + "input_smooth"].to(torch.float32).contiguous()
            if tuple(smooth.shape) != (qw.shape[1],) or not bool(torch.isfinite(smooth).all()):
                raise FormatError(f"{name}: input_smooth must be {qw.shape[1]} finite values, got "
                                  f"{tuple(smooth.shape)}")
            q.input_smooth = smooth
        return q
    raise UnsupportedError(f"{name}: no quantized module for {type(skeleton).__name__}")


def fill_float_weights(model: nn.Module, tensors: Dict[str, torch.Tensor], path: str, skip_prefixes=()) -> None:
    """``model.load_state_dict(tensors, strict=False)``, then ties weights (transformers); raises FormatError
    naming what the model needs and the file lacks (tied weights excepted), warns about tensors it ignored."""
    result = model.load_state_dict(tensors, strict=False)
    tie = getattr(model, "tie_weights", None)
    if callable(tie):
        tie()
    loaded_ids = {id(t) for k, t in model.state_dict(keep_vars=True).items() if k in tensors}
    missing = []
    for k in result.missing_keys:
        if skip_prefixes and k.startswith(tuple(skip_prefixes)):
            continue
        try:
            if id(model.get_parameter(k)) in loaded_ids:
                continue  # tied to a tensor that was loaded
        except AttributeError:
            pass
        missing.append(k)
    if missing:
        raise FormatError(f"{path}: the checkpoint lacks {len(missing)} of the model's tensors: "
                          f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; is it the model saved there?")
    # Buffers the model keeps out of its state dict (BERT's position_ids) are in older checkpoints: not news.
    buffers = {n for n, _ in model.named_buffers()}
    unexpected = [k for k in result.unexpected_keys if k not in buffers]
    if unexpected:
        warnings.warn(f"{path}: {len(unexpected)} tensors in the file are not in the model and were "
                      f"ignored: {', '.join(unexpected[:5])}", RuntimeWarning, stacklevel=3)


def load(path, model: Optional[nn.Module] = None, compute_dtype: Optional[torch.dtype] = None) -> nn.Module:
    """Rebuild a quantized model from ``path`` (a .safetensors file, a .pt archive or a model directory)
    written by monoquant or by another compressed-tensors tool.

    model: the float architecture to fill (its weights are replaced; it is changed in place and returned).
    Without it, ``path`` must be a directory whose ``config.json`` names a transformers architecture.
    compute_dtype: torch.bfloat16 runs the float part in bf16 where the CPU has native bf16
    (as ``monoquant.quantize(..., compute_dtype=)``; compute_dtype.py).
    """
    compute_dtype = _compute_dtype.resolve(compute_dtype)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InvalidArgumentError(f"{path}: no such file or directory")
    qcfg, info = read_metadata(path)
    if qcfg is None and info is None:
        raise FormatError(f"{path}: not a quantized checkpoint (no quantization_config and no monoquant metadata); "
                          f"load a float checkpoint with monoquant.load_state_dict")
    if model is None:
        if not (os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json"))):
            raise InvalidArgumentError(f"{path}: pass model= (the float architecture to fill); only a directory "
                                       f"with a transformers config.json describes its own architecture")
        model = model_from_directory(path)
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tensors = io.load_state_dict(path)
    named = dict(model.named_modules())
    records: Dict[str, Dict[str, Any]] = dict((info or {}).get("modules") or {})
    specs = _specs_from_config(qcfg, model) if qcfg else {}
    built: Dict[str, QuantModule] = {}
    for name in list(records) + [n for n in specs if n not in records]:
        if name not in named:
            raise FormatError(f"{path}: the file quantizes {name!r}, which the model does not have")
        skeleton = named[name]
        rec = records.get(name)
        if rec is not None:
            try:
                scheme = LayerScheme.from_dict(rec["scheme"])
            except (InvalidArgumentError, UnsupportedError, TypeError) as e:
                raise FormatError(f"{path}: the scheme recorded for {name!r} is not valid: {e}") from None
            if scheme.is_half:
                w = tensors.get(name + ".weight")
                if w is None:
                    raise FormatError(f"{path}: no {name}.weight")
                qw = half_weight_from_float_shape(w, scheme.format, rec.get("type", ""), tuple(rec["shape"]))
            else:
                qw = from_compressed(tensors, name, {"num_bits": scheme.bits, "symmetric": scheme.weight_symmetric,
                                                     "type": "int",
                                                     "strategy": "group" if scheme.group_size else "channel",
                                                     "group_size": scheme.group_size or None})
            module = _build(name, skeleton, qw, scheme, tensors, rec.get("type"))
        else:
            wargs, act, _fmt = specs[name]
            qw = from_compressed(tensors, name, wargs)
            module = _build(name, skeleton, qw, _scheme_for(qw, act, name, int(wargs.get("num_bits", 8))), tensors)
        built[name] = module
    for name, module in built.items():
        replace_module(model, named[name], module) or set_submodule(model, name, module)
    prefixes = tuple(n + "." for n in built)
    fill_float_weights(model, {k: v for k, v in tensors.items() if not k.startswith(prefixes)}, path, prefixes)
    model.eval()
    if compute_dtype is not None:
        cast_warns: List[str] = []
        _compute_dtype.apply(model, compute_dtype, cast_warns)
        for msg in cast_warns:
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return model


# ---------------------------------------------------------------- back to float

def _float_module(m: QuantModule) -> nn.Module:
    w = m.dequantized_weight().to(m.float_dtype)
    bias = None if m.bias is None else m.bias.to(m.float_dtype)
    if isinstance(m, QuantEmbedding):
        f = nn.Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx, dtype=m.float_dtype)
    elif isinstance(m, QuantConv1d):
        f = nn.Conv1d(m.in_channels, m.out_channels, m.kernel_size[1], m.stride[1], m.padding[1], m.dilation[1],
                      bias=bias is not None, dtype=m.float_dtype)
    elif isinstance(m, QuantConv2d):
        f = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                      bias=bias is not None, dtype=m.float_dtype)
    elif m.source_type == "Conv1D":
        from transformers.pytorch_utils import Conv1D
        f = Conv1D(m.out_features, m.in_features).to(m.float_dtype)
    else:
        f = nn.Linear(m.in_features, m.out_features, bias=bias is not None, dtype=m.float_dtype)
    with torch.no_grad():
        f.weight.copy_(w)
        if bias is not None:
            f.bias.copy_(bias)
    return f


def dequantize_model(model: nn.Module) -> nn.Module:
    """A plain float copy of a quantized model (quantized modules replaced by their float kind with the
    dequantized weights); the input is left untouched."""
    out = copy.deepcopy(model)
    if isinstance(out, QuantModule):
        return _float_module(out)
    for name, m in list(quantized_modules(out).items()):
        replace_module(out, m, _float_module(m))
    return out


__all__ = ["save_model", "load", "dequantize_model", "read_metadata", "model_from_directory", "write_quantized",
           "replace_module", "quantized_modules", "fill_float_weights"]
