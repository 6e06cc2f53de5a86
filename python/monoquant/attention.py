"""Attention on AMX-BF16 tiles or AVX-512 BF16 for transformers models whose float part runs in bf16
(``compute_dtype``).

On MiniLM at batch 32 x 128 tokens in bf16, torch's own scaled_dot_product_attention was the largest
single cost of a quantized model after the linear layers (on Zen 4, without AMX, a quarter of it).
``monoquant_amx`` (the name dates from the AMX kernel; it runs the AVX-512 BF16 one where AMX is absent,
``_core.attention_bf16_kernel()`` says which) is a transformers attention
implementation (``AttentionInterface``) backed by the core's ``attention_bf16`` (include/monoquant/
attention.hpp): softmax(q k^T * scale + mask) v per (batch, head), within bf16 tolerance of torch's.
It takes what the core supports (bf16 on the CPU, head_dim 32 or 64, up to 4096 keys, a boolean mask
or none, no causal flag, no dropout, no extra bias) and hands everything else to transformers' sdpa
function, so switching a model to it never changes what the model can run.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from . import _core
from .ops import _eager

NAME = "monoquant_amx"
_registered = False


def _fast_path(module, query, key, value, attention_mask, dropout, is_causal, kwargs) -> bool:
    if not (query.dtype is key.dtype is value.dtype is torch.bfloat16):
        return False
    if not all(_eager(t) for t in (query, key, value)):
        return False  # autograd, torch.compile, tracing, fake tensors: they must see torch's own op
    if query.device.type != "cpu" or query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        return False
    b, h, s, d = query.shape
    if key.shape != value.shape or key.shape[0] != b or key.shape[1] != h or key.shape[3] != d:
        return False  # grouped key / value heads, or shapes this kernel does not take
    if not _core.attention_bf16_supported(d, key.shape[2]):
        return False
    if any(t.stride(3) != 1 or t.stride(2) % 2 for t in (query, key, value)):
        return False  # rows must be contiguous pairs of bf16
    if (dropout and module.training) or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None:
        return False
    if kwargs.get("output_attentions", False):
        return False
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if s > 1 and attention_mask is None and causal:
        return False  # transformers' sdpa would run this causally
    if attention_mask is not None:
        if attention_mask.dtype is not torch.bool or attention_mask.dim() != 4 or attention_mask.device.type != "cpu":
            return False
        try:
            torch.broadcast_shapes(attention_mask.shape, (b, h, s, key.shape[2]))
        except RuntimeError:
            return False
    return True


def attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                      is_causal: Optional[bool] = None, **kwargs):
    """A transformers attention function: returns (attn_output [b, s, h, d], None)."""
    if not _fast_path(module, query, key, value, attention_mask, dropout, is_causal, kwargs):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    b, h, s, d = query.shape
    kv = key.shape[2]
    out = torch.empty((b, s, h, d), dtype=torch.bfloat16)
    if attention_mask is not None:
        mask = attention_mask.expand(b, h, s, kv)
        mask_ptr, mask_strides = mask.data_ptr(), list(mask.stride())
    else:
        mask_ptr, mask_strides = 0, [0, 0, 0, 0]
    scale = scaling if scaling is not None else d ** -0.5
    _core.attention_bf16_raw(query.data_ptr(), key.data_ptr(), value.data_ptr(), out.data_ptr(), mask_ptr,
                             [b, h, s, kv, d], list(query.stride()[:3]), list(key.stride()[:3]),
                             list(value.stride()[:3]), mask_strides, float(scale))
    return out, None


def register() -> None:
    """Makes ``monoquant_amx`` a transformers attention implementation (with sdpa's boolean masks)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    _registered = True


def use_for(model: nn.Module) -> bool:
    """Switches a transformers model that runs sdpa attention to ``monoquant_amx`` where the CPU has
    AMX-BF16 or AVX-512 BF16; returns whether it did. Other models are left as they are."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "set_attn_implementation"):
        return False
    if getattr(config, "_attn_implementation", None) != "sdpa" or not _core.attention_bf16_kernel():
        return False
    try:
        register()
        model.set_attn_implementation(NAME)
    except (ImportError, ValueError, AttributeError, TypeError):
        return False  # a transformers without attention interfaces, or a model that refuses custom ones
    return True


__all__ = ["NAME", "attention_forward", "register", "use_for"]
