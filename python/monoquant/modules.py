"""nn.Module wrappers over ``monoquant.ops``: drop-in quantized Linear / Conv2d.

    qlinear = QuantLinear.from_float(linear, mode="dynamic", format="int8")
    y = qlinear(x)

The weight is quantized and packed once in ``from_float``; ``forward`` is
one custom-op call. The packed tensors are buffers, so ``.to()`` / state
dicts carry them (the layout is the kernels', not a file format).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from . import ops
from .errors import InvalidArgumentError


def _register_packed(module: nn.Module, w: ops.PackedLinearWeight) -> None:
    module.register_buffer("packed_data", w.data)
    module.register_buffer("packed_scales", w.scales)
    module.register_buffer("packed_sums", w.sums)
    module.format = w.format
    module.group_size = w.group_size


def _packed(module: nn.Module, n: int, k: int) -> ops.PackedLinearWeight:
    return ops.PackedLinearWeight(module.packed_data, module.packed_scales, module.packed_sums, module.format, n, k,
                                  module.group_size)


def _check(mode: str, format: str) -> None:
    if mode == "dynamic" and format not in ("int8", "int4"):
        raise InvalidArgumentError(f"mode 'dynamic' needs format int8 or int4, got {format!r}")
    if mode == "static" and format != "int8":
        raise InvalidArgumentError(f"mode 'static' needs format int8, got {format!r}")


class QuantLinear(nn.Module):
    """Linear layer with a packed quantized weight (see ``monoquant.ops``)."""

    def __init__(self, w: ops.PackedLinearWeight, bias: Optional[Tensor], mode: str = "weight_only",
                 act_scale: float = 0.0, act_zero_point: int = 0):
        super().__init__()
        _check(mode, w.format)
        self.in_features = w.in_features
        self.out_features = w.out_features
        self.mode = mode
        self.act_scale = float(act_scale)
        self.act_zero_point = int(act_zero_point)
        _register_packed(self, w)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).contiguous())

    @classmethod
    def from_float(cls, linear: nn.Linear, mode: str = "dynamic", format: str = "int8", group_size: int = 128,
                   act_scale: Optional[float] = None, act_zero_point: int = 0) -> "QuantLinear":
        """mode: "dynamic" (W8A8 / W4A8), "weight_only" or "static" (needs
        ``act_scale`` and ``act_zero_point`` from calibration)."""
        _check(mode, format)
        if mode == "static" and act_scale is None:
            raise InvalidArgumentError("mode 'static' needs act_scale (and act_zero_point) from calibration")
        w = ops.pack_weight(linear.weight, format, group_size)
        return cls(w, linear.bias, mode, act_scale or 0.0, act_zero_point)

    @property
    def packed_weight(self) -> ops.PackedLinearWeight:
        return _packed(self, self.out_features, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        if ops._eager(x):
            # Reuse one PackedLinearWeight (and its checked-array cache) while
            # the buffers are the same tensors; .to() or load_state_dict with
            # assign=True replace them and the next call rebuilds it.
            w = self.__dict__.get("_packed_cache")
            if w is None or w.data is not self.packed_data or w.scales is not self.packed_scales \
                    or w.sums is not self.packed_sums:
                w = self.packed_weight
                self.__dict__["_packed_cache"] = w
            return ops._linear_eager(x, w, self.bias, self.mode, self.act_scale, self.act_zero_point)
        return ops.linear(x, self.packed_weight, self.bias, self.mode, self.act_scale, self.act_zero_point)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={self.format}, "
                f"mode={self.mode}" + (f", group_size={self.group_size}" if self.format == "int4" else ""))


class QuantConv2d(nn.Module):
    """Conv2d (groups=1) through the quantized linear GEMM (im2col)."""

    def __init__(self, w: ops.PackedLinearWeight, bias: Optional[Tensor], kernel_size, stride, padding, dilation,
                 in_channels: int, mode: str = "weight_only", act_scale: float = 0.0, act_zero_point: int = 0):
        super().__init__()
        _check(mode, w.format)
        self.in_channels = in_channels
        self.out_channels = w.out_features
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.mode = mode
        self.act_scale = float(act_scale)
        self.act_zero_point = int(act_zero_point)
        self._k = w.in_features
        _register_packed(self, w)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).contiguous())

    @classmethod
    def from_float(cls, conv: nn.Conv2d, mode: str = "dynamic", format: str = "int8", group_size: int = 128,
                   act_scale: Optional[float] = None, act_zero_point: int = 0) -> "QuantConv2d":
        if conv.groups != 1 or not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            raise InvalidArgumentError("QuantConv2d supports groups=1, numeric padding and padding_mode='zeros'")
        _check(mode, format)
        if mode == "static" and act_scale is None:
            raise InvalidArgumentError("mode 'static' needs act_scale (and act_zero_point) from calibration")
        weight = conv.weight.detach().reshape(conv.out_channels, -1)
        w = ops.pack_weight(weight, format, group_size)
        return cls(w, conv.bias, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.in_channels, mode,
                   act_scale or 0.0, act_zero_point)

    def forward(self, x: Tensor) -> Tensor:
        w = _packed(self, self.out_channels, self._k)
        return ops.conv2d(x, w, self.bias, self.kernel_size, self.stride, self.padding, self.dilation, self.mode,
                          self.act_scale, self.act_zero_point)
