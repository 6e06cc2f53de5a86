"""Results do not depend on the thread count or on the kernel set (scalar
reference vs AVX2): every bit is the same."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import monoquant
from monoquant import _core

pytestmark = pytest.mark.filterwarnings("ignore:.*quantize_per:UserWarning")


@pytest.fixture
def restore_threads():
    before = monoquant.get_num_threads()
    yield
    monoquant.set_num_threads(before)
    assert monoquant.get_num_threads() == before


@pytest.fixture
def restore_isa():
    before = _core.active_isa()
    yield
    _core.set_isa(before)
    assert _core.active_isa() == before


def _has_avx2() -> bool:
    f = _core.cpu_features()
    return bool(f["avx2"] and f["fma"] and f["f16c"])


CONFIGS = {
    "i8-sym-channel0": dict(bits=8, granularity="per_channel", axis=0),
    "i8-asym-channel1": dict(bits=8, scheme="asymmetric", granularity="per_channel", axis=1),
    "i8-asym-tensor": dict(bits=8, scheme="asymmetric", granularity="per_tensor"),
    "i8-sym-group64": dict(bits=8, granularity="per_group", group_size=64),
    "i4-sym-group128": dict(bits=4, group_size=128),
    "i4-asym-group32": dict(bits=4, scheme="asymmetric", group_size=32),
    "i4-asym-channel0": dict(bits=4, scheme="asymmetric", granularity="per_channel"),
    "f16": dict(bits=16),
    "bf16": dict(bits=16, dtype=torch.bfloat16),
}


def _all_parts(qt):
    """Everything a QuantizedTensor produces, as int tensors for bit comparison."""
    parts = {"codes": qt.codes.view(torch.int16) if qt.codes.dtype in (torch.float16, torch.bfloat16) else qt.codes}
    if qt.scale is not None:
        parts["scale"] = qt.scale.view(torch.int32)
    if qt.zero_point is not None:
        parts["zero_point"] = qt.zero_point
    parts["dequantized"] = qt.dequantize().view(torch.int32)
    if qt.spec.bits == 4:
        parts["int_codes"] = qt.int_codes()
    return parts


def _assert_identical(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape and torch.equal(a[k], b[k]), f"{what}: {k} differs"


@pytest.fixture(scope="module")
def big():
    g = torch.Generator().manual_seed(11)
    # 1.2 M elements, K = 3001 (odd, not a multiple of any group), one
    # channel much larger than the rest
    x = torch.randn(400, 3001, generator=g)
    x[17] *= 1000
    return x


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_thread_count_does_not_change_results(big, name, restore_threads):
    results = {}
    for n in (1, 2, 4):
        monoquant.set_num_threads(n)
        assert monoquant.get_num_threads() == n
        results[n] = _all_parts(monoquant.quantize_tensor(big, **CONFIGS[name]))
    _assert_identical(results[1], results[2], f"{name} 1 vs 2 threads")
    _assert_identical(results[1], results[4], f"{name} 1 vs 4 threads")


def test_metrics_do_not_depend_on_thread_count(big, restore_threads):
    y = monoquant.quantize_tensor(big, bits=4).dequantize()
    out = []
    for n in (1, 3):
        monoquant.set_num_threads(n)
        out.append(monoquant.error_metrics(big, y))
    # partial sums are fixed-size chunks added in order: identical doubles
    assert out[0] == out[1]


def test_set_num_threads_round_trip(restore_threads):
    for n in (1, 3, 7, 2):
        monoquant.set_num_threads(n)
        assert monoquant.get_num_threads() == n
        assert _core.num_threads() == n
    monoquant.set_num_threads(torch.get_num_threads())
    assert monoquant.get_num_threads() == torch.get_num_threads()
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.set_num_threads(0)
    assert monoquant.get_num_threads() == torch.get_num_threads()


def test_concurrent_python_threads(big, restore_threads):
    """The GIL is released during quantization: several Python threads may
    call in at once and must each get exactly the single-threaded answer."""
    monoquant.set_num_threads(2)
    x = big[:100]
    names = sorted(CONFIGS)
    expected = {n: _all_parts(monoquant.quantize_tensor(x, **CONFIGS[n])) for n in names}
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        out = {}
        for n in names[i % 2::2] + names[(i + 1) % 2::2]:
            out[n] = _all_parts(monoquant.quantize_tensor(x, **CONFIGS[n]))
        return out

    with ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(work, range(4)))
    for r in results:
        for n in names:
            _assert_identical(expected[n], r[n], f"{n} concurrent")


@pytest.fixture(scope="module")
def isa_inputs():
    g = torch.Generator().manual_seed(3)
    # lengths that leave tails of every size after the 8/16/32-wide loops
    x = torch.randn(37, 1001, generator=g) * 3
    x[5, :40] = 0.0
    halfy = torch.cat([
        torch.randn(5003, generator=g) * 2.0 ** torch.randint(-30, 17, (5003,), generator=g),  # subnormals .. overflow
        torch.arange(0, 64, dtype=torch.float32) * 2.0 ** -25,  # float16 subnormal ties
        torch.tensor([1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65519.0, 70000.0, -7e4]),
    ])
    return x, halfy


def _with_isa(isa, fn):
    _core.set_isa(isa)
    assert _core.active_isa() == isa
    return fn()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scalar_and_avx2_kernels_agree(isa_inputs, name, restore_isa):
    if not _has_avx2():
        pytest.skip("CPU lacks AVX2/FMA/F16C")
    x, halfy = isa_inputs
    kwargs = dict(CONFIGS[name])
    if kwargs["bits"] == 16:
        kwargs["overflow"] = "infinity"
        inputs = [x, halfy]
    else:
        inputs = [x, x[:, 1:], x[:1, :13]]
    for inp in inputs:
        a = _with_isa("scalar", lambda: _all_parts(monoquant.quantize_tensor(inp, **kwargs)))
        b = _with_isa("avx2", lambda: _all_parts(monoquant.quantize_tensor(inp, **kwargs)))
        _assert_identical(a, b, f"{name} scalar vs avx2")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("overflow", ["saturate", "infinity"])
def test_scalar_and_avx2_half_overflow_policies(isa_inputs, dtype, overflow, restore_isa):
    if not _has_avx2():
        pytest.skip("CPU lacks AVX2/FMA/F16C")
    _, halfy = isa_inputs
    halfy = torch.cat([halfy, torch.tensor([3.4e38, -3.4e38, torch.finfo(torch.float32).max])])
    a = _with_isa("scalar", lambda: monoquant.quantize_tensor(halfy, bits=16, dtype=dtype, overflow=overflow).codes)
    b = _with_isa("avx2", lambda: monoquant.quantize_tensor(halfy, bits=16, dtype=dtype, overflow=overflow).codes)
    assert torch.equal(a.view(torch.int16), b.view(torch.int16))
    if overflow == "infinity":
        assert torch.equal(a.view(torch.int16), halfy.to(dtype).view(torch.int16))


def test_scalar_kernels_match_torch(isa_inputs, restore_isa):
    """The reference kernels are correct on their own, not just equal to AVX2."""
    x, halfy = isa_inputs
    _core.set_isa("scalar")
    qt = monoquant.quantize_tensor(x, bits=8, granularity="per_channel")
    tq = torch.quantize_per_channel(x, qt.scale.double(), torch.zeros(x.shape[0], dtype=torch.long), 0, torch.qint8)
    assert torch.equal(tq.int_repr(), qt.codes)
    for dtype in (torch.float16, torch.bfloat16):
        codes = monoquant.quantize_tensor(halfy, bits=16, dtype=dtype, overflow="infinity").codes
        assert torch.equal(codes.view(torch.int16), halfy.to(dtype).view(torch.int16))


def test_isa_setting(restore_isa):
    _core.set_isa("scalar")
    assert _core.active_isa() == "scalar"
    if _has_avx2():
        _core.set_isa("avx2")
        assert _core.active_isa() == "avx2"
    else:
        with pytest.raises(monoquant.UnsupportedError):
            _core.set_isa("avx2")
