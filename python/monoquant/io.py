"""Checkpoint files: safetensors, model directories (sharded), torch.save
archives, and quantized checkpoints in the compressed-tensors format.

Reading is done by the C++ core (``monoquant._core``) without executing
anything from the file; tensors come back as views over the mapped file
(copy-on-write, so writing into them never touches the file).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from . import _core

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["load_state_dict", "load_checkpoint", "save_state_dict", "save_quantized", "load_quantized"]


class _TensorRef:
    """Placeholder for a tensor inside a .pt object tree (replaced on load)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _make_tensor(record, storages) -> torch.Tensor:
    name, dtype_name, shape, strides, offset, key, requires_grad, is_parameter = record
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise NotImplementedError(f"tensor {name!r}: this torch has no dtype {dtype_name}")
    raw = storages[key]
    itemsize = torch.empty((), dtype=dtype).element_size()
    typed = raw[: (raw.numel() // itemsize) * itemsize].view(dtype) if raw.numel() else torch.empty(0, dtype=dtype)
    t = typed.as_strided(tuple(shape), tuple(strides), offset)
    if is_parameter:
        return torch.nn.Parameter(t, requires_grad=requires_grad)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _read(path: PathLike):
    raw = _core.read_checkpoint(os.fspath(path))
    storages = raw["storages"]
    tensors = [_make_tensor(r, storages) for r in raw["records"]]
    return raw, tensors


def _replace_refs(obj: Any, tensors, memo: Dict[int, Any]) -> Any:
    if isinstance(obj, _TensorRef):
        return tensors[obj.index]
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, dict):
        out: Any = {}
        memo[key] = out
        for k, v in obj.items():
            out[k] = _replace_refs(v, tensors, memo)
    elif isinstance(obj, list):
        out = []
        memo[key] = out
        out.extend(_replace_refs(v, tensors, memo) for v in obj)
    elif isinstance(obj, tuple):
        out = tuple(_replace_refs(v, tensors, memo) for v in obj)
        memo[key] = out
    else:
        return obj
    return out


def load_checkpoint(path: PathLike) -> Any:
    """Everything in a checkpoint: for a .pt archive the whole pickled object
    (nested dicts, lists, ints, ... with tensors in place, storages shared as
    torch.load shares them); for safetensors a dict of tensors."""
    raw, tensors = _read(path)
    if raw["tree"] is None:
        return {r[0]: t for r, t in zip(raw["records"], tensors)}
    return _replace_refs(raw["tree"], tensors, {})


def load_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a .safetensors file, a model directory or
    a .pt archive (nested containers are flattened to dotted names)."""
    raw, tensors = _read(path)
    return {r[0]: t for r, t in zip(raw["records"], tensors)}


def load_metadata(path: PathLike) -> Dict[str, str]:
    """The safetensors ``__metadata__`` (union over the shards of a directory), or
    the ``"__metadata__"`` entry of a .pt written by monoquant."""
    return dict(_core.read_checkpoint(os.fspath(path))["metadata"])


def _items(tensors: Mapping[str, torch.Tensor]):
    items, keep = [], []
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name!r} is a {type(t).__name__}, not a torch.Tensor")
        if t.layout != torch.strided:
            raise ValueError(f"{name!r}: only dense (strided) tensors can be saved")
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        c = t.contiguous()
        keep.append(c)
        data = c.reshape(-1).view(torch.uint8) if c.numel() else torch.empty(0, dtype=torch.uint8)
        dtype_name = str(c.dtype).removeprefix("torch.")
        items.append((str(name), dtype_name, list(c.shape), data))
    return items, keep


def save_state_dict(tensors: Mapping[str, torch.Tensor], path: PathLike, metadata: Optional[Mapping[str, str]] = None,
                    max_shard_size: Optional[int] = None) -> None:
    """Writes ``{name: tensor}`` atomically. ``.pt``/``.pth``/``.bin``: a torch.save
    archive (readable with ``torch.load(weights_only=True)``); ``.safetensors``: one
    file; any other path: a model directory, sharded at ``max_shard_size`` bytes.
    safetensors output always carries ``{"format": "pt"}`` in ``__metadata__``."""
    path = os.fspath(path)
    items, _keep = _items(tensors)
    if path.endswith((".pt", ".pth", ".bin")):
        # A .pt keeps metadata (if any) as the entry "__metadata__": {str: str}.
        _core.write_pt(path, items, {str(k): str(v) for k, v in (metadata or {}).items()})
        return
    meta = {"format": "pt"}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    if path.endswith(".safetensors"):
        _core.write_safetensors(path, items, meta)
    else:
        _core.write_safetensors_directory(path, items, meta, int(max_shard_size or 0))


PlanEntry = Union[str, Tuple[str, int], Tuple[str, int, bool], Mapping[str, Any]]


def _plan_entry(entry: PlanEntry) -> Tuple[str, int, bool]:
    if isinstance(entry, str):
        return (entry, 128, True)
    if isinstance(entry, Mapping):
        return (str(entry["method"]), int(entry.get("group_size", 128)), bool(entry.get("symmetric", True)))
    entry = tuple(entry)
    return (str(entry[0]), int(entry[1]) if len(entry) > 1 else 128, bool(entry[2]) if len(entry) > 2 else True)


def save_quantized(tensors: Mapping[str, torch.Tensor], path: PathLike, plan: Mapping[str, PlanEntry],
                   metadata: Optional[Mapping[str, str]] = None, max_shard_size: Optional[int] = None) -> None:
    """Quantizes the planned weights and writes a compressed-tensors checkpoint.

    ``plan`` maps weight names (``"layer.weight"``) to ``"w8a8"`` (int-quantized,
    int8 per channel), ``"w4a16"`` / ``("w4a16", group_size, symmetric)``
    (pack-quantized), ``"w8a16"``, ``"fp16"``, ``"bf16"`` or ``"keep"``; other
    tensors are copied. A path ending in ``.safetensors`` gets one file with
    ``quantization_config`` in its ``__metadata__``; ``.pt``/``.pth``/``.bin`` a
    torch.save archive with the same tensors plus ``"__metadata__": {str: str}``;
    any other path becomes a model directory whose ``config.json`` holds it."""
    items, _keep = _items(tensors)
    p = {str(k): _plan_entry(v) for k, v in plan.items()}
    _core.write_compressed(os.fspath(path), items, p, {str(k): str(v) for k, v in (metadata or {}).items()},
                           int(max_shard_size or 0))


def load_quantized(path: PathLike) -> Dict[str, torch.Tensor]:
    """Reads a compressed-tensors checkpoint and dequantizes every quantized
    weight with monoquant's dequantize (float32); other tensors as stored."""
    out = _core.decompress_checkpoint(os.fspath(path))
    # Tensors of dtypes the core cannot compute with come back as raw bytes.
    return dict(out)
