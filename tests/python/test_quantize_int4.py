"""int4: codes, packing, scales and dequantization against an independent
torch computation (see qref.py for the formulas).

monoquant multiplies by the float32 reciprocal of the scale and rounds half
to even, then adds the zero point: the oracle does the same in float32
(torch.round is half-to-even). torch has no int4 quantizer to compare with.
"""

import math

import pytest
import torch

import monoquant
from qref import (assert_within_ulp, qrange, ref_codes, ref_dequant, ref_pack_int4, ref_qparams,
                  row_layout)

SCHEMES = ["symmetric", "asymmetric"]


def _check_all(x, scheme, granularity="per_group", axis=0, group_size=128):
    qt = monoquant.quantize_tensor(x, bits=4, scheme=scheme, granularity=granularity, axis=axis,
                                   group_size=group_size)
    assert qt.spec.format == "int4" and qt.spec.bits == 4
    rows, k = row_layout(x.shape)
    # packed layout: uint8 [rows, ceil(K/2)]
    assert qt.codes.dtype == torch.uint8
    assert tuple(qt.codes.shape) == (rows, (k + 1) // 2)
    # scales: independent absmax / minmax per cell
    scale, zp = ref_qparams(x, 4, scheme, granularity, axis, group_size)
    assert_within_ulp(qt.scale, scale)
    if scheme == "symmetric":
        assert qt.zero_point is None
    else:
        assert qt.zero_point.dtype == torch.int32 and torch.equal(qt.zero_point, zp)
    # codes, computed from monoquant's own scales so that a 1-ulp scale
    # difference cannot hide or fake a rounding difference
    q = qt.int_codes()
    assert q.dtype == torch.int8 and q.shape == x.shape
    expected = ref_codes(x, qt.scale, qt.zero_point, 4, scheme, granularity, axis, group_size)
    assert torch.equal(q, expected)
    qmin, qmax = qrange(4, scheme)
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    # nibble packing, from the oracle codes
    assert torch.equal(qt.codes, ref_pack_int4(expected))
    # dequantize: (q - zp) * scale in float32
    y = qt.dequantize()
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(y, ref_dequant(expected, qt.scale, qt.zero_point, x.shape, granularity, axis, group_size))
    return qt


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("group_size", [32, 64, 128, 256])
def test_power_of_two_groups(group_size, scheme):
    x = torch.randn(24, 512)
    qt = _check_all(x, scheme, group_size=group_size)
    assert tuple(qt.scale.shape) == (24, 512 // group_size)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("k,group_size", [(480, 96), (500, 100), (217, 7)])  # 217 = 7 * 31: odd K
def test_non_power_of_two_divisor(k, group_size, scheme):
    x = torch.randn(10, k) * 2
    qt = _check_all(x, scheme, group_size=group_size)
    assert tuple(qt.scale.shape) == (10, k // group_size)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("k,group_size", [(300, 128), (129, 128), (1000, 256), (65, 32), (5, 128), (33, 2)])
def test_ragged_last_group(k, group_size, scheme):
    x = torch.randn(6, k)
    # make the ragged tail's absmax very different from the full groups'
    x[:, -(k % group_size or group_size):] *= 0.01
    qt = _check_all(x, scheme, group_size=group_size)
    g = math.ceil(k / group_size)
    assert tuple(qt.scale.shape) == (6, g)
    if scheme == "symmetric":
        tail = x[:, (g - 1) * group_size:]
        expected_tail = (tail.abs().amax(dim=1).double() / 7).float()
        assert_within_ulp(qt.scale[:, -1].contiguous(), expected_tail)


@pytest.mark.parametrize("k", [1, 3, 17, 255, 257, 1023])
def test_odd_k_packing(k):
    x = torch.randn(5, k)
    qt = _check_all(x, "symmetric", group_size=64)
    # the unused high nibble of each row's last byte is 0
    assert torch.all((qt.codes[:, -1] >> 4) == 0)
    # the low nibble of the last byte is the last element + 8
    assert torch.equal((qt.codes[:, -1] & 0xF).to(torch.int8), qt.int_codes()[:, -1] + 8)


def test_nibble_order_explicit():
    # scale = 7/7 = 1: codes are round_half_even(x); check the bytes by hand.
    x = torch.tensor([[7.0, -7.0, 1.0, 2.0, -3.0]])
    qt = monoquant.quantize_tensor(x, bits=4, granularity="per_tensor")
    assert float(qt.scale) == 1.0
    # nibbles: 15, 1 | 9, 10 | 5, (0)
    assert qt.codes.tolist() == [[15 | (1 << 4), 9 | (10 << 4), 5]]
    assert qt.int_codes().tolist() == [[7, -7, 1, 2, -3]]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("granularity,axis", [("per_tensor", 0), ("per_channel", 0), ("per_channel", 1),
                                              ("per_channel", -1)])
def test_other_granularities(granularity, axis, scheme):
    x = torch.randn(12, 77) * torch.linspace(0.1, 5, 77)
    _check_all(x, scheme, granularity=granularity, axis=axis)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_3d_per_group(scheme):
    x = torch.randn(3, 5, 200)
    qt = _check_all(x, scheme, group_size=64)
    assert tuple(qt.scale.shape) == (15, 4)
    assert tuple(qt.codes.shape) == (15, 100)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_long_rows_cross_tiles(scheme):
    # K > 16384 splits each row into tiles; odd K leaves a half-used byte.
    x = torch.randn(3, 40001)
    _check_all(x, scheme, group_size=128)


def test_default_granularity_is_group_128():
    x = torch.randn(4, 384)
    qt = monoquant.quantize_tensor(x, bits=4)
    assert qt.spec.granularity == "per_group" and qt.spec.group_size == 128
    assert tuple(qt.scale.shape) == (4, 3)
    for alias in ("group", "group_wise", "per_group"):
        assert torch.equal(monoquant.quantize_tensor(x, bits=4, granularity=alias).codes, qt.codes)


def test_asymmetric_uses_full_range():
    # all-positive data: zero point -8, the maximum maps to +7 (15 steps)
    x = torch.rand(4, 64) + 0.5
    qt = monoquant.quantize_tensor(x, bits=4, scheme="asymmetric", group_size=64)
    assert torch.all(qt.zero_point == -8)
    assert torch.all(qt.int_codes().amax(dim=1) == 7)
    # all-negative data: zero point +7, the minimum maps to -8
    qt = monoquant.quantize_tensor(-x, bits=4, scheme="asymmetric", group_size=64)
    assert torch.all(qt.zero_point == 7)
    assert torch.all(qt.int_codes().amin(dim=1) == -8)


def test_symmetric_range_excludes_minus_8():
    x = torch.randn(16, 256)
    q = monoquant.quantize_tensor(x, bits=4, group_size=32).int_codes()
    assert int(q.min()) == -7 and int(q.max()) == 7


def test_nbytes():
    x = torch.randn(6, 300)
    qt = monoquant.quantize_tensor(x, bits=4, group_size=128)
    assert qt.nbytes == 6 * 150 + 6 * 3 * 4
    qt = monoquant.quantize_tensor(x, bits=4, scheme="asymmetric", group_size=128)
    assert qt.nbytes == 6 * 150 + 2 * 6 * 3 * 4


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rows_longer_than_64k(scheme):
    # rows of more than 65536 elements take a different (two-pass) path
    x = torch.randn(2, 70001)
    _check_all(x, scheme, group_size=128)
    _check_all(x, scheme, granularity="per_channel", axis=0)
