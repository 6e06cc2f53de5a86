"""Quantized linear and conv2d kernels as torch custom ops.

The kernels live in the C++ core; this module packs weights once and calls
them on torch tensors without copies (float32 contiguous input goes straight
in; the output is a torch tensor that owns the C++ buffer).

Packed weights are plain tensors plus integers, not an opaque handle:
``PackedLinearWeight`` holds ``data`` (uint8, the kernel layout of
``include/monoquant/linear.hpp``), ``scales`` (float32) and ``sums`` (int32,
int8 only: the column sums, then the largest |code|) with ``format``, ``out_features``, ``in_features`` and
``group_size``. That is what the custom ops ``monoquant::linear`` and
``monoquant::conv2d`` take, so ``torch.compile``, ``torch.jit.trace`` and
``torch.export`` see ordinary tensor arguments; fake (meta) implementations
give the output shapes.

Modes: ``"weight_only"`` (float activations; int8, int4, float16, bfloat16
weights), ``"dynamic"`` (activations quantized per row to int8 on the fly;
int8 weights = W8A8, int4 weights = W4A8) and ``"static"`` (int8 weights,
activations with a calibrated per-tensor scale and int8 zero point in
[-128, 127]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor

from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode

from . import _core
from .errors import InvalidArgumentError

_FORMATS = ("int8", "int4", "float16", "bfloat16")
_MODES = ("weight_only", "dynamic", "static")


@dataclass(frozen=True)
class PackedLinearWeight:
    """A weight packed once for the linear kernels (see the module docstring)."""

    data: Tensor
    scales: Tensor
    sums: Tensor
    format: str
    out_features: int
    in_features: int
    group_size: int = 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.data, self.scales, self.sums))

    def _raw_arrays(self) -> Tuple[int, int, int]:
        """Addresses of data, scales and sums for the eager fast path. The
        arrays are checked (dtype, size, device, contiguity) on first use and
        again whenever one of them has been re-pointed (``.data =``,
        ``set_``, a resize that moves it), so a steady-state call pays three
        ``data_ptr()`` reads, not the checks."""
        ptrs = (self.data.data_ptr(), self.scales.data_ptr(), self.sums.data_ptr())
        if self.__dict__.get("_checked_ptrs") != ptrs:
            nbytes, nscales, nsums = _packed_sizes(self.format, self.out_features, self.in_features, self.group_size)
            _check_array(self.data, torch.uint8, nbytes, "data")
            _check_array(self.scales, torch.float32, nscales, "scales")
            _check_array(self.sums, torch.int32, nsums, "sums")
            object.__setattr__(self, "_checked_ptrs", ptrs)
        return ptrs


def _packed(d: dict, fmt: str, n: int, k: int, group_size: int = 0) -> PackedLinearWeight:
    return PackedLinearWeight(d["data"], d["scales"], d["sums"], fmt, int(n), int(k), int(group_size))


def pack_int8(codes: Tensor, scales: Tensor) -> PackedLinearWeight:
    """Pack int8 codes ``[out, in]`` (full range) with per-output-channel
    float32 scales ``[out]`` (or ``[out, 1]``)."""
    codes = codes.detach()
    scales = scales.detach().to(torch.float32)
    d = _core.pack_linear_int8(codes, scales)
    return _packed(d, "int8", codes.shape[0], codes.shape[1])


def pack_int8_grouped(codes: Tensor, scales: Tensor, group_size: int) -> PackedLinearWeight:
    """int8 codes [N, K] with scales [N, K / group_size]: weights for W8A8 with activation groups (the
    activations are then quantized per token and per group of ``group_size`` along K)."""
    d = _core.pack_linear_int8_grouped(codes, scales, int(group_size))
    return _packed(d, "int8", codes.shape[0], codes.shape[1], group_size)


def _act_group(format: str, group_size: int) -> int:
    """Grouped int8 weights always run with activations quantized in the same groups."""
    return int(group_size) if format == "int8" else 0


def pack_int4(packed: Tensor, in_features: int, scales: Tensor, group_size: int) -> PackedLinearWeight:
    """Pack int4 codes in monoquant's row layout (uint8 ``[out, ceil(in/2)]``,
    low nibble first, nibble = q + 8) with group scales ``[out, ceil(in/g)]``;
    ``group_size`` a multiple of 8 (32, 64, 128, ...)."""
    packed = packed.detach()
    scales = scales.detach().to(torch.float32)
    d = _core.pack_linear_int4(packed, int(in_features), scales, int(group_size))
    return _packed(d, "int4", packed.shape[0], in_features, group_size)


def pack_half(weight: Tensor) -> PackedLinearWeight:
    """Pack a float16 or bfloat16 weight ``[out, in]``."""
    weight = weight.detach()
    if weight.dtype not in (torch.float16, torch.bfloat16):
        raise InvalidArgumentError(f"pack_half takes float16 or bfloat16 weights, got {weight.dtype}")
    d = _core.pack_linear_half(weight)
    fmt = "float16" if weight.dtype == torch.float16 else "bfloat16"
    return _packed(d, fmt, weight.shape[0], weight.shape[1])


def pack_weight(weight: Tensor, format: str = "int8", group_size: int = 128) -> PackedLinearWeight:
    """Quantize a float weight ``[out, in]`` with monoquant's quantizers and
    pack it: int8 symmetric per channel, int4 symmetric per group, or a cast
    to float16 / bfloat16."""
    if format not in _FORMATS:
        raise InvalidArgumentError(f"unknown weight format {format!r}; expected one of {_FORMATS}")
    w = weight.detach()
    if w.dim() != 2:
        raise InvalidArgumentError(f"linear weight must be 2-D [out, in], got shape {tuple(w.shape)}")
    if format == "float16":
        return pack_half(w.to(torch.float16))
    if format == "bfloat16":
        return pack_half(w.to(torch.bfloat16))
    w = w.to(torch.float32)
    if format == "int8":
        q = _core.quantize(w, 8, "symmetric", "per_channel", 0, 0)
        return pack_int8(q["codes"], q["scales"])
    q = _core.quantize(w, 4, "symmetric", "per_group", 0, int(group_size))
    return pack_int4(q["codes"], w.shape[1], q["scales"], group_size)


# ---------------------------------------------------------------- custom ops

def _as_f32(x: Tensor) -> Tensor:
    x = x.detach()  # inference kernels; DLPack refuses tensors that require grad
    if x.dtype != torch.float32:
        x = x.to(torch.float32)
    return x if x.is_contiguous() else x.contiguous()


_IO_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}


def _as_io(x: Tensor, dtype: torch.dtype) -> Tensor:
    x = x.detach()
    if x.dtype != dtype:
        x = x.to(dtype)
    return x if x.is_contiguous() else x.contiguous()


def _packed_sizes(format: str, n: int, k: int, group_size: int) -> Tuple[int, int, int]:
    """Bytes of data, and element counts of scales and sums, of a packed weight."""
    chunk = 8 if format == "int4" else 4
    rows = (n + 7) // 8 * 8 * ((k + chunk - 1) // chunk * chunk)
    if format == "int8":
        if group_size > 0:  # activation groups: scales and column sums per group of K
            if group_size % 8 or k % group_size:
                raise InvalidArgumentError(f"grouped int8 needs a group_size that is a multiple of 8 and divides "
                                           f"K = {k}, got {group_size}")
            per = (n + 7) // 8 * 8 * (k // group_size)
            return rows, per, per + 1
        # sums: the column sums, then the largest |code| (which picks the narrow-code kernels)
        return rows, (n + 7) // 8 * 8, (n + 7) // 8 * 8 + 1
    if format == "int4":
        if group_size <= 0 or group_size % 8:
            raise InvalidArgumentError(f"int4 group_size must be a positive multiple of 8, got {group_size}")
        return rows // 2, (n + 7) // 8 * 8 * ((k + group_size - 1) // group_size), 0
    if format in ("float16", "bfloat16"):
        return rows * 2, 0, 0
    raise InvalidArgumentError(f"unknown weight format {format!r}; expected one of {_FORMATS}")


def _check_array(t: Tensor, dtype: torch.dtype, count: int, what: str) -> None:
    if t.dtype != dtype or t.numel() != count or t.device.type != "cpu" or not t.is_contiguous():
        raise InvalidArgumentError(f"packed weight {what} must be a contiguous CPU {dtype} tensor of {count} "
                                   f"elements, got {t.dtype} {tuple(t.shape)} on {t.device}")


def _linear_impl(x: Tensor, data: Tensor, scales: Tensor, sums: Tensor, bias: Optional[Tensor], format: str,
                 out_features: int, in_features: int, group_size: int, mode: str, act_scale: float,
                 act_zero_point: int) -> Tensor:
    n, k = int(out_features), int(in_features)
    if n <= 0 or k <= 0:
        raise InvalidArgumentError(f"out_features and in_features must be > 0, got {n} x {k}")
    if x.device.type != "cpu":
        raise InvalidArgumentError(f"monoquant kernels run on CPU tensors; x is on {x.device}")
    if x.dim() < 1 or x.shape[-1] != k:
        raise InvalidArgumentError(f"linear input of shape {tuple(x.shape)} does not end in in_features {k}")
    nbytes, nscales, nsums = _packed_sizes(format, n, k, group_size)
    _check_array(data, torch.uint8, nbytes, "data")
    _check_array(scales, torch.float32, nscales, "scales")
    _check_array(sums, torch.int32, nsums, "sums")
    # bfloat16 activations (a model whose float part runs in bf16) go to the kernels as they are.
    io_dtype = torch.bfloat16 if x.dtype == torch.bfloat16 else torch.float32
    xf = _as_io(x, io_dtype)
    b = None
    if bias is not None:
        b = _as_f32(bias)
        if b.numel() != n or b.device.type != "cpu":
            raise InvalidArgumentError(f"bias must be a CPU tensor of out_features = {n} elements")
    y = torch.empty((*x.shape[:-1], n), dtype=io_dtype)
    m = xf.numel() // k
    if m:
        _core.linear_raw(xf.data_ptr(), m, y.data_ptr(), data.data_ptr(), scales.data_ptr(), sums.data_ptr(),
                         0 if b is None else b.data_ptr(), format, n, k, int(group_size), mode, float(act_scale),
                         int(act_zero_point), _act_group(format, group_size), _IO_NAMES[io_dtype],
                         _IO_NAMES[io_dtype])
    return y if x.dtype == io_dtype else y.to(x.dtype)


def _linear_eager(x: Tensor, w: "PackedLinearWeight", bias: Optional[Tensor], mode: str, act_scale: float,
                  act_zero_point: int, act_smooth: Optional[Tensor] = None) -> Tensor:
    """The plain-eager path of ``linear``: same checks and result as
    ``_linear_impl``, with the packed arrays' checks cached on ``w``. On a
    384 x 384 layer the Python around the kernel is most of the call's time,
    so this uses the cheapest tensor queries (``is_cpu``, ``size(-1)``) and
    sends anything unusual to ``_linear_impl``.

    act_smooth: int8-activation modes only, float32 [K] contiguous: the
    result of ``_linear_impl(x * act_smooth.to(x.dtype), ...)``, with the
    multiply done as each row is quantized (no smoothed copy of x)."""
    k, n = w.in_features, w.out_features
    io = x.dtype
    if not ((io is torch.float32 or io is torch.bfloat16) and x.is_cpu and x.is_contiguous() and x.dim() >= 1 and x.size(-1) == k
            and (bias is None or (bias.dtype is torch.float32 and bias.is_cpu and bias.is_contiguous()
                                  and bias.numel() == n))
            and (act_smooth is None or (mode != "weight_only" and act_smooth.dtype is torch.float32
                                        and act_smooth.is_cpu and act_smooth.is_contiguous()
                                        and act_smooth.numel() == k))):
        if act_smooth is not None:
            x = x * act_smooth.to(x.dtype)
        return _linear_impl(x.detach(), w.data, w.scales, w.sums, bias, w.format, n, k, w.group_size, mode,
                            act_scale, act_zero_point)
    data, scales, sums = w._raw_arrays()
    m = x.numel() // k
    y = x.new_empty((m, n)) if x.dim() == 2 else x.new_empty((*x.shape[:-1], n))
    if m:
        name = "float32" if io is torch.float32 else "bfloat16"
        _core.linear_raw(x.data_ptr(), m, y.data_ptr(), data, scales, sums, 0 if bias is None else bias.data_ptr(),
                         w.format, n, k, w.group_size, mode, act_scale, act_zero_point,
                         _act_group(w.format, w.group_size), name, name,
                         0 if act_smooth is None else act_smooth.data_ptr())
    return y


_linear_op = torch.library.custom_op("monoquant::linear", mutates_args=())(_linear_impl)


@_linear_op.register_fake
def _linear_fake(x, data, scales, sums, bias, format, out_features, in_features, group_size, mode, act_scale,
                 act_zero_point):
    return x.new_empty((*x.shape[:-1], out_features))


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@torch.library.custom_op("monoquant::conv2d", mutates_args=())
def _conv2d_op(x: Tensor, data: Tensor, scales: Tensor, sums: Tensor, bias: Optional[Tensor], format: str,
               out_channels: int, in_features: int, group_size: int, mode: str, act_scale: float,
               act_zero_point: int, geometry: List[int]) -> Tensor:
    xf = _as_f32(x)
    b = None if bias is None else _as_f32(bias)
    kh, kw, sh, sw, ph, pw, dh, dw = (int(v) for v in geometry)
    y = _core.conv2d(xf, data, scales, sums, b, format, out_channels, in_features, group_size, mode,
                     float(act_scale), int(act_zero_point), kh, kw, sh, sw, ph, pw, dh, dw,
                     act_group_size=_act_group(format, group_size))
    return y if x.dtype == torch.float32 else y.to(x.dtype)


@_conv2d_op.register_fake
def _conv2d_fake(x, data, scales, sums, bias, format, out_channels, in_features, group_size, mode, act_scale,
                 act_zero_point, geometry):
    kh, kw, sh, sw, ph, pw, dh, dw = geometry
    return x.new_empty((x.shape[0], out_channels, _conv_out(x.shape[2], kh, sh, ph, dh),
                        _conv_out(x.shape[3], kw, sw, pw, dw)))


@torch.library.custom_op("monoquant::embedding", mutates_args=())
def _embedding_op(ids: Tensor, codes: Tensor, scales: Tensor, format: str, embedding_dim: int,
                  group_size: int) -> Tensor:
    flat = ids.reshape(-1)
    m, d = flat.numel(), int(embedding_dim)
    if m == 0:
        return torch.empty((*ids.shape, d), dtype=torch.float32)
    rows_codes = codes.index_select(0, flat)
    rows_scales = scales.index_select(0, flat)
    if format == "int8":
        rows = _core.dequantize(rows_codes, rows_scales.reshape(m), None, [m, d], 8, "symmetric", "per_channel", 0, 0)
    elif format == "int4":
        rows = _core.dequantize(rows_codes, rows_scales, None, [m, d], 4, "symmetric", "per_group", 0,
                                int(group_size))
    else:
        raise InvalidArgumentError(f"quantized embeddings are int8 or int4, not {format!r}")
    return rows.reshape(*ids.shape, d)


@_embedding_op.register_fake
def _embedding_fake(ids, codes, scales, format, embedding_dim, group_size):
    return ids.new_empty((*ids.shape, embedding_dim), dtype=torch.float32)


def embedding(ids: Tensor, codes: Tensor, scales: Tensor, format: str, embedding_dim: int,
              group_size: int = 0) -> Tensor:
    """Rows ``ids`` of a quantized table, dequantized (float32): int8 codes
    ``[V, D]`` with scales ``[V, 1]``, or int4 packed rows ``[V, ceil(D/2)]``
    with group scales ``[V, ceil(D/g)]``."""
    if ids.dtype not in (torch.int64, torch.int32):
        raise InvalidArgumentError(f"embedding indices must be int64 or int32, got {ids.dtype}")
    n = codes.shape[0]
    if ids.numel() and not torch.compiler.is_compiling() and _current_dispatch_mode() is None \
            and (int(ids.min()) < 0 or int(ids.max()) >= n):
        raise InvalidArgumentError(f"embedding index out of range [0, {n})")
    return torch.ops.monoquant.embedding(ids, codes, scales, format, int(embedding_dim), int(group_size))


# ---------------------------------------------------------------- public API

def _check_mode(w: PackedLinearWeight, mode: str) -> None:
    if mode not in _MODES:
        raise InvalidArgumentError(f"unknown mode {mode!r}; expected one of {_MODES}")
    if not isinstance(w, PackedLinearWeight):
        raise InvalidArgumentError(f"expected a PackedLinearWeight, got {type(w).__name__}")


def _eager(x: Tensor) -> bool:
    """True when a call can go straight to the C++ kernel: a plain CPU tensor,
    no autograd graph wanted, and nothing (torch.compile, export, jit.trace,
    FX, fake tensors, dispatch modes) that must see the custom op."""
    return (type(x) is Tensor and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
            and _current_dispatch_mode() is None and not (x.requires_grad and torch.is_grad_enabled()))


def linear(x: Tensor, w: PackedLinearWeight, bias: Optional[Tensor] = None, mode: str = "weight_only",
           act_scale: float = 0.0, act_zero_point: int = 0) -> Tensor:
    """``y = x @ W^T + bias`` with a packed weight; x is ``[..., in_features]``.
    Float32 contiguous x is used in place; other dtypes are computed in
    float32 and the result cast back. In plain eager calls the kernel is
    called directly (the custom op's dispatch costs ~20 us per call); under
    torch.compile / export / tracing the custom op is what runs."""
    _check_mode(w, mode)
    if _eager(x):
        return _linear_eager(x, w, bias, mode, float(act_scale), int(act_zero_point))
    return torch.ops.monoquant.linear(x, w.data, w.scales, w.sums, bias, w.format, w.out_features, w.in_features,
                                      w.group_size, mode, float(act_scale), int(act_zero_point))


def linear_dynamic_int8(x: Tensor, w: PackedLinearWeight, bias: Optional[Tensor] = None) -> Tensor:
    """W8A8 (int8 weights) or W4A8 (int4 weights): activations quantized per
    row to int8 on the fly, int32 accumulation, float output with bias."""
    return linear(x, w, bias, "dynamic")


def linear_static_int8(x: Tensor, w: PackedLinearWeight, act_scale: float, act_zero_point: int = 0,
                       bias: Optional[Tensor] = None) -> Tensor:
    """W8A8 with calibrated per-tensor activation scale and zero point."""
    return linear(x, w, bias, "static", act_scale, act_zero_point)


def linear_weight_only(x: Tensor, w: PackedLinearWeight, bias: Optional[Tensor] = None) -> Tensor:
    """Float activations; int8 / int4 / float16 / bfloat16 weights dequantized in registers."""
    return linear(x, w, bias, "weight_only")


def _pair(v: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(x: Tensor, w: PackedLinearWeight, bias: Optional[Tensor] = None, kernel_size=1, stride=1, padding=0,
           dilation=1, mode: str = "weight_only", act_scale: float = 0.0, act_zero_point: int = 0) -> Tensor:
    """Conv2d (groups=1) through the linear GEMM. ``w`` is the conv weight
    ``[out, in, kh, kw]`` reshaped to ``[out, in*kh*kw]`` and packed."""
    _check_mode(w, mode)
    kh, kw = _pair(kernel_size)
    geometry = [kh, kw, *_pair(stride), *_pair(padding), *_pair(dilation)]
    return torch.ops.monoquant.conv2d(x, w.data, w.scales, w.sums, bias, w.format, w.out_features, w.in_features,
                                      w.group_size, mode, float(act_scale), int(act_zero_point), geometry)


def kernel_name() -> str:
    """The kernel set in use: "scalar", "avx2", "avx2_vnni" or "avx512_vnni"."""
    return _core.linear_kernel_name()


def vnni_available() -> bool:
    return bool(_core.vnni_available())


def set_vnni_enabled(enabled: bool) -> None:
    """Allow (default) or forbid the VNNI integer kernels where the CPU has them."""
    _core.set_vnni_enabled(bool(enabled))


def avx512_vnni_available() -> bool:
    return bool(_core.avx512_vnni_available())


def set_avx512_enabled(enabled: bool) -> None:
    """Allow (default) or forbid the 512-bit kernels (W8A8 and weight-only)
    where the CPU has AVX-512 VNNI."""
    _core.set_avx512_enabled(bool(enabled))


__all__ = [
    "PackedLinearWeight", "pack_int8", "pack_int4", "pack_half", "pack_weight",
    "linear", "linear_dynamic_int8", "embedding", "linear_static_int8", "linear_weight_only", "conv2d",
    "kernel_name", "vnni_available", "set_vnni_enabled", "avx512_vnni_available", "set_avx512_enabled",
]
