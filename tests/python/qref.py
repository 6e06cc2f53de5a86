"""Independent reference computations for the monoquant tests.

Everything here is plain torch, written from the documented formulas in
include/monoquant/quantize.hpp and quant_spec.hpp, not from monoquant's
output:

    symmetric:  scale = absmax / qmax                        zero_point = 0
    asymmetric: lo = min(min, 0), hi = max(max, 0)
                scale = (hi - lo) / (qmax - qmin)
                zero_point = clamp(qmin - round(lo / scale), qmin, qmax)
    a zero range gets scale 1; scales never go below FLT_MIN.

    q  = clamp(round_half_even(x * float32(1 / scale)) + zero_point, qmin, qmax)
    x' = float32(q - zero_point) * scale

Cells ("one scale each"): per_tensor = the whole tensor; per_channel = one
index of `axis`; per_group = `group_size` consecutive elements along the last
dimension, the last group of a row holding whatever is left.
"""

from __future__ import annotations

import math

import torch

FLT_MIN = torch.finfo(torch.float32).tiny


def qrange(bits: int, scheme: str) -> tuple[int, int]:
    qmax = (1 << (bits - 1)) - 1
    qmin = -(1 << (bits - 1))
    if scheme == "symmetric":
        qmin += 1
    return qmin, qmax


def row_layout(shape) -> tuple[int, int]:
    k = shape[-1] if len(shape) else 1
    rows = math.prod(shape[:-1]) if len(shape) else 1
    return rows, k


def _cells(x: torch.Tensor, granularity: str, axis: int, group_size: int):
    """x viewed as [cells, elements]; zero padding is harmless for both
    absmax (>= 0) and the asymmetric range (which always contains 0)."""
    x = x.float()
    if granularity == "per_tensor":
        return x.reshape(1, -1), ()
    if granularity == "per_channel":
        a = axis % x.dim()
        c = x.shape[a]
        return x.movedim(a, 0).reshape(c, -1), (c,)
    rows, k = row_layout(x.shape)
    g = (k + group_size - 1) // group_size
    flat = x.reshape(rows, k)
    pad = g * group_size - k
    flat = torch.nn.functional.pad(flat, (0, pad))
    return flat.reshape(rows * g, group_size), (rows, g)


def ref_qparams(x: torch.Tensor, bits: int, scheme: str, granularity: str, axis: int = 0, group_size: int = 128):
    """(scale float32, zero_point int32 or None), shaped like monoquant's."""
    qmin, qmax = qrange(bits, scheme)
    cells, shape = _cells(x, granularity, axis, group_size)
    if cells.shape[1] == 0:
        mn = mx = torch.zeros(cells.shape[0], dtype=torch.float32)
    else:
        mn, mx = torch.aminmax(cells, dim=1)
    if scheme == "symmetric":
        amax = torch.maximum(mx.abs(), mn.abs())
        sc = amax.double() / qmax
    else:
        lo = torch.clamp(mn.double(), max=0.0)
        hi = torch.clamp(mx.double(), min=0.0)
        sc = (hi - lo) / (qmax - qmin)
    scale = torch.where(sc == 0, torch.ones_like(sc), sc).float()
    scale = torch.clamp(scale, min=FLT_MIN)
    zp = None
    if scheme == "asymmetric":
        zp = ref_zero_point(mn, scale, bits)
        zp = zp.reshape(shape)
    return scale.reshape(shape), zp


def ref_zero_point(mn: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    qmin, qmax = qrange(bits, "asymmetric")
    lo = torch.clamp(mn.double().reshape(-1), max=0.0)
    z = qmin - torch.round(lo / scale.double().reshape(-1))  # torch.round: half to even
    return torch.clamp(z, qmin, qmax).to(torch.int32)


def per_element(p: torch.Tensor, shape, granularity: str, axis: int = 0, group_size: int = 128) -> torch.Tensor:
    """Broadcast a scale / zero-point tensor to one value per element of `shape`."""
    shape = tuple(shape)
    if granularity == "per_tensor":
        return p.reshape(()).expand(shape)
    if granularity == "per_channel":
        a = axis % len(shape)
        view = [1] * len(shape)
        view[a] = shape[a]
        return p.reshape(view).expand(shape)
    rows, k = row_layout(shape)
    g = (k + group_size - 1) // group_size
    full = p.reshape(rows, g, 1).expand(rows, g, group_size).reshape(rows, g * group_size)[:, :k]
    return full.reshape(shape)


def ref_codes(x: torch.Tensor, scale: torch.Tensor, zp, bits: int, scheme: str, granularity: str,
              axis: int = 0, group_size: int = 128) -> torch.Tensor:
    """int8 codes with x's shape, computed in float32 exactly as documented."""
    qmin, qmax = qrange(bits, scheme)
    if granularity == "per_group" and zp is None:
        # the same arithmetic, broadcast over [rows * groups, group_size]
        # instead of materializing a per-element scale (faster on big tensors)
        cells, _ = _cells(x, granularity, axis, group_size)
        inv = 1.0 / scale.float().reshape(-1, 1)
        q = torch.clamp(torch.round(cells * inv), qmin, qmax).to(torch.int8)
        rows, k = row_layout(x.shape)
        return q.reshape(rows, -1)[:, :k].reshape(x.shape)
    s = per_element(scale.float(), x.shape, granularity, axis, group_size)
    inv = 1.0 / s  # float32 reciprocal, correctly rounded
    q = torch.round(x.float() * inv)  # one float32 rounding, then half-to-even
    if zp is not None:
        q = q + per_element(zp, x.shape, granularity, axis, group_size).float()
    return torch.clamp(q, qmin, qmax).to(torch.int8)


def ref_dequant(q: torch.Tensor, scale: torch.Tensor, zp, shape, granularity: str, axis: int = 0,
                group_size: int = 128) -> torch.Tensor:
    s = per_element(scale.float(), shape, granularity, axis, group_size)
    qi = q.to(torch.int32)
    if zp is not None:
        qi = qi - per_element(zp.to(torch.int32), shape, granularity, axis, group_size)
    return qi.float() * s


def ref_pack_int4(q: torch.Tensor) -> torch.Tensor:
    """uint8 [rows, ceil(K/2)]: first element in the low nibble, nibble = q + 8,
    the unused high nibble of an odd row is 0."""
    rows, k = row_layout(q.shape)
    nib = (q.reshape(rows, k).to(torch.int32) + 8)
    if k % 2:
        nib = torch.cat([nib, torch.zeros(rows, 1, dtype=torch.int32)], dim=1)
    packed = nib[:, 0::2] | (nib[:, 1::2] << 4)
    return packed.to(torch.uint8)


def ulp32(t: torch.Tensor) -> torch.Tensor:
    """Spacing of float32 at |t| (as float64)."""
    t = t.float().abs()
    return (torch.nextafter(t, torch.full_like(t, math.inf)) - t).double()


def assert_within_ulp(actual: torch.Tensor, expected: torch.Tensor, ulps: int = 1) -> None:
    assert actual.dtype == torch.float32
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual.double() - expected.double()).abs()
    tol = ulps * ulp32(expected)
    bad = diff > tol
    assert not bad.any(), f"{int(bad.sum())} values differ by more than {ulps} ulp: " \
                          f"{actual[bad][:5].tolist()} vs {expected[bad][:5].tolist()}"
