"""float16 / bfloat16 casts: bit-exact against torch's own .to(dtype)."""

import math

import pytest
import torch

import monoquant

HALF = [torch.float16, torch.bfloat16]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16)


def _assert_same_bits(codes: torch.Tensor, expected: torch.Tensor) -> None:
    assert codes.dtype == expected.dtype and codes.shape == expected.shape
    a, b = _bits(codes), _bits(expected)
    bad = a != b
    assert not bad.any(), (f"{int(bad.sum())} differ, first inputs' results "
                           f"{codes[bad][:4].tolist()} vs {expected[bad][:4].tolist()}")


def _f32(bits: list[int]) -> torch.Tensor:
    return torch.tensor(bits, dtype=torch.int32).view(torch.float32)


def _special_values() -> torch.Tensor:
    tiny16 = 2.0 ** -24  # smallest float16 subnormal
    vals = [
        0.0, -0.0, 1.0, -1.0, 65504.0, -65504.0, 65519.0, -65519.0, 65519.99,
        # float16 subnormals and ties around them
        tiny16, -tiny16, tiny16 / 2, 3 * tiny16 / 2, 5 * tiny16 / 2, tiny16 / 2 * 1.0000001,
        tiny16 * 0.49, 2.0 ** -15, 2.0 ** -14, 2.0 ** -14 - tiny16 / 2, 1023.5 * tiny16,
        # ties in the normal range (float16 keeps 10 mantissa bits, bfloat16 7)
        1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 2048 + 1.0, 2048 + 3.0,
        -(1 + 2 ** -11), -(1 + 3 * 2 ** -8), 1 + 2 ** -11 + 2 ** -20,
        # float32 subnormals and extremes of the bfloat16 range
        1e-40, -1e-40, 1e-45, 3.0e38, -3.0e38, 1e-38, 3.3895e38,
        math.pi, 1 / 3, 1e-7, 1e4, 12345.678,
    ]
    return torch.tensor(vals, dtype=torch.float32)


@pytest.mark.parametrize("dtype", HALF)
def test_random_normal_matches_torch(dtype):
    x = torch.randn(513, 257) * 100
    qt = monoquant.quantize_tensor(x, bits=16, dtype=dtype)
    assert qt.spec.format == ("float16" if dtype == torch.float16 else "bfloat16")
    assert qt.scale is None and qt.zero_point is None
    _assert_same_bits(qt.codes, x.to(dtype))


@pytest.mark.parametrize("dtype", HALF)
def test_special_values_match_torch(dtype):
    x = _special_values()
    if dtype == torch.float16:
        x = x[x.abs() < 65520]
    qt = monoquant.quantize_tensor(x, bits=16, dtype=dtype)
    _assert_same_bits(qt.codes, x.to(dtype))


def test_all_float16_subnormal_ties():
    # every k/2 * 2^-24 for k < 2 * 1024: exact ties and exact subnormals
    x = torch.arange(0, 2048, dtype=torch.float32) * 2.0 ** -25
    x = torch.cat([x, -x])
    qt = monoquant.quantize_tensor(x, bits=16)
    _assert_same_bits(qt.codes, x.to(torch.float16))


@pytest.mark.parametrize("dtype", HALF)
def test_random_bit_patterns_match_torch(dtype):
    # every finite float32 exponent, random mantissas; beyond-range values take
    # IEEE semantics with overflow='infinity', as torch does
    g = torch.Generator().manual_seed(7)
    bits = torch.randint(-2 ** 31, 2 ** 31, (300_000,), generator=g, dtype=torch.int64).to(torch.int32)
    x = bits.view(torch.float32)
    x = x[torch.isfinite(x)]
    if dtype == torch.float16:
        # concentrate half of them on the float16 range, near ties
        near = (torch.randn(100_000, generator=g) * 2.0 ** torch.randint(-26, 16, (100_000,), generator=g)).float()
        x = torch.cat([x, near])
    qt = monoquant.quantize_tensor(x, bits=16, dtype=dtype, overflow="infinity")
    _assert_same_bits(qt.codes, x.to(dtype))


@pytest.mark.parametrize("dtype", HALF)
def test_dequantize_is_codes_as_float32(dtype):
    x = torch.randn(33, 65) * 1000
    qt = monoquant.quantize_tensor(x, bits=16, dtype=dtype)
    y = qt.dequantize()
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(y, qt.codes.float())
    assert torch.equal(monoquant.dequantize(qt), x.to(dtype).float())


