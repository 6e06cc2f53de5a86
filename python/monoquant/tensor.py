"""Quantizing single tensors: the Python face of the C++ quantizers.

All arithmetic happens in ``monoquant._core``; this module checks arguments,
picks defaults and wraps the results. Tensors cross into C++ through DLPack
without a copy, and the results come back as torch tensors that own the C++
buffers, again without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from . import _core
from .errors import InvalidArgumentError

_INT_FORMATS = {8: "int8", 4: "int4"}
_HALF_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
_GRANULARITY_ALIASES = {
    "per_tensor": "per_tensor", "tensor": "per_tensor",
    "per_channel": "per_channel", "channel": "per_channel",
    "per_group": "per_group", "group": "per_group", "group_wise": "per_group",
}


@dataclass(frozen=True)
class QuantSpec:
    """How a tensor was quantized.

    ``format`` is ``int8``, ``int4``, ``float16`` or ``bfloat16``. The integer
    fields (scheme, granularity, axis, group_size) only apply to int8/int4.
    """

    format: str
    bits: int
    scheme: Optional[str] = None
    granularity: Optional[str] = None
    axis: int = 0
    group_size: int = 128
    overflow: str = "error"

    @property
    def is_integer(self) -> bool:
        return self.format in ("int8", "int4")


@dataclass
class QuantizedTensor:
    """A quantized tensor: codes plus what is needed to turn them back into floats.

    codes: int8 with ``shape`` (int8); uint8 ``[rows, ceil(K/2)]`` holding two
        int4 codes per byte, first in the low nibble, each stored as q + 8
        (int4); float16/bfloat16 with ``shape`` (16-bit formats).
    scale: float32 scales (``[]`` per tensor, ``[C]`` per channel,
        ``[rows, ceil(K/group_size)]`` per group); None for 16-bit formats.
    zero_point: int32, same shape as ``scale``, for asymmetric schemes; else None.
    """

    codes: torch.Tensor
    scale: Optional[torch.Tensor]
    zero_point: Optional[torch.Tensor]
    spec: QuantSpec
    shape: torch.Size

    @property
    def nbytes(self) -> int:
        """Bytes of storage: codes, scales and zero points together."""
        parts = (self.codes, self.scale, self.zero_point)
        return sum(p.numel() * p.element_size() for p in parts if p is not None)

    def int_codes(self) -> torch.Tensor:
        """The integer codes as int8 with the original shape (int4 unpacked)."""
        if self.spec.format == "int8":
            return self.codes
        if self.spec.format == "int4":
            return _core.unpack_int4(self.codes, list(self.shape))
        raise InvalidArgumentError(f"{self.spec.format} tensors have no integer codes")

    def dequantize(self) -> torch.Tensor:
        return dequantize(self)

    def __repr__(self) -> str:
        return (f"QuantizedTensor(shape={tuple(self.shape)}, format={self.spec.format}, "
                f"scheme={self.spec.scheme}, granularity={self.spec.granularity}, nbytes={self.nbytes})")


def _as_cpu_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InvalidArgumentError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise InvalidArgumentError(f"{name} is on {t.device}; monoquant quantizes CPU tensors (call .cpu() first)")
    if not t.is_floating_point():
        raise InvalidArgumentError(f"{name} must be a floating-point tensor, got {t.dtype}")
    # DLPack refuses tensors that require grad; quantization is not differentiable anyway.
    return t.detach()


def quantize_tensor(
    t: torch.Tensor,
    bits: int = 8,
    scheme: str = "symmetric",
    granularity: Optional[str] = None,
    axis: int = 0,
    group_size: int = 128,
    *,
    dtype: Optional[torch.dtype] = None,
    overflow: str = "error",
    scale_method: str = "absmax",
) -> QuantizedTensor:
    """Quantize a float tensor.

    bits: 8 (int8), 4 (int4, packed two per byte) or 16 (float16, or bfloat16
        with ``dtype=torch.bfloat16``).
    scheme: "symmetric" (zero point 0, codes in [-127, 127] / [-7, 7]) or
        "asymmetric" (codes in [-128, 127] / [-8, 7] with a zero point).
    granularity: "per_tensor", "per_channel" (one scale per index of ``axis``)
        or "per_group" (groups of ``group_size`` along the last dimension; a
        shorter last group gets its own scale). Default: per_channel for 8
        bits, per_group for 4 bits.
    overflow (16 bits only): "error" (default), "saturate" or "infinity" for
        values beyond the float16 range.
    scale_method (int8/int4): "absmax" (default: the range of each scale cell)
        or "mse" (per cell, the clipping of that range that minimizes the
        quantization error; see include/monoquant/mse_search.hpp), or "hqq"
        (HQQ's half-quadratic l_p solver; include/monoquant/hqq.hpp).

    NaN or Inf anywhere in ``t`` raises InvalidArgumentError.
    """
    t = _as_cpu_tensor(t, "t")
    if scale_method not in ("absmax", "mse", "hqq"):
        raise InvalidArgumentError(f"scale_method must be 'absmax', 'mse' or 'hqq', got {scale_method!r}")
    if bits == 16 and scale_method != "absmax":
        raise InvalidArgumentError("scale_method only applies to bits=8 and bits=4")
    if bits == 16:
        dtype = torch.float16 if dtype is None else dtype
        if dtype not in _HALF_DTYPES:
            raise InvalidArgumentError(f"bits=16 takes dtype torch.float16 or torch.bfloat16, got {dtype}")
        fmt = _HALF_DTYPES[dtype]
        codes = _core.cast_to_half(t, fmt, overflow)
        spec = QuantSpec(format=fmt, bits=16, overflow=overflow)
        return QuantizedTensor(codes, None, None, spec, t.shape)
    if bits not in _INT_FORMATS:
        raise InvalidArgumentError(f"bits must be 4, 8 or 16, got {bits!r}")
    if dtype is not None:
        raise InvalidArgumentError("dtype only applies to bits=16")
    if granularity is None:
        granularity = "per_channel" if bits == 8 else "per_group"
    if granularity not in _GRANULARITY_ALIASES:
        raise InvalidArgumentError(
            f"unknown granularity {granularity!r}; expected 'per_tensor', 'per_channel' or 'per_group'")
    granularity = _GRANULARITY_ALIASES[granularity]
    if scale_method == "mse":
        qp = _core.choose_qparams_mse(t, bits, scheme, granularity, int(axis), int(group_size))
        out = _core.quantize_with_qparams(t, bits, scheme, granularity, int(axis), int(group_size),
                                          qp["scales"], qp["zero_points"])
    else:
        out = _core.quantize(t, bits, scheme, granularity, int(axis), int(group_size))
    scheme = "symmetric" if scheme in ("symmetric", "sym") else "asymmetric"
    spec = QuantSpec(format=_INT_FORMATS[bits], bits=bits, scheme=scheme, granularity=granularity,
                     axis=int(axis), group_size=int(group_size))
    return QuantizedTensor(out["codes"], out["scales"], out["zero_points"], spec, t.shape)


def dequantize(qt: QuantizedTensor) -> torch.Tensor:
    """Turn a QuantizedTensor back into a float32 tensor of its original shape."""
    if not isinstance(qt, QuantizedTensor):
        raise InvalidArgumentError(f"dequantize expects a QuantizedTensor, got {type(qt).__name__}")
    spec = qt.spec
    if not spec.is_integer:
        return _core.half_to_float(qt.codes)
    return _core.dequantize(qt.codes.contiguous(), qt.scale.contiguous(),
                            None if qt.zero_point is None else qt.zero_point.contiguous(),
                            list(qt.shape), spec.bits, spec.scheme, spec.granularity, spec.axis, spec.group_size)
