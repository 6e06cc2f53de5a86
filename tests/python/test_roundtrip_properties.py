"""Property-based round trips (hypothesis): for any small tensor and any
integer spec, dequantize(quantize(x)) is within half a step of x, codes stay
in range, and everything agrees with the independent oracle in qref.py."""

import math

import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import monoquant
from qref import per_element, qrange, ref_codes, ref_qparams

SETTINGS = dict(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9)
# magnitudes from 1e-30 to 1e30 (float32 subnormals included via the tiny end)
BIG = float(np.float32(1e30))
finite32 = st.floats(min_value=-BIG, max_value=BIG, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def tensors(draw, elements=finite32):
    shape = draw(shapes)
    mode = draw(st.sampled_from(["elements", "scaled_normal"]))
    if mode == "elements":
        arr = draw(hnp.arrays(np.float32, shape, elements=elements))
        return torch.from_numpy(arr.copy())
    seed = draw(st.integers(0, 2 ** 31 - 1))
    exp = draw(st.integers(-40, 38))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * (10.0 ** exp)
    x = x.float()
    assume(torch.isfinite(x).all())
    return x


@st.composite
def specs(draw, ndim):
    bits = draw(st.sampled_from([4, 8]))
    scheme = draw(st.sampled_from(["symmetric", "asymmetric"]))
    granularity = draw(st.sampled_from(["per_tensor", "per_channel", "per_group"]))
    axis = draw(st.integers(-ndim, ndim - 1))
    group_size = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 16, 128]))
    return dict(bits=bits, scheme=scheme, granularity=granularity, axis=axis, group_size=group_size)


@settings(**SETTINGS)
@given(data=st.data())
def test_round_trip_error_within_half_step(data):
    x = data.draw(tensors(), label="x")
    spec = data.draw(specs(x.dim()), label="spec")
    qt = monoquant.quantize_tensor(x, **spec)
    g, axis, gs = spec["granularity"], spec["axis"], spec["group_size"]
    qmin, qmax = qrange(spec["bits"], spec["scheme"])

    q = qt.int_codes()
    assert q.shape == x.shape and q.dtype == torch.int8
    assert int(q.min()) >= qmin and int(q.max()) <= qmax

    # scales and zero points: the independent formula, within one float32 ulp
    scale, zp = ref_qparams(x, spec["bits"], spec["scheme"], g, axis, gs)
    assert qt.scale.shape == scale.shape
    assert torch.all((qt.scale.double() - scale.double()).abs() <= scale.double() * 2.0 ** -23)
    assert torch.all(qt.scale >= torch.finfo(torch.float32).tiny)

    # codes: the documented arithmetic with monoquant's own qparams
    assert torch.equal(q, ref_codes(x, qt.scale, qt.zero_point, spec["bits"], spec["scheme"], g, axis, gs))

    # the round trip: every element is within half a step of where it started
    y = qt.dequantize()
    assert y.shape == x.shape and y.dtype == torch.float32 and torch.isfinite(y).all()
    s = per_element(qt.scale, x.shape, g, axis, gs).double()
    err = (x.double() - y.double()).abs()
    # 0.5 step plus a few float32 roundings (1/scale, x * inv, (q - zp) * scale)
    bound = s * (0.5 + 1e-4)
    assert torch.all(err <= bound), float((err / s).max())

    # zero stays exactly zero (asymmetric keeps 0 representable)
    assert torch.all(y[x == 0] == 0)


@settings(**SETTINGS)
@given(data=st.data())
def test_symmetric_is_odd(data):
    # symmetric ranges are symmetric about 0, so quantize(-x) = -quantize(x)
    x = data.draw(tensors(), label="x")
    spec = data.draw(specs(x.dim()), label="spec")
    spec["scheme"] = "symmetric"
    a = monoquant.quantize_tensor(x, **spec)
    b = monoquant.quantize_tensor(-x, **spec)
    assert torch.equal(a.scale, b.scale)
    assert torch.equal(a.int_codes(), -b.int_codes())


@settings(**SETTINGS)
@given(x=tensors(), dtype=st.sampled_from([torch.float16, torch.bfloat16]))
def test_half_round_trip_matches_torch(x, dtype):
    qt = monoquant.quantize_tensor(x, bits=16, dtype=dtype, overflow="infinity")
    assert torch.equal(qt.codes.view(torch.int16), x.to(dtype).view(torch.int16))
    y = qt.dequantize()
    assert torch.equal(y, x.to(dtype).float())
    # saturate: never Inf, and equal to torch wherever torch stays finite
    sat = monoquant.quantize_tensor(x, bits=16, dtype=dtype, overflow="saturate").codes
    assert torch.isfinite(sat).all()
    fin = torch.isfinite(x.to(dtype))
    assert torch.equal(sat[fin].view(torch.int16), x.to(dtype)[fin].view(torch.int16))
    assert torch.all(sat[~fin].abs() == torch.finfo(dtype).max)


@settings(**SETTINGS)
@given(data=st.data())
def test_quantize_is_deterministic_and_idempotent_on_the_grid(data):
    # quantizing an already-dequantized tensor reproduces it exactly
    # (symmetric, per-tensor/per-channel: the grid's absmax is preserved)
    x = data.draw(tensors(elements=st.floats(-1e3, 1e3, width=32)), label="x")
    bits = data.draw(st.sampled_from([4, 8]))
    granularity = data.draw(st.sampled_from(["per_tensor", "per_channel"]))
    first = monoquant.quantize_tensor(x, bits=bits, granularity=granularity)
    y = first.dequantize()
    assume(float(first.scale.min()) > 1e-30)  # stay clear of the FLT_MIN floor
    second = monoquant.quantize_tensor(y, bits=bits, granularity=granularity)
    assert torch.equal(second.int_codes(), first.int_codes())
    torch.testing.assert_close(second.dequantize(), y, rtol=2 ** -20, atol=0)
    again = monoquant.quantize_tensor(x, bits=bits, granularity=granularity)
    assert torch.equal(again.codes, first.codes) and torch.equal(again.scale, first.scale)
