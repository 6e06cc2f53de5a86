"""Which rows of a layer's input are real tokens, from the batch's ``attention_mask``.

A padded batch runs its pad positions through every layer like real tokens, but nothing the
model returns for the real tokens depends on them (attention masks them out). GPTQ minimizes
each layer's output error over its calibration rows, so rows of padding only pull the
Hessian towards inputs that never matter: on MiniLM, calibration sentences padded to 128
tokens (10% real) gave GPTQ W4A16 cosine 0.9839 against 0.9869 padded per batch.

``real_rows(x, mask)`` keeps the rows of ``x`` at positions the mask attends to when ``x`` is
laid out by those positions: ``[B, S, K]`` with ``[B, S]`` equal to the mask's shape, or
``[B * S, K]``. Any other layout (a layer that sees another sequence, pooled rows, a batch
without a 0 / 1 ``attention_mask``) keeps every row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import torch


def batch_token_mask(batch) -> Optional[torch.Tensor]:
    """The batch's ``attention_mask`` as a bool [B, S] tensor, when it is a 2-D 0 / 1 (or bool) mask."""
    if not isinstance(batch, Mapping):
        return None
    m = batch.get("attention_mask")
    if not isinstance(m, torch.Tensor) or m.dim() != 2 or m.is_floating_point() or m.is_complex():
        return None
    if m.dtype != torch.bool and not bool(((m == 0) | (m == 1)).all()):
        return None
    return m.to(torch.bool)


def real_rows(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``x`` as [rows, K]: only the rows of attended positions where the layout allows it (see above)."""
    k = x.shape[-1]
    if mask is not None and mask.device == x.device:
        if x.dim() == 3 and tuple(x.shape[:2]) == tuple(mask.shape):
            return x[mask]
        if x.dim() == 2 and x.shape[0] == mask.numel() and mask.shape[1] > 1:
            return x[mask.reshape(-1)]
    return x.reshape(-1, k)
