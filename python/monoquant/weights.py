"""A layer's quantized weight in its one canonical form, and the moves between
that form, the kernels' packed layout and the compressed-tensors tensors.

    qw = quantize_weight(w, scheme, scale_dtype)   # C++: scales, rounded up to scale_dtype, codes
    packed = pack(qw)                              # the kernels' layout (once per layer)
    unpack(packed) == qw                           # bit for bit (C++ unpack_linear)
    to_compressed("layer", qw, scheme, ...)        # the tensors a file holds
    from_compressed(tensors, "layer", args)        # and back

Canonical form (``QuantizedWeight``), for a weight seen as ``[N, K]``:
    int8      codes int8 [N, K], scales float32 [N, 1]
    int4      codes uint8 [N, ceil(K/2)] (low nibble first, nibble = q + 8), scales float32 [N, ceil(K/g)]
    f16/bf16  codes float16/bfloat16 [N, K], no scales
Asymmetric weights (weight-only: ``scheme="asymmetric"``, or ``weight_zero_point`` in a file) add
    zero_points int32 [N, ceil(K/g)] (int8: [N, 1]), dequantized as (q - z) * s.
Scales are float32 values that the file's scale dtype holds exactly (they
were rounded up to it before the codes were computed), so a file written in
float16 reloads to the very same codes and scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from . import _core, ops
from .errors import FormatError, InvalidArgumentError, UnsupportedError
from .schemes import LayerScheme

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def scale_dtype_for(weight_dtype: torch.dtype) -> torch.dtype:
    """Scales are stored in the weight's dtype when it is fp16/bf16, else fp32 (compressed-tensors' rule)."""
    return weight_dtype if weight_dtype in (torch.float16, torch.bfloat16) else torch.float32


@dataclass
class QuantizedWeight:
    format: str
    shape: Tuple[int, int]       # [N, K]
    codes: Tensor
    scales: Optional[Tensor]     # float32, None for half formats
    group_size: int = 0          # int4 only
    #: activation-ordered files (``weight_g_idx``): the columns of ``codes`` are the input columns
    #: ``input_order`` (groups made contiguous for the kernels); inputs are gathered by it. None: in order.
    input_order: Optional[Tensor] = None
    #: int32, one per scale: asymmetric weights (``scheme="asymmetric"``, or ``weight_zero_point`` in a file);
    #: None: symmetric
    zero_points: Optional[Tensor] = None

    def equal(self, other: "QuantizedWeight") -> bool:
        """Bit-identical codes and scales."""
        return (self.format == other.format and tuple(self.shape) == tuple(other.shape)
                and self.group_size == other.group_size and self.codes.dtype == other.codes.dtype
                and torch.equal(self.codes, other.codes)
                and ((self.zero_points is None and other.zero_points is None)
                     or (self.zero_points is not None and other.zero_points is not None
                         and torch.equal(self.zero_points, other.zero_points)))
                and ((self.scales is None and other.scales is None)
                     or (self.scales is not None and other.scales is not None
                         and torch.equal(self.scales.view(torch.int32), other.scales.view(torch.int32)))))

    @property
    def bits(self) -> int:
        return {"int8": 8, "int4": 4}.get(self.format, 16)

    def dequantize(self) -> Tensor:
        """float32 [N, K] with monoquant's dequantize (columns in ``codes``' order)."""
        n, k = self.shape
        if self.format in ("float16", "bfloat16"):
            return _core.half_to_float(self.codes)
        if self.format == "int8" and self.group_size:
            return _core.dequantize(self.codes, self.scales.contiguous(), None, [n, k], 8, "symmetric", "per_group",
                                    0, self.group_size)
        zp = None if self.zero_points is None else self.zero_points.to(torch.int32).contiguous()
        scheme = "symmetric" if zp is None else "asymmetric"
        if self.format == "int8":
            return _core.dequantize(self.codes, self.scales.reshape(n).contiguous(),
                                    None if zp is None else zp.reshape(n).contiguous(), [n, k], 8, scheme,
                                    "per_channel", 0, 0)
        return _core.dequantize(self.codes, self.scales.contiguous(), zp, [n, k], 4, scheme, "per_group", 0,
                                self.group_size)


def quantize_weight(weight: Tensor, scheme: LayerScheme, scale_dtype: torch.dtype = torch.float32,
                    name: str = "weight") -> QuantizedWeight:
    """Quantize a float ``[N, K]`` weight with the C++ core (NaN/Inf raise, naming ``name``)."""
    w = weight.detach()
    if w.dim() != 2:
        raise InvalidArgumentError(f"{name}: weight must be 2-D [out, in], got shape {tuple(w.shape)}")
    n, k = (int(v) for v in w.shape)
    if n == 0 or k == 0:
        raise InvalidArgumentError(f"{name}: weight is empty, shape {tuple(w.shape)}")
    if w.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        w = w.to(torch.float32)
    try:
        if scheme.is_half:
            target = torch.float16 if scheme.format == "float16" else torch.bfloat16
            return QuantizedWeight(scheme.format, (n, k), _core.cast_to_half(w, _DTYPE_NAMES[target], "error"), None)
        if scheme.format == "int8" and scheme.group_size:  # W8A8 with activation groups
            q = _core.quantize_weight(w, scheme.bits, "symmetric", "per_group", 0, scheme.group_size, scheme.scale_method,
                                      _DTYPE_NAMES[scale_dtype])
            return QuantizedWeight("int8", (n, k), q["codes"], q["scales"].reshape(n, -1), scheme.group_size)
        sym = "symmetric" if scheme.weight_symmetric else "asymmetric"
        if scheme.format == "int8":
            q = _core.quantize_weight(w, scheme.bits, sym, "per_channel", 0, 0, scheme.scale_method,
                                      _DTYPE_NAMES[scale_dtype])
            zp = None if scheme.weight_symmetric else q["zero_points"].reshape(n, 1)
            return QuantizedWeight("int8", (n, k), q["codes"], q["scales"].reshape(n, 1), 0, zero_points=zp)
        q = _core.quantize_weight(w, 4, sym, "per_group", 0, scheme.group_size, scheme.scale_method,
                                  _DTYPE_NAMES[scale_dtype], scheme.full_range and scheme.weight_symmetric)
        return QuantizedWeight("int4", (n, k), q["codes"].view(torch.uint8), q["scales"], scheme.group_size,
                               zero_points=None if scheme.weight_symmetric else q["zero_points"])
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{name}: {e}") from None


def pack(qw: QuantizedWeight) -> ops.PackedLinearWeight:
    if qw.format == "int8" and qw.group_size:
        return ops.pack_int8_grouped(qw.codes, qw.scales, qw.group_size)
    if qw.format == "int8":
        return ops.pack_int8(qw.codes, qw.scales)
    if qw.format == "int4":
        return ops.pack_int4(qw.codes, qw.shape[1], qw.scales, qw.group_size)
    return ops.pack_half(qw.codes)


def unpack(w: ops.PackedLinearWeight) -> QuantizedWeight:
    u = _core.unpack_linear(w.data, w.scales, w.sums, w.format, w.out_features, w.in_features, w.group_size)
    scales = u["scales"] if w.format in ("int8", "int4") else None
    return QuantizedWeight(w.format, (w.out_features, w.in_features), u["codes"], scales, w.group_size)


# ---------------------------------------------------------------- compressed-tensors layout

def to_compressed(prefix: str, qw: QuantizedWeight, scheme: LayerScheme, weight_dtype: torch.dtype,
                  act_scale: float = 0.0, act_zero_point: int = 0) -> Dict[str, Tensor]:
    """The tensors of one module in the compressed-tensors conventions (docs/FORMAT.md), made by the
    checkpoint pipeline's C++ layout code (what `monoquant quantize` writes). Half formats: ``weight``."""
    if qw.format in ("float16", "bfloat16"):
        return {(prefix + "." if prefix else "") + "weight": qw.codes}
    n, k = qw.shape
    if scheme.weight_symmetric != (qw.zero_points is None):
        raise InvalidArgumentError(f"{prefix or 'weight'}: the scheme {scheme.label} and the weight "
                                   f"({'with' if qw.zero_points is not None else 'without'} zero points) disagree")
    zp = None if qw.zero_points is None else qw.zero_points.to(torch.int32).reshape(n, -1).contiguous()
    return dict(_core.compressed_tensors(prefix, scheme.to_dict(), qw.codes, qw.scales, n, k,
                                         _DTYPE_NAMES.get(weight_dtype, "float32"), float(act_scale),
                                         int(act_zero_point), zp))


