"""Shapes, layouts and dtypes at the edges: zeros, constants, 0-d, empty,
non-contiguous and non-float32 inputs, autograd tensors."""

import pytest
import torch

import monoquant
from qref import ref_codes, ref_dequant, ref_qparams, row_layout

# (bits, scheme, granularity) combinations that apply to any tensor with >= 1 dim
INT_CONFIGS = [
    (8, "symmetric", "per_tensor"), (8, "asymmetric", "per_tensor"),
    (8, "symmetric", "per_channel"), (8, "asymmetric", "per_channel"),
    (4, "symmetric", "per_group"), (4, "asymmetric", "per_group"),
    (4, "symmetric", "per_channel"), (8, "asymmetric", "per_group"),
]
CONFIG_IDS = [f"int{b}-{s[:4]}-{g}" for b, s, g in INT_CONFIGS]


def _q(x, bits, scheme, granularity, **kw):
    return monoquant.quantize_tensor(x, bits=bits, scheme=scheme, granularity=granularity, group_size=16, **kw)


def _same(a: monoquant.QuantizedTensor, b: monoquant.QuantizedTensor) -> None:
    assert a.shape == b.shape and a.spec == b.spec
    assert a.codes.dtype == b.codes.dtype and torch.equal(a.codes, b.codes)
    if a.scale is None:
        assert b.scale is None
    else:
        assert torch.equal(a.scale, b.scale)
    if a.zero_point is None:
        assert b.zero_point is None
    else:
        assert torch.equal(a.zero_point, b.zero_point)


@pytest.mark.parametrize("bits,scheme,granularity", INT_CONFIGS, ids=CONFIG_IDS)
def test_all_zero_tensor_dequantizes_to_exact_zeros(bits, scheme, granularity):
    x = torch.zeros(6, 40)
    qt = _q(x, bits, scheme, granularity)
    assert torch.all(qt.scale == 1.0)  # zero range -> scale 1
    y = qt.dequantize()
    assert torch.equal(y, torch.zeros_like(x))
    assert not torch.signbit(y).any()


@pytest.mark.parametrize("bits,scheme", [(8, "symmetric"), (8, "asymmetric"), (4, "symmetric"), (4, "asymmetric")])
def test_all_zero_channel(bits, scheme):
    x = torch.randn(5, 32)
    x[2] = 0.0
    granularity = "per_channel"
    qt = _q(x, bits, scheme, granularity)
    assert float(qt.scale[2]) == 1.0
    y = qt.dequantize()
    assert torch.equal(y[2], torch.zeros(32))
    # the other channels are untouched by the zero one
    scale, _ = ref_qparams(x, bits, scheme, granularity)
    assert torch.equal(qt.scale[[0, 1, 3, 4]], scale[[0, 1, 3, 4]])


@pytest.mark.parametrize("bits,scheme", [(8, "symmetric"), (8, "asymmetric"), (4, "symmetric"), (4, "asymmetric")])
@pytest.mark.parametrize("value", [3.5, -0.125, 1e-30, -7e20])
def test_constant_channel(bits, scheme, value):
    x = torch.randn(4, 24)
    x[1] = value
    qt = _q(x, bits, scheme, "per_channel")
    q = qt.int_codes()[1]
    assert torch.all(q == q[0])
    qmax = (1 << (bits - 1)) - 1
    # the constant is an end of the range: it gets the extreme code
    if scheme == "symmetric":
        assert int(q[0]) == (qmax if value > 0 else -qmax)
    else:
        assert int(q[0]) == (qmax if value > 0 else -qmax - 1)
    y = qt.dequantize()[1]
    torch.testing.assert_close(y, torch.full((24,), value), rtol=2 ** -21, atol=0)


@pytest.mark.parametrize("bits,granularity", [(8, "per_tensor"), (4, "per_tensor")])
def test_zero_dim_tensor(bits, granularity):
    x = torch.tensor(-2.75)
    qt = monoquant.quantize_tensor(x, bits=bits, granularity=granularity)
    assert qt.shape == torch.Size([])
    assert qt.int_codes().shape == ()
    qmax = (1 << (bits - 1)) - 1
    assert int(qt.int_codes()) == -qmax
    y = qt.dequantize()
    assert y.shape == () and y.dtype == torch.float32
    torch.testing.assert_close(y, x, rtol=2 ** -22, atol=0)


def test_zero_dim_half_and_unsupported_granularities():
    x = torch.tensor(1.0 / 3)
    qt = monoquant.quantize_tensor(x, bits=16)
    assert qt.codes.shape == () and qt.codes.view(torch.int16) == x.to(torch.float16).view(torch.int16)
    assert qt.dequantize().shape == ()
    with pytest.raises(monoquant.InvalidArgumentError, match="axis"):
        monoquant.quantize_tensor(x, bits=8, granularity="per_channel")
    with pytest.raises(monoquant.InvalidArgumentError, match="0-d"):
        monoquant.quantize_tensor(x, bits=4, granularity="per_group")


