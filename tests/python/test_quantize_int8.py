"""int8: codes bit-exact against torch's own quantizers, scales against an
independent computation.

How monoquant's qparams relate to torch's observers
(torch.ao.quantization.MinMaxObserver / PerChannelMinMaxObserver, qint8):

* symmetric: monoquant uses scale = absmax / 127 with codes in [-127, 127],
  so that +-absmax both map to exactly +-127. torch's symmetric observer uses
  scale = max(-min, max) / ((qmax - qmin) / 2) = absmax / 127.5 over the full
  [-128, 127]. The scales differ by the factor 127.5 / 127.
* asymmetric: both use scale = (max(max, 0) - min(min, 0)) / 255 and
  zero_point = clamp(-128 - round(min' / scale)); torch does the division in
  float32, monoquant in float64 then rounds, so scales may differ by 1 ulp.
* a zero range: monoquant uses scale 1 (floor FLT_MIN); torch's observers
  floor the scale at float32 eps (1.19e-7).

None of this affects the codes comparison below: the test takes monoquant's
*own* scale / zero point and hands them to torch.quantize_per_tensor /
torch.quantize_per_channel, so both quantize with identical qparams; only the
rounding arithmetic (x * (1/scale), round half to even, + zp, clamp) is under
test. With scale = absmax / 127, x * (1/scale) never reaches -127.5 for
in-range x, so torch's wider qint8 range never produces -128 on symmetric
input either.

Where the zero point goes (found by these tests, torch 2.13.0 on x86): torch
computes q = nearbyint(fma(x, 1/scale, zero_point)) -- the zero point is added
*before* rounding, in one fused float32 rounding (FBGEMM's "LEGACY" AVX2
path). monoquant documents and implements
q = nearbyint(float32(x * (1/scale))) + zero_point (FBGEMM's non-legacy
quantize_val). With zero_point == 0 (every symmetric case) the two are the
same function. With zero_point != 0 they differ by one code on the rare
elements where x/scale sits on (or within one float32 rounding of) a .5 tie:
about 3 in a million for N(0,1) data. The asymmetric comparisons below are
therefore exact on every element outside that set, and on the set itself
check that each side follows its own formula (docs/FORMAT.md states the
difference).
"""

import pytest
import torch
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

import monoquant
from qref import assert_within_ulp, per_element, ref_codes, ref_dequant, ref_qparams, ulp32

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SCHEMES = ["symmetric", "asymmetric"]


def _zp_or_zero(qt):
    if qt.zero_point is None:
        return torch.zeros(qt.scale.shape, dtype=torch.int32)
    return qt.zero_point


def torch_style_codes(x, scale, zp, granularity, axis):
    """torch 2.13's arithmetic, emulated independently: nearbyint of the fused
    x * inv + zp (the float64 product of two float32s is exact, so one
    float64 add and one rounding to float32 is the fma)."""
    s = per_element(scale.float(), x.shape, granularity, axis)
    inv = (1.0 / s).double()
    z = per_element(zp.double(), x.shape, granularity, axis)
    v = (x.double() * inv + z).float()
    return torch.clamp(torch.round(v), -128, 127).to(torch.int8)


def assert_codes_match_torch(x, qt, torch_codes, granularity, axis=0):
    """Exact equality with torch's int_repr(), except on the elements where
    torch's add-then-round and monoquant's round-then-add provably differ (see
    the module docstring); there each side must follow its own formula."""
    zp = _zp_or_zero(qt)
    mine = ref_codes(x, qt.scale, qt.zero_point, 8, qt.spec.scheme, granularity, axis)
    theirs = torch_style_codes(x, qt.scale, zp, granularity, axis)
    # The two models of the libraries must themselves be right everywhere.
    assert torch.equal(qt.codes, mine)
    assert torch.equal(torch_codes, theirs)
    diverge = mine != theirs
    if qt.zero_point is None or not bool((qt.zero_point != 0).any()):
        assert not diverge.any()
    assert int(diverge.sum()) <= 2 + x.numel() // 20000, int(diverge.sum())
    assert torch.equal(torch_codes[~diverge], qt.codes[~diverge])
    assert ((torch_codes[diverge].int() - qt.codes[diverge].int()).abs() == 1).all()