def test_overflow_error_names_the_index():
    x = torch.zeros(10)
    x[7] = 70000.0
    with pytest.raises(monoquant.InvalidArgumentError, match=r"index 7\b") as ei:
        monoquant.quantize_tensor(x, bits=16)
    assert isinstance(ei.value, ValueError)
    assert "overflow" in str(ei.value)
    # the same for negative values, and for the default overflow argument spelled out
    x[7] = -70000.0
    with pytest.raises(ValueError, match="index 7"):
        monoquant.quantize_tensor(x, bits=16, overflow="error")


def test_overflow_threshold_65520():
    # 65519 rounds down to 65504; 65520 is the first value that rounds to Inf
    ok = monoquant.quantize_tensor(torch.tensor([65519.0, -65519.0, 65519.996]), bits=16)
    assert ok.codes.tolist() == [65504.0, -65504.0, 65504.0]
    _assert_same_bits(ok.codes, torch.tensor([65519.0, -65519.0, 65519.996]).to(torch.float16))
    with pytest.raises(monoquant.InvalidArgumentError, match="index 1"):
        monoquant.quantize_tensor(torch.tensor([1.0, 65520.0]), bits=16)


def test_overflow_saturate_and_infinity():
    x = torch.tensor([70000.0, -70000.0, 1e30, 65504.0, 1.5])
    sat = monoquant.quantize_tensor(x, bits=16, overflow="saturate")
    assert sat.codes.tolist() == [65504.0, -65504.0, 65504.0, 65504.0, 1.5]
    assert sat.spec.overflow == "saturate"
    inf = monoquant.quantize_tensor(x, bits=16, overflow="infinity")
    assert inf.codes.tolist() == [math.inf, -math.inf, math.inf, 65504.0, 1.5]
    _assert_same_bits(inf.codes, x.to(torch.float16))
    # aliases from the C++ parser
    assert torch.equal(monoquant.quantize_tensor(x, bits=16, overflow="clamp").codes, sat.codes)
    assert torch.equal(monoquant.quantize_tensor(x, bits=16, overflow="inf").codes, inf.codes)


def test_bfloat16_overflow_policies():
    fmax = torch.finfo(torch.float32).max
    bf_max = torch.finfo(torch.bfloat16).max
    x = torch.tensor([fmax, -fmax, 1.0])
    # FLT_MAX rounds past the largest bfloat16: torch gives inf
    assert torch.isinf(x.to(torch.bfloat16)[:2]).all()
    with pytest.raises(monoquant.InvalidArgumentError, match="index 0"):
        monoquant.quantize_tensor(x, bits=16, dtype=torch.bfloat16)
    sat = monoquant.quantize_tensor(x, bits=16, dtype=torch.bfloat16, overflow="saturate")
    assert sat.codes.tolist() == [bf_max, -bf_max, 1.0]
    inf = monoquant.quantize_tensor(x, bits=16, dtype=torch.bfloat16, overflow="infinity")
    _assert_same_bits(inf.codes, x.to(torch.bfloat16))
    # the largest float32 that still rounds down to bf_max is fine under 'error'
    below = _f32([0x7F7F7FFF])
    ok = monoquant.quantize_tensor(below, bits=16, dtype=torch.bfloat16)
    assert ok.codes.tolist() == [bf_max]
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.quantize_tensor(_f32([0x7F7F8000]), bits=16, dtype=torch.bfloat16)


@pytest.mark.parametrize("dtype", HALF)
def test_half_input_is_exact(dtype):
    x = torch.randn(100).to(dtype)
    qt = monoquant.quantize_tensor(x, bits=16, dtype=dtype)
    _assert_same_bits(qt.codes, x)


def test_float16_of_bfloat16_input_matches_torch():
    x = (torch.randn(1000) * 300).to(torch.bfloat16)
    qt = monoquant.quantize_tensor(x, bits=16, dtype=torch.float16)
    _assert_same_bits(qt.codes, x.float().to(torch.float16))


def test_nbytes_and_shape():
    x = torch.randn(3, 5, 7)
    qt = monoquant.quantize_tensor(x, bits=16)
    assert qt.codes.shape == x.shape and qt.shape == x.shape
    assert qt.nbytes == x.numel() * 2


@pytest.mark.parametrize("dtype", HALF)
def test_half_to_float_of_views(dtype):
    h = (torch.randn(40, 30) * 10).to(dtype)
    for v in (h.t(), h[:, ::3], h[5:, 7:]):
        assert torch.equal(monoquant._core.half_to_float(v), v.float())
