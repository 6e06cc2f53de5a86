"""Quantized drop-in modules over ``monoquant.ops``.

    qlinear = QuantLinear.from_float(linear, mode="dynamic", format="int8")
    y = qlinear(x)

Each module keeps its weight once, in the kernels' packed layout (buffers
that ``copy.deepcopy``, pickling, ``torch.compile`` and ``torch.export``
carry). Its ``state_dict`` holds the canonical codes in the
compressed-tensors names (``weight`` + ``weight_scale`` for W8A8,
``weight_packed`` + ``weight_scale`` + ``weight_shape`` for packed weights,
``input_scale`` for static activations), unpacked bit for bit by the C++
core, so what a module runs, what a file holds and what ``load_state_dict``
rebuilds are the same codes and scales.

``.to(dtype)`` / ``.half()`` / ``.double()`` leave the quantized weight as
it is: the kernels compute in float32 and return the input's dtype. Moving
to a non-CPU device raises ``UnsupportedError``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from . import _core, ops
from .errors import InvalidArgumentError, MonoquantError, UnsupportedError
from .schemes import LayerScheme
from .weights import (QuantizedWeight, from_compressed, pack, permute_columns, quantize_weight, scale_dtype_for,
                      to_compressed, unpack)


def half_weight_from_float_shape(w: Tensor, format: str, source_type: str, shape) -> QuantizedWeight:
    """A float16/bfloat16 weight as saved (the float module's shape) back to the canonical [N, K]."""
    target = torch.float16 if format == "float16" else torch.bfloat16
    w = w.detach()
    if source_type == "Conv1D":
        w = w.t()
    w = w.reshape(int(shape[0]), -1)
    if tuple(w.shape) != tuple(shape):
        raise InvalidArgumentError(f"weight of shape {tuple(w.shape)} does not fit [{shape[0]}, {shape[1]}]")
    return QuantizedWeight(format, tuple(shape), w.to(target).contiguous(), None)


def _scheme_of(mode: str, format: str, group_size: int, scheme: Optional[LayerScheme]) -> LayerScheme:
    if scheme is not None:
        return scheme
    if mode == "dynamic" and format not in ("int8", "int4"):
        raise InvalidArgumentError(f"mode 'dynamic' needs format int8 or int4, got {format!r}")
    if mode == "static" and format not in ("int8", "int4"):
        raise InvalidArgumentError(f"mode 'static' needs format int8 or int4, got {format!r}")
    return LayerScheme(format=format, mode=mode, group_size=group_size if format == "int4" else 0)


def _ct_strategy(s: LayerScheme) -> str:
    return "group" if s.group_size else "channel"


class QuantModule(nn.Module):
    """What every quantized module shares: the scheme, the packed weight, the
    canonical state dict, static activation parameters and dtype handling."""

    scheme: LayerScheme
    #: the float module type this one replaces ("Linear", "Conv1D", "Conv2d", ...)
    source_type: str = ""
    #: the dtype the model around this module was cast to (.to(torch.bfloat16)); None: not cast
    compute_dtype: Optional[torch.dtype] = None

    def _init_quant(self, qw: QuantizedWeight, scheme: LayerScheme, bias: Optional[Tensor], float_dtype: torch.dtype,
                    act_scale: float, act_zero_point: int) -> None:
        self.scheme = scheme
        self.float_dtype = float_dtype
        self.scale_dtype = scale_dtype_for(float_dtype)
        self.act_scale = float(act_scale)
        self.act_zero_point = int(act_zero_point)
        if scheme.mode == "static":
            if not (self.act_scale > 0 and self.act_scale < float("inf")):
                raise InvalidArgumentError(f"static mode needs a finite act_scale > 0 from calibration, got {act_scale}")
            # The activation scale is stored in the scale dtype too: use exactly what a reader will.
            self.act_scale = float(_core.round_scales_up(torch.tensor([self.act_scale]),
                                                         str(self.scale_dtype).removeprefix("torch."))[0])
        self._set_weight(qw)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).contiguous())
        # SmoothQuant factors 1 / s the input is multiplied by (smoothing.py); None: none. Saved by
        # compressed_tensors() as "input_smooth", which only monoquant's loader applies.
        self.register_buffer("input_smooth", None, persistent=False)

    # -- the weight ------------------------------------------------------------------

    def _set_weight(self, qw: QuantizedWeight) -> None:
        if qw.zero_points is not None and not isinstance(self, QuantLinear):
            raise UnsupportedError(f"{type(self).__name__}: asymmetric weights (weight_zero_point) run in linear "
                                   f"layers only")
        w = pack(qw)
        # Asymmetric weights: the kernels run the codes as symmetric, and forward subtracts
        # sum_g s[n, g] z[n, g] * (sum of x over group g), which (q - z) s adds up to. s * z in float32 [N, G].
        zp = qw.zero_points
        self.register_buffer("weight_zero_point", zp, persistent=False)
        # Held as [G, N] so that the subtraction is one addmm_ on contiguous operands.
        self.register_buffer("zero_point_term",
                             None if zp is None else (qw.scales * zp.to(torch.float32)).t().contiguous(),
                             persistent=False)
        self.register_buffer("packed_data", w.data, persistent=False)
        self.register_buffer("packed_scales", w.scales, persistent=False)
        self.register_buffer("packed_sums", w.sums, persistent=False)
        self.format = w.format
        self.group_size = w.group_size
        self._weight_shape = tuple(qw.shape)
        self.__dict__.pop("_packed_cache", None)

    @property
    def packed_weight(self) -> ops.PackedLinearWeight:
        n, k = self._weight_shape
        return ops.PackedLinearWeight(self.packed_data, self.packed_scales, self.packed_sums, self.format, n, k,
                                      self.group_size)

    def _cached_packed(self) -> ops.PackedLinearWeight:
        # Reuse one PackedLinearWeight (and its checked-array cache) while the
        # buffers are the same tensors; assigning new ones rebuilds it.
        # (_buffers directly: nn.Module.__getattr__ costs about 0.6 us a buffer, per call.)
        w = self.__dict__.get("_packed_cache")
        b = self._buffers
        if w is None or w.data is not b["packed_data"] or w.scales is not b["packed_scales"] \
                or w.sums is not b["packed_sums"]:
            w = self.packed_weight
            self.__dict__["_packed_cache"] = w
        return w

    def quantized_weight(self) -> QuantizedWeight:
        """The canonical codes and scales (unpacked from the kernels' layout, bit for bit)."""
        qw = unpack(self.packed_weight)
        qw.zero_points = self._buffers.get("weight_zero_point")
        return qw

    def dequantized_weight(self) -> Tensor:
        """The weight as float32, in the float module's own shape (with any smoothing factors applied: the
        float weight this module computes with)."""
        w = self.quantized_weight().dequantize()
        order = getattr(self, "input_order", None)
        if order is not None:  # back to the inputs' own order
            w = torch.empty_like(w).index_copy_(1, order, w)
        if self.input_smooth is not None:
            w = w * self.input_smooth.unsqueeze(0)
        return self._to_float_shape(w)

    def _to_float_shape(self, w2d: Tensor) -> Tensor:
        return w2d

    @property
    def weight(self) -> Tensor:
        """The dequantized weight in the float module's shape and dtype, computed on each access (models
        read ``layer.weight.dtype``, and some multiply by a tied ``embedding.weight``); ``forward`` never uses it."""
        return self.dequantized_weight().to(self.float_dtype)

    @property
    def weight_nbytes(self) -> int:
        """Bytes of the quantized weight as stored: codes plus scales in the file's scale dtype."""
        qw = self.quantized_weight()
        scales = 0 if qw.scales is None else qw.scales.numel() * self.scale_dtype.itemsize
        zeros = 0 if qw.zero_points is None else (qw.zero_points.numel() * qw.bits + 7) // 8  # packed as stored
        return qw.codes.numel() * qw.codes.element_size() + scales + zeros

    # -- state dict: compressed-tensors names ------------------------------------------

    def compressed_tensors(self, prefix: str = "") -> Dict[str, Tensor]:
        qw = self.quantized_weight()
        order = getattr(self, "input_order", None)
        if order is not None:  # an activation-ordered file's layer: its codes in the inputs' order, and g_idx
            qw = QuantizedWeight(qw.format, qw.shape, permute_columns(qw.codes, qw.bits, *qw.shape,
                                                                        torch.argsort(order)),
                                 qw.scales, qw.group_size, zero_points=qw.zero_points)
            g_idx = torch.empty(qw.shape[1], dtype=torch.int32)
            g_idx[order] = (torch.arange(qw.shape[1]) // qw.group_size).to(torch.int32)
            out = to_compressed(prefix, qw, self.scheme, self.float_dtype, self.act_scale, self.act_zero_point)
            out[(prefix + "." if prefix else "") + "weight_g_idx"] = g_idx
            if self.bias is not None:
                out[(prefix + "." if prefix else "") + "bias"] = self.bias.to(self.float_dtype)
            return out
        if qw.scales is None:
            # float16/bfloat16 weights are saved as the float module holds them (a conv's 4-D shape, a
            # transformers Conv1D's [in, out]), so that any reader loads them as a plain float checkpoint.
            return {(prefix + "." if prefix else "") + "weight": self._to_float_shape(qw.codes),
                    **({(prefix + "." if prefix else "") + "bias": self.bias.to(self.float_dtype)}
                       if self.bias is not None else {})}
        out = to_compressed(prefix, qw, self.scheme, self.float_dtype, self.act_scale, self.act_zero_point)
        if self.bias is not None:
            out[(prefix + "." if prefix else "") + "bias"] = self.bias.to(self.float_dtype)
        if self.input_smooth is not None:
            out[(prefix + "." if prefix else "") + "input_smooth"] = self.input_smooth
        return out

    def _state_keys(self) -> set:
        """The keys this module's state holds (load_state_dict's check), also for an activation-ordered
        weight, which has no state to save."""
        keys = set(self.compressed_tensors("").keys()) - {"input_smooth", "weight_g_idx"}
        return keys

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination.update(self.compressed_tensors(prefix[:-1] if prefix.endswith(".") else prefix))

    def _ct_args(self) -> dict:
        s = self.scheme
        return {"num_bits": s.bits, "symmetric": s.weight_symmetric, "type": "int",
                "strategy": _ct_strategy(s), "group_size": s.group_size or None}

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        mine = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)
                and "." not in k[len(prefix):]}
        expected = self._state_keys()
        for key in sorted(expected - set(mine)):
            missing_keys.append(prefix + key)
        if strict:
            unexpected_keys.extend(prefix + k for k in sorted(set(mine) - expected - {"input_smooth"}))
        if expected - set(mine):
            return
        try:
            if self.scheme.is_half:
                qw = half_weight_from_float_shape(mine["weight"], self.scheme.format, self.source_type,
                                                  self._weight_shape)
            else:
                qw = from_compressed(mine, "", self._ct_args(), name=prefix[:-1] or type(self).__name__)
            if tuple(qw.shape) != tuple(self._weight_shape):
                raise InvalidArgumentError(f"{prefix}weight has shape {tuple(qw.shape)}, this module "
                                           f"{tuple(self._weight_shape)}")
            if qw.group_size != self.group_size:
                raise InvalidArgumentError(f"{prefix}weight has group size {qw.group_size}, this module "
                                           f"{self.group_size}")
            self._set_weight(qw)
            if isinstance(self, QuantLinear):
                self.input_order = qw.input_order
            if "input_scale" in mine:
                self.act_scale = float(mine["input_scale"].float().reshape(-1)[0])
            if "input_zero_point" in mine:
                self.act_zero_point = int(mine["input_zero_point"].reshape(-1)[0])
            if "bias" in mine:
                self.bias = mine["bias"].detach().to(torch.float32).contiguous().clone()
            self.input_smooth = (mine["input_smooth"].detach().to(torch.float32).contiguous().clone()
                                 if "input_smooth" in mine else None)
        except MonoquantError as e:
            error_msgs.append(str(e))

    # -- dtype and device ----------------------------------------------------------------

    def _apply(self, fn, recurse=True):
        probe = fn(torch.zeros(1))
        if probe.device.type != "cpu":
            raise UnsupportedError(f"{type(self).__name__} runs on monoquant's CPU kernels and cannot move to "
                                   f"{probe.device}; dequantize the model (monoquant.dequantize) to run it there")
        # A dtype change (.half(), .to(torch.bfloat16)) leaves the quantized
        # weight as it is: the kernels compute in float32 and return the input's dtype,
        # and an embedding then returns the new dtype (compute_dtype), as the model around it expects.
        half, brain = fn(torch.zeros(1, dtype=torch.float16)).dtype, fn(torch.zeros(1, dtype=torch.bfloat16)).dtype
        if half != torch.float16:
            self.compute_dtype = half
        elif brain != torch.bfloat16:
            self.compute_dtype = brain
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_packed_cache", None)
        return state

    def _extra(self) -> str:
        s = f"scheme={self.scheme.label}"
        if self._buffers.get("weight_zero_point") is not None:
            s += ", asymmetric weights"
        if self.scheme.mode == "static":
            s += f", act_scale={self.act_scale:.6g}" + (f", act_zero_point={self.act_zero_point}"
                                                         if self.act_zero_point else "")
        return s