def _inputs():
    g = torch.Generator().manual_seed(1234)
    return {
        "randn_64x300": torch.randn(64, 300, generator=g),
        "shifted_48x257": torch.randn(48, 257, generator=g) * 3 + 1.5,  # mostly positive: asym zp != -128
        "negative_32x100": -torch.rand(32, 100, generator=g) - 0.1,     # all negative
        "wide_range_16x64": torch.randn(16, 64, generator=g) * torch.logspace(-6, 6, 16).unsqueeze(1),
        # K > 16384 splits rows into tiles; many rows exercise the thread pool
        "long_rows_3x40000": torch.randn(3, 40000, generator=g),
    }


INPUTS = _inputs()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_per_tensor_codes_match_torch(name, scheme):
    x = INPUTS[name]
    qt = monoquant.quantize_tensor(x, bits=8, scheme=scheme, granularity="per_tensor")
    assert qt.codes.dtype == torch.int8 and qt.codes.shape == x.shape
    assert qt.scale.shape == () and qt.scale.dtype == torch.float32
    zp = int(_zp_or_zero(qt))
    tq = torch.quantize_per_tensor(x, float(qt.scale), zp, torch.qint8)
    if scheme == "symmetric":
        assert torch.equal(tq.int_repr(), qt.codes)
    assert_codes_match_torch(x, qt, tq.int_repr(), "per_tensor")
    qmin = -127 if scheme == "symmetric" else -128
    assert int(qt.codes.min()) >= qmin


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("axis", [0, 1, -1, -2])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_per_channel_codes_match_torch(name, axis, scheme):
    x = INPUTS[name]
    qt = monoquant.quantize_tensor(x, bits=8, scheme=scheme, granularity="per_channel", axis=axis)
    a = axis % x.dim()
    assert qt.scale.shape == (x.shape[a],)
    zps = _zp_or_zero(qt)
    tq = torch.quantize_per_channel(x, qt.scale.double(), zps.long(), a, torch.qint8)
    if scheme == "symmetric":
        assert torch.equal(tq.int_repr(), qt.codes)
    assert_codes_match_torch(x, qt, tq.int_repr(), "per_channel", a)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_per_channel_3d_codes_match_torch(axis, scheme):
    # 3-D exercises the inner-axis layout (rows of a channel are scattered).
    x = torch.randn(5, 6, 33) * torch.arange(1, 7).float().reshape(1, 6, 1)
    qt = monoquant.quantize_tensor(x, bits=8, scheme=scheme, granularity="per_channel", axis=axis)
    tq = torch.quantize_per_channel(x, qt.scale.double(), _zp_or_zero(qt).long(), axis, torch.qint8)
    assert_codes_match_torch(x, qt, tq.int_repr(), "per_channel", axis)
    scale, zp = ref_qparams(x, 8, scheme, "per_channel", axis)
    assert_within_ulp(qt.scale, scale)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("granularity,axis", [("per_tensor", 0), ("per_channel", 0), ("per_channel", 1)])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_scales_match_independent_formula(name, granularity, axis, scheme):
    x = INPUTS[name]
    qt = monoquant.quantize_tensor(x, bits=8, scheme=scheme, granularity=granularity, axis=axis)
    scale, _ = ref_qparams(x, 8, scheme, granularity, axis)
    assert_within_ulp(qt.scale, scale)
    if scheme == "symmetric":
        assert qt.zero_point is None
        return
    # zero_point = clamp(-128 - round(min' / scale)) with monoquant's own scale.
    a = axis % x.dim()
    mn = x.min() if granularity == "per_tensor" else x.movedim(a, 0).reshape(x.shape[a], -1).amin(1)
    lo = torch.clamp(mn.double(), max=0.0)
    expected_zp = torch.clamp(-128 - torch.round(lo / qt.scale.double()), -128, 127).to(torch.int32)
    assert qt.zero_point.dtype == torch.int32
    assert torch.equal(qt.zero_point, expected_zp)


