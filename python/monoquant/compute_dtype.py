"""``compute_dtype``: run the float part of a quantized model (attention, norms, activations, the layers kept
float) in bfloat16, as ``model.to(torch.bfloat16)`` does, while the quantized layers keep their weights and take
and return bf16 activations directly (the C++ kernels widen the input and round the output themselves).

A transformers model that runs sdpa attention switches to monoquant's bf16 attention where the CPU has
AMX-BF16 or AVX-512 BF16 (monoquant.attention), and plain nn.LayerNorm modules run monoquant's bf16 kernel (monoquant.bf16_norms).
Only where the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX-BF16): elsewhere torch emulates bf16 and the
model would run slower than in float32, so the model stays float32 and a warning says why."""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from . import _core
from . import attention as _attention
from . import bf16_norms as _bf16_norms
from .errors import InvalidArgumentError

_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}


def native_bf16() -> bool:
    f = _core.cpu_features()
    return bool(f["avx512_bf16"] or f["amx_bf16"])


def resolve(dtype) -> Optional[torch.dtype]:
    """None or float32: nothing to do; bfloat16: cast; anything else is an error."""
    if dtype is None or dtype is torch.float32:
        return None
    if dtype is torch.bfloat16:
        return dtype
    raise InvalidArgumentError(f"compute_dtype must be torch.float32 or torch.bfloat16, got {dtype!r}")


def apply(model: nn.Module, dtype, warns: List[str], notes: Optional[List[str]] = None) -> Optional[str]:
    """Casts ``model``'s float part to ``dtype`` in place; returns the dtype's name, or None when nothing was
    cast (float32 asked, or no native bf16 here: then a message is added to ``warns``). ``notes`` receives a
    line for each module monoquant's own bf16 kernels took over (attention, LayerNorm)."""
    dtype = resolve(dtype)
    if dtype is None:
        return None
    if not native_bf16():
        warns.append("compute_dtype=torch.bfloat16 ignored: this CPU has no native bf16 arithmetic (AVX-512 BF16 "
                     "or AMX-BF16), so bf16 would run slower than float32; the float part stays float32")
        return None
    model.to(dtype)
    if dtype is torch.bfloat16:
        said = notes if notes is not None else []
        if _attention.use_for(model):  # transformers models: attention on AMX-BF16 or AVX-512 BF16
            hw = "AMX-BF16" if _core.attention_bf16_kernel() == "amx_bf16" else "AVX-512 BF16"
            said.append(f"attention: transformers' sdpa replaced by {_attention.NAME} (monoquant's {hw} kernel; "
                        f"model.set_attn_implementation('sdpa') restores it)")
        norms = _bf16_norms.use_for(model)  # nn.LayerNorm on the AVX-512 BF16 kernel
        if norms:
            said.append(f"{norms} nn.LayerNorm modules run monoquant's AVX-512 BF16 LayerNorm (Bf16LayerNorm)")
    return _NAMES[dtype]


__all__ = ["apply", "resolve", "native_bf16"]