class QuantLinear(QuantModule):
    """Linear layer (or transformers' Conv1D) with a packed quantized weight."""

    source_type = "Linear"

    def __init__(self, qw: QuantizedWeight, scheme: LayerScheme, bias: Optional[Tensor] = None,
                 float_dtype: torch.dtype = torch.float32, act_scale: float = 0.0, act_zero_point: int = 0,
                 source_type: str = "Linear"):
        super().__init__()
        self.out_features, self.in_features = qw.shape
        self.source_type = source_type
        self._init_quant(qw, scheme, bias, float_dtype, act_scale, act_zero_point)
        # An activation-ordered file's weight (weight_g_idx): its columns are the inputs in this order.
        self.register_buffer("input_order", qw.input_order, persistent=False)

    @classmethod
    def from_float(cls, linear: nn.Module, mode: str = "dynamic", format: str = "int8", group_size: int = 128,
                   act_scale: Optional[float] = None, act_zero_point: int = 0, *,
                   scheme: Optional[LayerScheme] = None, name: str = "") -> "QuantLinear":
        """mode: "dynamic" (W8A8 / W4A8), "weight_only" or "static" (needs
        ``act_scale`` and ``act_zero_point`` from calibration). ``linear`` is an
        nn.Linear or a transformers Conv1D (weight [in, out])."""
        sch = _scheme_of(mode, format, group_size, scheme)
        if sch.mode == "static" and act_scale is None:
            raise InvalidArgumentError("mode 'static' needs act_scale (and act_zero_point) from calibration")
        source = type(linear).__name__
        weight = linear.weight.detach()
        if source == "Conv1D":  # transformers' GPT-2 layer: y = x @ W + b with W [in, out]
            weight = weight.t()
        qw = quantize_weight(weight, sch, scale_dtype_for(linear.weight.dtype), name or "weight")
        return cls(qw, sch, linear.bias, linear.weight.dtype, act_scale or 0.0, act_zero_point,
                   "Conv1D" if source == "Conv1D" else "Linear")

    @classmethod
    def from_quantized(cls, linear: nn.Module, qw: QuantizedWeight, scheme: LayerScheme,
                       act_scale: Optional[float] = None, act_zero_point: int = 0) -> "QuantLinear":
        """A QuantLinear for ``linear`` with codes and scales computed elsewhere (GPTQ), in the canonical
        form of weights.py, scales already rounded to the weight's scale dtype."""
        if scheme.mode == "static" and act_scale is None:
            raise InvalidArgumentError("mode 'static' needs act_scale (and act_zero_point) from calibration")
        source = type(linear).__name__
        return cls(qw, scheme, linear.bias, linear.weight.dtype, act_scale or 0.0, act_zero_point,
                   "Conv1D" if source == "Conv1D" else "Linear")

    def _to_float_shape(self, w2d: Tensor) -> Tensor:
        return w2d.t().contiguous() if self.source_type == "Conv1D" else w2d

    def forward(self, x: Tensor) -> Tensor:
        s = self.scheme
        # Buffers read from _buffers: the per-call Python around a small layer is most of its time.
        b = self._buffers
        smooth, order, bias = b.get("input_smooth"), b.get("input_order"), b.get("bias")
        eager = ops._eager(x)
        # With int8 activations on the eager path the kernel multiplies the SmoothQuant factors in as it
        # quantizes each row (the same bits as x * smooth, without a smoothed copy of x).
        fused_smooth = smooth is not None and eager and order is None and s.mode != "weight_only"
        if smooth is not None and not fused_smooth:
            x = x * smooth.to(x.dtype)
        if order is not None:
            x = x.index_select(-1, order)
        if eager:
            y = ops._linear_eager(x, self._cached_packed(), bias, s.mode, self.act_scale, self.act_zero_point,
                                  smooth if fused_smooth else None)
        else:
            y = ops.linear(x, self.packed_weight, bias, s.mode, self.act_scale, self.act_zero_point)
        term = b.get("zero_point_term")
        return y if term is None else self._subtract_zero_points(x, y, term)

    def _subtract_zero_points(self, x: Tensor, y: Tensor, term: Tensor) -> Tensor:
        """y - (per-group sums of x) @ (s * z)^T: the zero points' share of x @ ((q - z) s)^T."""
        k, groups = self.in_features, term.shape[0]
        width = self.group_size if self.format == "int4" else k
        xs = x.reshape(-1, k)
        if xs.dtype != torch.float32:
            xs = xs.to(torch.float32)
        if groups * width != k:  # a ragged last group (or one group wider than the row): zeros add nothing
            xs = torch.nn.functional.pad(xs, (0, groups * width - k))
        sums = xs.reshape(-1, groups, width).sum(-1)
        if y.dtype == torch.float32 and y.is_contiguous():  # the kernel's fresh output: subtract in place
            y.reshape(-1, self.out_features).addmm_(sums, term, alpha=-1)
            return y
        out = torch.addmm(y.reshape(-1, self.out_features).to(torch.float32), sums, term, alpha=-1)
        return out.to(y.dtype).reshape(y.shape)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self._extra()}"


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class QuantConv2d(QuantModule):
    """Conv2d (groups=1, numeric padding, zeros padding mode) through the
    quantized GEMM (im2col). The weight is ``[O, C*kh*kw]``."""

    source_type = "Conv2d"

    def __init__(self, qw: QuantizedWeight, scheme: LayerScheme, bias: Optional[Tensor], in_channels: int,
                 kernel_size, stride=1, padding=0, dilation=1, float_dtype: torch.dtype = torch.float32,
                 act_scale: float = 0.0, act_zero_point: int = 0):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = qw.shape[0]
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        if self.in_channels * self.kernel_size[0] * self.kernel_size[1] != qw.shape[1]:
            raise InvalidArgumentError(f"conv weight [{qw.shape[0]}, {qw.shape[1]}] does not fit in_channels "
                                       f"{in_channels} x kernel {self.kernel_size}")
        self._init_quant(qw, scheme, bias, float_dtype, act_scale, act_zero_point)

    @staticmethod
    def unsupported_reason(conv: nn.Module) -> Optional[str]:
        if conv.groups != 1:
            return f"groups={conv.groups} (only groups=1 runs on the GEMM)"
        if isinstance(conv.padding, str):
            return f"padding={conv.padding!r} (numeric padding only)"
        if conv.padding_mode != "zeros":
            return f"padding_mode={conv.padding_mode!r} (zeros only)"
        return None

    @classmethod
    def from_float(cls, conv: nn.Module, mode: str = "dynamic", format: str = "int8", group_size: int = 128,
                   act_scale: Optional[float] = None, act_zero_point: int = 0, *,
                   scheme: Optional[LayerScheme] = None, name: str = "") -> "QuantConv2d":
        """An nn.Conv2d (QuantConv2d) or nn.Conv1d (QuantConv1d, as a conv of height 1)."""
        reason = cls.unsupported_reason(conv)
        if reason:
            raise InvalidArgumentError(f"{cls.__name__} cannot take this conv: {reason}")
        sch = _scheme_of(mode, format, group_size, scheme)
        if sch.mode == "static" and act_scale is None:
            raise InvalidArgumentError("mode 'static' needs act_scale (and act_zero_point) from calibration")
        weight = conv.weight.detach().reshape(conv.out_channels, -1)
        qw = quantize_weight(weight, sch, scale_dtype_for(conv.weight.dtype), name or "weight")
        return cls(qw, sch, conv.bias, conv.in_channels, *cls._geometry(conv), conv.weight.dtype, act_scale or 0.0,
                   act_zero_point)

    @staticmethod
    def _geometry(conv: nn.Module):
        return conv.kernel_size, conv.stride, conv.padding, conv.dilation

    def _to_float_shape(self, w2d: Tensor) -> Tensor:
        return w2d.reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return ops.conv2d(x, self.packed_weight, self.bias, self.kernel_size, self.stride, self.padding,
                          self.dilation, self.scheme.mode, self.act_scale, self.act_zero_point)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, {self._extra()}")