def test_symmetric_scale_is_absmax_over_127():
    x = torch.tensor([[-2.54, 1.0, 0.5], [0.25, -0.125, 1.27]])
    qt = monoquant.quantize_tensor(x, bits=8, granularity="per_channel")
    expected = torch.tensor([2.54, 1.27], dtype=torch.float64) / 127
    assert_within_ulp(qt.scale, expected.float())
    # +-absmax maps to exactly +-127, never -128.
    assert qt.codes[0, 0] == -127 and qt.codes[1, 2] == 127


def test_scales_vs_torch_observers():
    """torch's observers as a second, independent oracle (see module docstring)."""
    x = INPUTS["shifted_48x257"]
    # asymmetric per tensor: same formula, float32 vs float64 arithmetic -> 1 ulp
    obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
    obs(x)
    t_scale, t_zp = obs.calculate_qparams()
    qt = monoquant.quantize_tensor(x, bits=8, scheme="asymmetric", granularity="per_tensor")
    assert_within_ulp(qt.scale.reshape(1), t_scale.float())
    assert abs(int(qt.zero_point) - int(t_zp)) <= 1
    # asymmetric per channel
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_affine)
    obs(x)
    t_scale, t_zp = obs.calculate_qparams()
    qt = monoquant.quantize_tensor(x, bits=8, scheme="asymmetric", granularity="per_channel")
    assert_within_ulp(qt.scale, t_scale.float())
    assert (qt.zero_point.long() - t_zp.long()).abs().max() <= 1
    # symmetric: torch divides absmax by 127.5, monoquant by 127
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(x)
    t_scale, _ = obs.calculate_qparams()
    qt = monoquant.quantize_tensor(x, bits=8, scheme="symmetric", granularity="per_channel")
    torch.testing.assert_close(qt.scale.double() * 127, t_scale.double() * 127.5, rtol=1e-6, atol=0)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("granularity,axis", [("per_tensor", 0), ("per_channel", 0), ("per_channel", 1)])
def test_dequantize_matches_torch(granularity, axis, scheme):
    x = INPUTS["shifted_48x257"]
    qt = monoquant.quantize_tensor(x, bits=8, scheme=scheme, granularity=granularity, axis=axis)
    y = qt.dequantize()
    assert y.dtype == torch.float32 and y.shape == x.shape
    expected = ref_dequant(qt.codes, qt.scale, qt.zero_point, x.shape, granularity, axis)
    assert torch.equal(y, expected)
    # and torch's own dequantize of the same qparams (float32 (q - zp) * scale)
    if granularity == "per_tensor":
        tq = torch.quantize_per_tensor(x, float(qt.scale), int(_zp_or_zero(qt)), torch.qint8)
    else:
        tq = torch.quantize_per_channel(x, qt.scale.double(), _zp_or_zero(qt).long(), axis, torch.qint8)
    torch.testing.assert_close(y, tq.dequantize(), rtol=0, atol=float(ulp32(x.abs().max())) * 2)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_codes_match_independent_float32_oracle(scheme):
    x = INPUTS["wide_range_16x64"]
    qt = monoquant.quantize_tensor(x, bits=8, scheme=scheme, granularity="per_channel")
    expected = ref_codes(x, qt.scale, qt.zero_point, 8, scheme, "per_channel", 0)
    assert torch.equal(qt.codes, expected)


def test_ties_round_half_to_even():
    # scale = 127/127 = 1 exactly, so x * (1/scale) = x and ties are visible.
    x = torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5])
    qt = monoquant.quantize_tensor(x, bits=8, granularity="per_tensor")
    assert float(qt.scale) == 1.0
    assert qt.codes.tolist() == [127, 0, 2, 2, 0, -2, -2, 4, 126]
    tq = torch.quantize_per_tensor(x, 1.0, 0, torch.qint8)
    assert torch.equal(tq.int_repr(), qt.codes)


