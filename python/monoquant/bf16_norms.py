"""LayerNorm on the core's AVX-512 BF16 kernel for models whose float part runs in bf16 (``compute_dtype``).

torch's bf16 LayerNorm costs about twice what reading and writing its rows does (include/monoquant/norm.hpp
has the figures). ``use_for(model)`` turns each plain ``nn.LayerNorm`` over the last dimension into a
``Bf16LayerNorm``: the same module (class changed in place, same parameters, same state_dict), whose forward
takes bf16 CPU inputs without autograd to the kernel and gives everything else to ``nn.LayerNorm``.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _core
from .ops import _eager


class Bf16LayerNorm(nn.LayerNorm):
    """nn.LayerNorm; bf16 inputs on the CPU (no autograd) run monoquant's kernel, within bf16 rounding of torch's."""

    def _fast(self, x: torch.Tensor) -> bool:
        if x.dtype is not torch.bfloat16 or not x.is_cpu or x.dim() == 0 or len(self.normalized_shape) != 1:
            return False
        if not _core.layer_norm_bf16_available():
            return False  # e.g. a model pickled on another machine
        if x.size(-1) != self.normalized_shape[0] or not x.is_contiguous() or x.numel() == 0:
            return False
        params = [p for p in (self.weight, self.bias) if p is not None]
        if any(p.dtype is not torch.bfloat16 or not p.is_cpu or not p.is_contiguous() for p in params):
            return False
        if not _eager(x):
            return False  # torch.compile, tracing, fake tensors: they must see torch's own op
        return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast(x):
            return super().forward(x)
        n = x.size(-1)
        y = torch.empty_like(x)
        w, b = self.weight, self.bias
        _core.layer_norm_bf16_raw(x.data_ptr(), x.numel() // n, n, n, 0 if w is None else w.data_ptr(),
                                  0 if b is None else b.data_ptr(), float(self.eps), y.data_ptr(), n)
        return y


def use_for(model: nn.Module) -> int:
    """Makes every plain nn.LayerNorm in ``model`` a Bf16LayerNorm where the CPU has AVX-512 BF16; returns how
    many. Subclasses of nn.LayerNorm (their forward may differ) are left alone."""
    if not _core.layer_norm_bf16_available():
        return 0
    count = 0
    for m in model.modules():
        if type(m) is nn.LayerNorm:
            m.__class__ = Bf16LayerNorm
            count += 1
    return count


__all__ = ["Bf16LayerNorm", "use_for"]