class QuantConv1d(QuantConv2d):
    """Conv1d (groups=1) as a Conv2d of height 1."""

    source_type = "Conv1d"

    @staticmethod
    def _geometry(conv: nn.Module):
        return (1, conv.kernel_size[0]), (1, conv.stride[0]), (0, conv.padding[0]), (1, conv.dilation[0])

    def _to_float_shape(self, w2d: Tensor) -> Tensor:
        return w2d.reshape(self.out_channels, self.in_channels, self.kernel_size[1])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # unbatched [C, L]
            return self.forward(x.unsqueeze(0)).squeeze(0)
        return super().forward(x.unsqueeze(2)).squeeze(2)


class QuantEmbedding(QuantModule):
    """nn.Embedding with int8 (one scale per row) or int4 (groups along the
    embedding dimension) weights: looked-up rows are dequantized by the C++ core."""

    source_type = "Embedding"

    def __init__(self, qw: QuantizedWeight, scheme: LayerScheme, padding_idx: Optional[int] = None,
                 float_dtype: torch.dtype = torch.float32):
        super().__init__()
        if scheme.mode != "weight_only" or scheme.format not in ("int8", "int4"):
            raise InvalidArgumentError(f"embeddings are quantized weight-only to int8 or int4, not {scheme.label}")
        self.num_embeddings, self.embedding_dim = qw.shape
        self.padding_idx = padding_idx
        self._init_quant(qw, scheme, None, float_dtype, 0.0, 0)

    @staticmethod
    def unsupported_reason(emb: nn.Embedding) -> Optional[str]:
        if emb.max_norm is not None:
            return "max_norm renormalizes rows at lookup"
        if emb.sparse:
            return "sparse gradients"
        return None

    @classmethod
    def from_float(cls, emb: nn.Embedding, format: str = "int8", group_size: int = 128, *,
                   scheme: Optional[LayerScheme] = None, name: str = "") -> "QuantEmbedding":
        reason = cls.unsupported_reason(emb)
        if reason:
            raise InvalidArgumentError(f"QuantEmbedding cannot take this embedding: {reason}")
        sch = scheme or LayerScheme(format=format, mode="weight_only", group_size=group_size if format == "int4" else 0)
        qw = quantize_weight(emb.weight.detach(), sch, scale_dtype_for(emb.weight.dtype), name or "weight")
        return cls(qw, sch, emb.padding_idx, emb.weight.dtype)

    def _set_weight(self, qw: QuantizedWeight) -> None:
        # Rows are looked up, not multiplied: keep the canonical codes and scales.
        self.register_buffer("codes", qw.codes, persistent=False)
        self.register_buffer("scales", qw.scales, persistent=False)
        self.format = qw.format
        self.group_size = qw.group_size
        self._weight_shape = tuple(qw.shape)

    def quantized_weight(self) -> QuantizedWeight:
        return QuantizedWeight(self.format, self._weight_shape, self.codes, self.scales, self.group_size)

    def forward(self, ids: Tensor) -> Tensor:
        out = ops.embedding(ids, self.codes, self.scales, self.format, self.embedding_dim, self.group_size)
        dtype = self.compute_dtype or self.float_dtype
        return out if dtype == torch.float32 else out.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self._extra()}"


__all__ = ["QuantModule", "QuantLinear", "QuantConv1d", "QuantConv2d", "QuantEmbedding"]