def test_granularity_aliases_and_defaults():
    x = INPUTS["randn_64x300"]
    default = monoquant.quantize_tensor(x)
    assert default.spec.granularity == "per_channel" and default.spec.format == "int8"
    assert default.scale.shape == (64,)
    for alias in ("channel", "per_channel"):
        assert torch.equal(monoquant.quantize_tensor(x, granularity=alias).codes, default.codes)
    for alias in ("sym", "symmetric"):
        assert torch.equal(monoquant.quantize_tensor(x, scheme=alias).codes, default.codes)
    asym = monoquant.quantize_tensor(x, scheme="asym")
    assert asym.spec.scheme == "asymmetric" and asym.zero_point is not None
    assert torch.equal(asym.codes, monoquant.quantize_tensor(x, scheme="asymmetric").codes)


def test_nbytes_counts_codes_scales_and_zero_points():
    x = torch.randn(10, 20)
    assert monoquant.quantize_tensor(x).nbytes == 200 + 10 * 4
    assert monoquant.quantize_tensor(x, scheme="asymmetric").nbytes == 200 + 10 * 4 + 10 * 4
    assert monoquant.quantize_tensor(x, granularity="per_tensor").nbytes == 200 + 4


def _with_qparams(x, scale, zp):
    """monoquant's codes for caller-given per-tensor qparams (the core's
    quantize_with_qparams entry point)."""
    out = monoquant._core.quantize_with_qparams(
        x, 8, "asymmetric", "per_tensor", 0, 128,
        torch.tensor(scale, dtype=torch.float32), torch.tensor(zp, dtype=torch.int32))
    return out["codes"]


def test_asymmetric_ties_follow_documented_formula():
    # scale 1, zero point 1: x * (1/scale) = x exactly, so every .5 is a tie.
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 3.25, 1.5 + 2.0 ** -23])
    codes = _with_qparams(x, 1.0, 1)
    # monoquant: round_half_even(x) + 1
    assert codes.tolist() == [1, 3, 3, 1, -1, 4, 3]
    # torch 2.13 rounds after adding the zero point: round_half_even(x + 1)
    tq = torch.quantize_per_tensor(x, 1.0, 1, torch.qint8).int_repr()
    assert tq.tolist() == [2, 2, 4, 0, 0, 4, 2]
    # the test's emulation of torch predicts exactly that
    assert torch.equal(tq, torch_style_codes(x, torch.tensor(1.0), torch.tensor(1), "per_tensor", 0))


def test_asymmetric_ties_round_before_adding_the_zero_point():
    # The documented difference from torch (docs/FORMAT.md): monoquant rounds
    # x * (1/scale) and then adds the zero point; torch rounds the sum. They
    # part only on exact .5 ties with an odd zero point.
    x = torch.tensor([0.5, 1.5, 2.5, -0.5])
    ours = _with_qparams(x, 1.0, 1)
    assert ours.tolist() == [1, 3, 3, 1]  # round_half_even(x) + 1
    theirs = torch.quantize_per_tensor(x, 1.0, 1, torch.qint8).int_repr()
    assert theirs.tolist() == [2, 2, 4, 0]  # round_half_even(x + 1)


def test_quantize_with_qparams_reproduces_quantize():
    x = INPUTS["shifted_48x257"]
    qt = monoquant.quantize_tensor(x, bits=8, scheme="asymmetric", granularity="per_tensor")
    assert torch.equal(_with_qparams(x, float(qt.scale), int(qt.zero_point)), qt.codes)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("granularity,axis", [("per_channel", 0), ("per_channel", 1), ("per_group", 0)])
def test_rows_longer_than_64k(granularity, axis, scheme):
    # rows of more than 65536 elements take a different (two-pass) path
    x = torch.randn(2, 70001) * torch.tensor([[1.0], [40.0]])
    qt = monoquant.quantize_tensor(x, bits=8, scheme=scheme, granularity=granularity, axis=axis, group_size=1000)
    scale, zp = ref_qparams(x, 8, scheme, granularity, axis, 1000)
    assert_within_ulp(qt.scale, scale)
    assert torch.equal(qt.codes, ref_codes(x, qt.scale, qt.zero_point, 8, scheme, granularity, axis, 1000))
    if granularity == "per_channel":
        tq = torch.quantize_per_channel(x, qt.scale.double(), _zp_or_zero(qt).long(), axis, torch.qint8)
        assert_codes_match_torch(x, qt, tq.int_repr(), granularity, axis)
