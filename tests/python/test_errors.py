"""Every refused input raises the documented exception class, with a message
that says what and where."""

import numpy as np
import pytest
import torch

import monoquant
from monoquant import _core

QUANT_KWARGS = [
    dict(bits=8, granularity="per_tensor"),
    dict(bits=8, granularity="per_channel"),
    dict(bits=8, scheme="asymmetric", granularity="per_channel", axis=1),
    dict(bits=4, granularity="per_group", group_size=4),
    dict(bits=4, scheme="asymmetric", granularity="per_tensor"),
    dict(bits=16),
    dict(bits=16, dtype=torch.bfloat16),
    dict(bits=16, overflow="saturate"),
]
KW_IDS = ["i8-tensor", "i8-channel", "i8-asym-ch1", "i4-group", "i4-asym-tensor", "f16", "bf16", "f16-sat"]


def test_exception_hierarchy():
    E = monoquant
    assert issubclass(E.InvalidArgumentError, E.MonoquantError) and issubclass(E.InvalidArgumentError, ValueError)
    assert issubclass(E.FormatError, E.MonoquantError) and issubclass(E.FormatError, ValueError)
    assert issubclass(E.MonoquantIOError, E.MonoquantError) and issubclass(E.MonoquantIOError, OSError)
    assert issubclass(E.UnsupportedError, E.MonoquantError) and issubclass(E.UnsupportedError, NotImplementedError)


@pytest.mark.parametrize("kwargs", QUANT_KWARGS, ids=KW_IDS)
@pytest.mark.parametrize("bad,word", [(float("nan"), "NaN"), (float("inf"), "Inf"), (float("-inf"), "Inf")])
def test_non_finite_input_names_kind_and_index(kwargs, bad, word):
    x = torch.randn(6, 8)
    x[4, 5] = bad  # flat index 37
    with pytest.raises(monoquant.InvalidArgumentError) as ei:
        monoquant.quantize_tensor(x, **kwargs)
    msg = str(ei.value)
    assert word in msg and "37" in msg, msg
    assert "index 37" in msg
    assert isinstance(ei.value, ValueError)


def test_first_non_finite_element_is_named():
    x = torch.zeros(100)
    x[61] = float("inf")
    x[80] = float("nan")
    with pytest.raises(monoquant.InvalidArgumentError, match=r"Inf at flat index 61\b"):
        monoquant.quantize_tensor(x, bits=8, granularity="per_tensor")
    x[10] = float("nan")
    with pytest.raises(monoquant.InvalidArgumentError, match=r"NaN at flat index 10\b"):
        monoquant.quantize_tensor(x, bits=4, group_size=32)


def test_non_finite_index_is_the_logical_index_of_a_view():
    base = torch.zeros(5, 7)
    base[1, 3] = float("nan")
    view = base.t()  # element [3, 1] of a [7, 5] view: flat index 16
    with pytest.raises(monoquant.InvalidArgumentError, match=r"index 16\b"):
        monoquant.quantize_tensor(view, bits=8, granularity="per_tensor")
    with pytest.raises(monoquant.InvalidArgumentError, match=r"index 16\b"):
        monoquant.quantize_tensor(view, bits=16)


def test_non_finite_in_large_tensor():
    x = torch.randn(300, 1000)
    x[299, 999] = float("nan")
    with pytest.raises(monoquant.InvalidArgumentError, match="NaN at flat index 299999"):
        monoquant.quantize_tensor(x, bits=8, granularity="per_channel", axis=1)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(bits=3), "bits"),
    (dict(bits=2), "bits"),
    (dict(bits=32), "bits"),
    (dict(scheme="symetric"), "scheme"),
    (dict(scheme=""), "scheme"),
    (dict(granularity="per_row"), "granularity"),
    (dict(granularity="PER_TENSOR"), "granularity"),
    (dict(axis=2), "axis 2"),
    (dict(axis=-3), "axis -3"),
    (dict(bits=4, granularity="per_group", group_size=0), "group_size"),
    (dict(bits=4, granularity="per_group", group_size=-5), "group_size"),
    (dict(bits=8, dtype=torch.float16), "dtype"),
    (dict(bits=16, dtype=torch.float32), "dtype"),
    (dict(bits=16, overflow="wrap"), "overflow"),
], ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(f"{k}={w}" for k, w in v.items()))
def test_bad_arguments(kwargs, pattern):
    x = torch.randn(4, 8)
    with pytest.raises(monoquant.InvalidArgumentError, match=pattern):
        monoquant.quantize_tensor(x, **kwargs)
    with pytest.raises(ValueError):
        monoquant.quantize_tensor(x, **kwargs)


def test_bad_scheme_is_refused_for_bits_4_too():
    with pytest.raises(monoquant.InvalidArgumentError, match="scheme"):
        monoquant.quantize_tensor(torch.randn(4, 8), bits=4, scheme="asymmetrical")


