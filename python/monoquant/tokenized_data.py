"""Calibration batches from a file of tokenized tensors (what ``monoquant quantize
--calibration-data FILE`` reads).

The file is a ``.safetensors`` or ``.pt`` state dict (read by monoquant's own safe readers)
of tensors with one sample per row along dim 0, e.g. a tokenizer's ``input_ids`` and
``attention_mask`` saved with ``safetensors.torch.save_file``. Each batch is a dict of
``batch_size`` rows of every tensor, passed to the model's forward as keyword arguments;
with an ``attention_mask``, the columns after the last one any row of the batch attends to
are cut from the tensors shaped like it (the file's right padding beyond the batch's own).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Union

import torch

from . import io
from .errors import InvalidArgumentError


def tokenized_batches(path: Union[str, os.PathLike], batch_size: int = 8,
                      max_samples: Optional[int] = None) -> List[Dict[str, torch.Tensor]]:
    """The rows of every tensor in ``path``, in order, as batches of ``batch_size``
    (the last one may be shorter); at most ``max_samples`` rows in all."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 1):
        raise InvalidArgumentError(f"max_samples must be a positive integer, got {max_samples!r}")
    where = os.fspath(path)
    tensors = io.load_state_dict(where)
    if not tensors:
        raise InvalidArgumentError(f"{where}: no tensors; expected tokenized inputs such as input_ids")
    rows = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            raise InvalidArgumentError(f"{where}: '{name}' is not a tensor with one sample per row")
        rows[name] = t.shape[0]
    if len(set(rows.values())) != 1:
        sizes = ", ".join(f"'{n}' {r}" for n, r in rows.items())
        raise InvalidArgumentError(f"{where}: every tensor needs the same number of rows (samples), got {sizes}")
    n = next(iter(rows.values()))
    if n == 0:
        raise InvalidArgumentError(f"{where}: the tensors have no rows")
    if max_samples is not None:
        n = min(n, max_samples)
    mask = tensors.get("attention_mask")
    per_token = [name for name, t in tensors.items()
                 if mask is not None and mask.dim() == 2 and t.dim() >= 2 and t.shape[:2] == mask.shape]
    out = []
    for i in range(0, n, batch_size):
        batch = {name: t[i:i + batch_size] for name, t in tensors.items()}
        if per_token:
            # A file pads every row to its longest; a batch keeps only the columns up to the last
            # one some row of it attends to, as a tokenizer padding that batch alone would: the
            # trailing padding changes no attended output, but GPTQ's Hessians and the observers
            # would see its activations. (Left padding leaves nothing to cut.)
            attended = batch["attention_mask"].ne(0).any(0).nonzero()
            if attended.numel():
                end = int(attended.max()) + 1
                for name in per_token:
                    batch[name] = batch[name][:, :end]
        out.append(batch)
    return out


__all__ = ["tokenized_batches"]