@pytest.mark.parametrize("shape", [(0,), (0, 16), (4, 0), (2, 0, 3)])
@pytest.mark.parametrize("bits,scheme,granularity", INT_CONFIGS, ids=CONFIG_IDS)
def test_empty_tensors(shape, bits, scheme, granularity):
    x = torch.zeros(shape)
    qt = _q(x, bits, scheme, granularity)
    rows, k = row_layout(shape)
    if bits == 8:
        assert qt.codes.shape == shape and qt.codes.dtype == torch.int8
    else:
        assert tuple(qt.codes.shape) == (rows, (k + 1) // 2) and qt.codes.dtype == torch.uint8
    assert qt.codes.numel() == 0
    if granularity == "per_channel":
        assert tuple(qt.scale.shape) == (shape[0],)
    y = qt.dequantize()
    assert y.shape == shape and y.dtype == torch.float32
    assert qt.int_codes().shape == shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(0,), (0, 16), (4, 0)])
def test_empty_tensors_half(shape, dtype):
    qt = monoquant.quantize_tensor(torch.zeros(shape), bits=16, dtype=dtype)
    assert qt.codes.shape == shape and qt.codes.dtype == dtype
    assert qt.dequantize().shape == shape


def _views():
    base = torch.randn(24, 64)
    return {
        "transpose": base.t(),
        "every_other_column": base[:, ::2],
        "offset_slice": base[3:, 5:],
        "every_third_row": base[::3],
        "broadcast_expand": torch.randn(1, 48).expand(10, 48),
        "channels_last_4d": torch.randn(6, 4, 3, 5).to(memory_format=torch.channels_last),
    }


VIEWS = _views()


@pytest.mark.parametrize("name", sorted(VIEWS))
@pytest.mark.parametrize("bits,scheme,granularity", INT_CONFIGS, ids=CONFIG_IDS)
def test_non_contiguous_equals_contiguous(name, bits, scheme, granularity):
    v = VIEWS[name]
    assert not v.is_contiguous()
    for axis in ([0, 1, -1] if granularity == "per_channel" else [0]):
        _same(_q(v, bits, scheme, granularity, axis=axis), _q(v.contiguous(), bits, scheme, granularity, axis=axis))


@pytest.mark.parametrize("name", sorted(VIEWS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_non_contiguous_half(name, dtype):
    v = VIEWS[name] * 100
    qt = monoquant.quantize_tensor(v, bits=16, dtype=dtype)
    assert torch.equal(qt.codes.view(torch.int16), v.contiguous().to(dtype).view(torch.int16))


def test_non_contiguous_codes_match_oracle():
    # not only equal to the contiguous result, but right
    v = VIEWS["every_other_column"]
    qt = monoquant.quantize_tensor(v, bits=8, granularity="per_channel", axis=1)
    scale, _ = ref_qparams(v, 8, "symmetric", "per_channel", 1)
    assert torch.equal(qt.scale, scale)
    assert torch.equal(qt.codes, ref_codes(v, qt.scale, None, 8, "symmetric", "per_channel", 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("bits,scheme,granularity", INT_CONFIGS, ids=CONFIG_IDS)
def test_other_float_dtypes_equal_float32_copy(dtype, bits, scheme, granularity):
    x = (torch.randn(12, 50) * 3).to(dtype)
    _same(_q(x, bits, scheme, granularity), _q(x.float(), bits, scheme, granularity))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("target", [torch.float16, torch.bfloat16])
def test_other_float_dtypes_half(dtype, target):
    x = (torch.randn(300) * 50).to(dtype)
    a = monoquant.quantize_tensor(x, bits=16, dtype=target)
    b = monoquant.quantize_tensor(x.float(), bits=16, dtype=target)
    assert torch.equal(a.codes.view(torch.int16), b.codes.view(torch.int16))


def test_float64_is_rounded_to_float32_first():
    # 1 + 2^-30 is not a float32: it must quantize exactly like float32(1)
    x = torch.tensor([1.0 + 2 ** -30, -0.5, 0.25], dtype=torch.float64)
    _same(monoquant.quantize_tensor(x, granularity="per_tensor"),
          monoquant.quantize_tensor(x.float(), granularity="per_tensor"))


@pytest.mark.parametrize("bits", [4, 8, 16])
def test_requires_grad_input(bits):
    w = torch.nn.Linear(40, 8).weight  # a Parameter, requires_grad=True
    assert w.requires_grad
    qt = monoquant.quantize_tensor(w, bits=bits)
    _same(qt, monoquant.quantize_tensor(w.detach().clone(), bits=bits))
    assert not qt.codes.requires_grad
    assert not qt.dequantize().requires_grad


def test_input_is_not_modified():
    x = torch.randn(16, 33)
    before = x.clone()
    for bits in (4, 8, 16):
        monoquant.quantize_tensor(x, bits=bits)
    monoquant.quantize_tensor(x, bits=8, scheme="asymmetric", granularity="per_tensor")
    assert torch.equal(x, before)


def test_dequantize_matches_oracle_for_3d_inner_axis():
    x = torch.randn(3, 7, 9)
    qt = monoquant.quantize_tensor(x, bits=8, scheme="asymmetric", granularity="per_channel", axis=1)
    assert torch.equal(qt.dequantize(), ref_dequant(qt.codes, qt.scale, qt.zero_point, x.shape, "per_channel", 1))


def test_tiny_values_use_flt_min_scale():
    # absmax / 127 underflows float32: the scale is raised to FLT_MIN
    x = torch.tensor([[1e-44, -3e-45, 0.0]])
    qt = monoquant.quantize_tensor(x, bits=8, granularity="per_tensor")
    assert float(qt.scale) == torch.finfo(torch.float32).tiny
    assert torch.all(qt.codes == 0)
    y = qt.dequantize()
    assert torch.isfinite(y).all()
    assert float((y - x).abs().max()) <= torch.finfo(torch.float32).tiny / 2