@pytest.mark.parametrize("dtype", [torch.int32, torch.int8, torch.uint8, torch.int64, torch.bool, torch.complex64])
@pytest.mark.parametrize("bits", [4, 8, 16])
def test_non_float_tensors(dtype, bits):
    x = torch.zeros(4, 8, dtype=dtype)
    with pytest.raises(monoquant.InvalidArgumentError, match="floating-point"):
        monoquant.quantize_tensor(x, bits=bits)


def test_not_a_tensor():
    with pytest.raises(monoquant.InvalidArgumentError, match="torch.Tensor"):
        monoquant.quantize_tensor(np.zeros((4, 8), dtype=np.float32))
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.quantize_tensor([[1.0, 2.0]])
    with pytest.raises(monoquant.InvalidArgumentError, match="QuantizedTensor"):
        monoquant.dequantize(torch.zeros(3))


def test_meta_tensor():
    x = torch.zeros(4, 8, device="meta")
    for bits in (4, 8, 16):
        with pytest.raises(monoquant.InvalidArgumentError, match="meta"):
            monoquant.quantize_tensor(x, bits=bits)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensor():
    x = torch.zeros(4, 8, device="cuda")
    with pytest.raises(monoquant.InvalidArgumentError, match="cuda"):
        monoquant.quantize_tensor(x)


def test_int_codes_of_half_tensor():
    qt = monoquant.quantize_tensor(torch.randn(4), bits=16)
    with pytest.raises(monoquant.InvalidArgumentError, match="no integer codes"):
        qt.int_codes()


def test_core_refuses_mismatched_parts():
    x = torch.randn(4, 10)
    qt = monoquant.quantize_tensor(x, bits=8, granularity="per_channel")
    # wrong number of scales
    with pytest.raises(monoquant.InvalidArgumentError, match="scales"):
        _core.dequantize(qt.codes, qt.scale[:3].contiguous(), None, [4, 10], 8, "symmetric", "per_channel", 0, 128)
    # a non-positive scale
    with pytest.raises(monoquant.InvalidArgumentError, match="scale"):
        _core.dequantize(qt.codes, torch.zeros(4), None, [4, 10], 8, "symmetric", "per_channel", 0, 128)
    # codes that do not fit the shape
    with pytest.raises(monoquant.InvalidArgumentError, match="codes"):
        _core.dequantize(qt.codes, qt.scale, None, [4, 11], 8, "symmetric", "per_channel", 0, 128)
    # asymmetric without zero points
    with pytest.raises(monoquant.InvalidArgumentError, match="zero_points"):
        _core.dequantize(qt.codes, qt.scale, None, [4, 10], 8, "asymmetric", "per_channel", 0, 128)
    # a zero point outside the code range
    with pytest.raises(monoquant.InvalidArgumentError, match="zero point"):
        _core.dequantize(qt.codes, qt.scale, torch.full((4,), 200, dtype=torch.int32), [4, 10], 8, "asymmetric",
                         "per_channel", 0, 128)
    # packed int4 of the wrong size
    q4 = monoquant.quantize_tensor(x, bits=4, group_size=5)
    with pytest.raises(monoquant.InvalidArgumentError, match="int4 codes"):
        _core.unpack_int4(q4.codes, [4, 12])
    with pytest.raises(monoquant.InvalidArgumentError, match="int4 codes"):
        _core.dequantize(q4.codes[:, :4].contiguous(), q4.scale, None, [4, 10], 4, "symmetric", "per_group", 0, 5)


def test_core_direct_dtype_checks():
    with pytest.raises(monoquant.InvalidArgumentError, match="floating-point"):
        _core.quantize(torch.zeros(4, dtype=torch.int32), 8, "symmetric", "per_tensor", 0, 128)
    with pytest.raises(monoquant.InvalidArgumentError, match="float16 or bfloat16"):
        _core.half_to_float(torch.zeros(4))
    with pytest.raises(monoquant.InvalidArgumentError):
        _core.cast_to_half(torch.zeros(4), "float32", "error")
    # a DLPack type the core has no mapping for
    with pytest.raises(monoquant.UnsupportedError):
        _core.half_to_float(torch.zeros(4, dtype=torch.complex64))


def test_thread_count_and_isa_validation():
    before = monoquant.get_num_threads()
    for n in (0, -1):
        with pytest.raises(monoquant.InvalidArgumentError, match="at least 1"):
            monoquant.set_num_threads(n)
    assert monoquant.get_num_threads() == before
    isa = _core.active_isa()
    with pytest.raises(monoquant.InvalidArgumentError, match="ISA"):
        _core.set_isa("neon")
    assert _core.active_isa() == isa


def test_error_leaves_library_usable():
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.quantize_tensor(torch.tensor([float("nan")] * 100_000), bits=8, granularity="per_tensor")
    x = torch.randn(64, 64)
    qt = monoquant.quantize_tensor(x, bits=8)
    assert monoquant.sqnr(x, qt.dequantize()) > 35