def _int_of(t: Tensor, what: str) -> Tuple[int, ...]:
    if t.dtype not in (torch.int64, torch.int32) or t.numel() != 2:
        raise FormatError(f"{what} must hold 2 integers, got {t.dtype} {tuple(t.shape)}")
    return tuple(int(v) for v in t.tolist())


def from_compressed(tensors: Dict[str, Tensor], prefix: str, args: Dict, name: str = "") -> QuantizedWeight:
    """Rebuild the canonical weight of module ``prefix`` from compressed-tensors tensors.

    args: the module's weight QuantizationArgs (num_bits, symmetric, strategy,
    group_size) plus ``format`` (int-quantized / naive-quantized / pack-quantized).
    """
    p = prefix + "." if prefix else ""
    what = name or prefix
    bits = int(args.get("num_bits", 8))
    if bits not in (4, 7, 8):
        raise UnsupportedError(f"{what}: {bits}-bit weights; monoquant's kernels run 4-, 7- and 8-bit int weights")
    if bits == 7 and p + "weight_packed" in tensors:
        raise UnsupportedError(f"{what}: 7-bit weights packed into int32 words; monoquant reads 7-bit weights as "
                               f"int8 tensors (int-quantized)")
    if args.get("type", "int") != "int":
        raise UnsupportedError(f"{what}: {args.get('type')} weights are not supported (int only)")
    asymmetric = not args.get("symmetric", True)
    if asymmetric and p + "weight_packed" not in tensors:
        raise UnsupportedError(f"{what}: asymmetric int-quantized weights (with weight_zero_point and int8 "
                               f"activations) do not run on monoquant's kernels; asymmetric weights run weight-only "
                               f"(pack-quantized); monoquant.io.load_quantized dequantizes them")
    scale_t = tensors.get(p + "weight_scale")
    if scale_t is None:
        raise FormatError(f"{what}: no {p}weight_scale")
    if p + "weight_packed" in tensors:
        if p + "weight_shape" not in tensors:
            raise FormatError(f"{what}: weight_packed without weight_shape")
        n, k = _int_of(tensors[p + "weight_shape"], f"{p}weight_shape")
        words = tensors[p + "weight_packed"]
        per_word = 32 // bits
        if words.dtype != torch.int32 or words.dim() != 2 or tuple(words.shape) != (n, (k + per_word - 1) // per_word):
            raise FormatError(f"{what}: weight_packed {words.dtype} {tuple(words.shape)} does not fit weight_shape "
                              f"[{n}, {k}]")
        rows = words.contiguous().view(torch.uint8).reshape(n, -1)
        if bits == 4:
            codes = rows[:, : (k + 1) // 2].contiguous()
            if k % 2:  # the padding nibble is 0 in our layout
                codes[:, -1] &= 0x0F
        else:
            codes = (rows[:, :k].to(torch.int16) - 128).to(torch.int8)
    else:
        w = tensors.get(p + "weight")
        if w is None or w.dtype != torch.int8 or w.dim() != 2:
            raise FormatError(f"{what}: expected int8 {p}weight [N, K]")
        n, k = (int(v) for v in w.shape)
        codes = w.contiguous()
        if bits == 7 and codes.numel() and (int(codes.min()) < -64 or int(codes.max()) > 63):
            raise FormatError(f"{what}: 7-bit codes out of [-64, 63]")
        if bits == 4:
            if int(codes.min()) < -8 or int(codes.max()) > 7:
                raise FormatError(f"{what}: 4-bit codes out of [-8, 7]")
            u = (codes.to(torch.int16) + 8).to(torch.uint8)
            if k % 2:  # odd K: the last high nibble is padding, 0
                u = torch.cat([u, u.new_zeros(n, 1)], dim=1)
            codes = (u[:, 0::2] | (u[:, 1::2] << 4)).contiguous()
    scales = scale_t.to(torch.float32)
    strategy = args.get("strategy") or ("group" if args.get("group_size") else "channel")
    if strategy == "tensor":
        scales = scales.reshape(1, 1).expand(n, 1).contiguous()
        strategy = "channel"
    if strategy == "channel":
        if scales.numel() != n:
            raise FormatError(f"{what}: weight_scale {tuple(scale_t.shape)} is not one per output channel ({n})")
        scales = scales.reshape(n, 1).contiguous()
        zeros = _zero_points(tensors, p, bits, n, 1, what) if asymmetric else None
        if bits != 4:
            return QuantizedWeight("int8", (n, k), codes, scales, 0, zero_points=zeros)
        return QuantizedWeight("int4", (n, k), codes, scales, (k + 7) // 8 * 8,  # one group spans the row
                               zero_points=zeros)
    if strategy != "group":
        raise UnsupportedError(f"{what}: weight strategy {strategy!r} is not supported (channel, group, tensor)")
    g = int(args.get("group_size") or 0)
    if g <= 0 or g % 8:
        raise UnsupportedError(f"{what}: {bits}-bit group_size {g} is not a positive multiple of 8")
    if bits != 4 and k % g:
        raise UnsupportedError(f"{what}: group-wise 8-bit weights need K ({k}) to be a multiple of group_size {g}")
    groups = (k + g - 1) // g
    if scales.numel() != n * groups:
        raise FormatError(f"{what}: weight_scale {tuple(scale_t.shape)} does not fit [{n}, {groups}] groups of {g}")
    if asymmetric and bits != 4:
        raise UnsupportedError(f"{what}: asymmetric 8-bit weights in groups; monoquant runs asymmetric 8-bit "
                               f"weights per channel (monoquant.io.load_quantized dequantizes them)")
    zeros = _zero_points(tensors, p, bits, n, groups, what) if asymmetric else None
    order = None
    if p + "weight_g_idx" in tensors:
        order = _group_order(tensors[p + "weight_g_idx"], k, g, groups, what)
        codes = permute_columns(codes, bits, n, k, order)
    return QuantizedWeight("int4" if bits == 4 else "int8", (n, k), codes, scales.reshape(n, groups).contiguous(), g,
                           order, zeros)


def _zero_points(tensors: Dict[str, Tensor], p: str, bits: int, n: int, groups: int, what: str) -> Tensor:
    """compressed-tensors' packed zero points (``pack_to_int32(zp, bits, packed_dim=0)``: 32 / bits values of
    consecutive output rows per int32 word, row i of a word in bits [bits*i, bits*i + bits), each + 2^(bits-1))
    as int32 [n, groups]."""
    t = tensors.get(p + "weight_zero_point")
    if t is None:
        raise FormatError(f"{what}: asymmetric weights without {p}weight_zero_point")
    per = 32 // bits
    words = (n + per - 1) // per
    if t.dtype != torch.int32 or t.dim() != 2 or tuple(t.shape) != (words, groups):
        raise FormatError(f"{what}: weight_zero_point {t.dtype} {tuple(t.shape)} is not the packed int32 "
                          f"[{words}, {groups}] of {n} rows x {groups} scales")
    w = t.to(torch.int64) & 0xFFFFFFFF
    mask, offset = (1 << bits) - 1, 1 << (bits - 1)
    z = torch.stack([((w >> (bits * i)) & mask) - offset for i in range(per)], dim=1).reshape(words * per, groups)
    return z[:n].to(torch.int32).contiguous()


def _group_order(g_idx: Tensor, k: int, g: int, groups: int, what: str) -> Tensor:
    """The column order that makes an activation-ordered weight's groups contiguous (``weight_g_idx[j]`` is
    the group of input column j; compressed-tensors' actorder="group" gives every group g columns)."""
    if g_idx.dtype not in (torch.int32, torch.int64) or g_idx.numel() != k:
        raise FormatError(f"{what}: weight_g_idx must hold {k} integers, got {g_idx.dtype} {tuple(g_idx.shape)}")
    gi = g_idx.reshape(-1).to(torch.int64)
    if k and (int(gi.min()) < 0 or int(gi.max()) >= groups):
        raise FormatError(f"{what}: weight_g_idx names groups outside [0, {groups})")
    counts = torch.bincount(gi, minlength=groups)
    want = torch.full((groups,), g, dtype=torch.int64)
    want[-1] = k - g * (groups - 1)
    if not torch.equal(counts, want):
        raise UnsupportedError(f"{what}: weight_g_idx gives groups of unequal sizes; monoquant's kernels run "
                               f"groups of {g} columns (dequantize the file with monoquant.io.load_quantized)")
    return torch.argsort(gi, stable=True)


def permute_columns(codes: Tensor, bits: int, n: int, k: int, order: Tensor) -> Tensor:
    if bits == 8:
        return codes[:, order].contiguous()
    u = torch.stack([codes & 0x0F, codes >> 4], dim=-1).reshape(n, -1)[:, :k][:, order]
    if k % 2:
        u = torch.cat([u, u.new_full((n, 1), 8)], dim=1)  # padding nibble: code 0
    return (u[:, 0::2] | (u[:, 1::2] << 4)).contiguous()


__all__ = ["QuantizedWeight", "quantize_weight", "pack", "unpack", "to_compressed", "from_compressed", "permute_columns",
           "scale_dtype_for"]
