"""Error metrics: SQNR floors for each format on N(0,1) data, and every field
of monoquant.error_metrics against a float64 torch computation."""

import math

import pytest
import torch

import monoquant
from monoquant.metrics import aggregate_sqnr_db


def torch_sqnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    return 20 * math.log10(float(torch.linalg.vector_norm(x)) / float(torch.linalg.vector_norm(x - y)))


@pytest.fixture(scope="module")
def gaussian():
    g = torch.Generator().manual_seed(2024)
    return torch.randn(512, 1024, generator=g)


@pytest.mark.parametrize("fmt,kwargs,floor", [
    ("int8 per-channel", dict(bits=8, granularity="per_channel"), 40.0),
    ("int8 per-channel asym", dict(bits=8, scheme="asymmetric", granularity="per_channel"), 40.0),
    ("int4 g128 symmetric", dict(bits=4, granularity="per_group", group_size=128), 18.0),
    ("fp16", dict(bits=16), 70.0),
    ("bf16", dict(bits=16, dtype=torch.bfloat16), 45.0),
])
def test_sqnr_floors(gaussian, fmt, kwargs, floor):
    qt = monoquant.quantize_tensor(gaussian, **kwargs)
    y = qt.dequantize()
    m = monoquant.error_metrics(gaussian, y)
    assert m.sqnr_db >= floor, (fmt, m.sqnr_db)
    assert m.sqnr_db == pytest.approx(torch_sqnr_db(gaussian, y), rel=1e-9, abs=1e-9)
    assert monoquant.sqnr(gaussian, y) == m.sqnr_db


def test_sqnr_ordering(gaussian):
    # more bits, less noise: a sanity relation between formats
    s = {b: monoquant.sqnr(gaussian, monoquant.quantize_tensor(gaussian, bits=b).dequantize()) for b in (4, 8, 16)}
    assert s[4] + 15 < s[8] < s[16] - 15


def test_all_fields_match_float64_torch():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 301, generator=g)  # > 65536 elements: several partial sums
    y = x + 0.01 * torch.randn(300, 301, generator=g)
    m = monoquant.error_metrics(x, y)
    xd, yd = x.double(), y.double()
    d = xd - yd
    assert m.reference_energy == pytest.approx(float((xd * xd).sum()), rel=1e-12)
    assert m.error_energy == pytest.approx(float((d * d).sum()), rel=1e-12)
    assert m.mse == pytest.approx(float((d * d).mean()), rel=1e-12)
    assert m.max_abs_error == float(d.abs().max())
    cos = float((xd * yd).sum() / torch.sqrt((xd * xd).sum() * (yd * yd).sum()))
    assert m.cosine_similarity == pytest.approx(cos, rel=1e-12)
    assert m.sqnr_db == pytest.approx(torch_sqnr_db(x, y), rel=1e-10)
    assert m.sqnr_db == pytest.approx(10 * math.log10(m.reference_energy / m.error_energy), rel=1e-12)


def test_identical_and_degenerate_cases():
    x = torch.randn(50)
    m = monoquant.error_metrics(x, x.clone())
    assert m.sqnr_db == math.inf and m.mse == 0 and m.max_abs_error == 0
    assert m.cosine_similarity == pytest.approx(1.0, abs=1e-12)
    z = torch.zeros(50)
    m = monoquant.error_metrics(z, x)  # zero reference, non-zero approximation
    assert m.sqnr_db == -math.inf and m.cosine_similarity == 0.0
    m = monoquant.error_metrics(z, z)
    assert m.sqnr_db == math.inf and m.cosine_similarity == 1.0
    m = monoquant.error_metrics(x, z)
    assert m.cosine_similarity == 0.0
    assert m.sqnr_db == pytest.approx(0.0, abs=1e-12)  # ||x|| / ||x - 0|| = 1
    m = monoquant.error_metrics(x, -x)
    assert m.cosine_similarity == pytest.approx(-1.0, abs=1e-12)
    assert m.sqnr_db == pytest.approx(20 * math.log10(0.5), abs=1e-12)


def test_empty_tensors():
    m = monoquant.error_metrics(torch.zeros(0), torch.zeros(0))
    assert m.mse == 0 and m.reference_energy == 0 and m.error_energy == 0


def test_other_dtypes_and_layouts_are_converted():
    x = torch.randn(64, 32)
    y = x + 0.1
    base = monoquant.error_metrics(x, y)
    # non-contiguous views of the same values
    xt, yt = x.t().contiguous().t(), y.t().contiguous().t()
    assert not xt.is_contiguous()
    assert monoquant.error_metrics(xt, yt) == base
    # float64 inputs are read as float32
    assert monoquant.error_metrics(x.double(), y.double()) == base
    # float16 approximation: compared as its float32 value
    y16 = y.to(torch.float16)
    assert monoquant.error_metrics(x, y16) == monoquant.error_metrics(x, y16.float())
    # autograd tensors are fine
    assert monoquant.error_metrics(x.requires_grad_(), y) == base


def test_errors():
    with pytest.raises(monoquant.InvalidArgumentError, match="shapes differ"):
        monoquant.error_metrics(torch.zeros(3), torch.zeros(4))
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.error_metrics(torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(monoquant.InvalidArgumentError, match="CPU"):
        monoquant.error_metrics(torch.zeros(3, device="meta"), torch.zeros(3))
    with pytest.raises(ValueError):
        monoquant.error_metrics([1.0, 2.0], torch.zeros(2))


def test_aggregate_sqnr_equals_sqnr_of_concatenation():
    g = torch.Generator().manual_seed(9)
    xs = [torch.randn(n, generator=g) * s for n, s in ((100, 1.0), (1000, 0.1), (37, 10.0))]
    ys = [x + 0.01 * torch.randn(x.shape, generator=g) for x in xs]
    ms = [monoquant.error_metrics(x, y) for x, y in zip(xs, ys)]
    agg = aggregate_sqnr_db(ms)
    assert agg == pytest.approx(torch_sqnr_db(torch.cat(xs), torch.cat(ys)), rel=1e-9)
    assert aggregate_sqnr_db([monoquant.error_metrics(xs[0], xs[0])]) == math.inf
    assert aggregate_sqnr_db([monoquant.error_metrics(torch.zeros(3), torch.ones(3))]) == -math.inf
