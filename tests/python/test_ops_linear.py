"""monoquant.ops linear / conv2d against torch computing the same math in float.

Oracles: the weights are dequantized with torch from the same codes and
scales; for the dynamic / static modes the activation codes are formed with
torch using the documented rule (per row: s = absmax / 127,
q = clamp(round_half_even(x * (1 / s)), -127, 127)), and the product is taken
in float64. Tolerances (documented in docs/ARCHITECTURE.md):
  integer modes      rtol 1e-5, atol 1e-5 * max|y|  (int32 sums are exact;
                     only the float epilogue rounds)
  weight-only modes  |y - ref| <= 2e-5 * (|x| @ |W|^T) + 1e-5; on the amx and avx512_vnni sets from
                     _core.bf16_weight_only_min_rows() rows
                     (AMX-BF16 tiles or AVX-512 BF16, bf16-rounded activations) 2^-7 * (|x| @ |W|^T) + 1e-5
"""

import pytest
import torch
import torch.nn.functional as F

from tolerances import weight_only_rtol

import monoquant
from monoquant import _core, ops

SHAPES = [(1, 1, 1), (1, 7, 9), (3, 33, 17), (17, 129, 65), (64, 383, 31), (512, 40, 13), (5, 1000, 24),
          (32, 384, 40), (130, 1536, 24)]
INT4_CASES = [((1, 100, 9), 32), ((3, 200, 17), 64), ((2, 300, 33), 128), ((64, 77, 5), 32), ((129, 257, 12), 128)]


def kernel_sets():
    # The C++ registry: every set this CPU runs (scalar first), so AMX is tested where present.
    return list(_core.available_linear_kernel_sets())


@pytest.fixture(params=kernel_sets())
def kernels(request):
    _core.use_linear_kernel_set(request.param)
    assert ops.kernel_name() == request.param
    yield request.param
    _core.use_linear_kernel_set("best")


def random_int8(n, k):
    return torch.randint(-128, 128, (n, k), dtype=torch.int8)


def random_scales(*shape):
    return torch.rand(*shape) * 0.05 + 0.001


def act_codes(x):
    s = x.abs().amax(dim=-1, keepdim=True) / 127.0
    inv = torch.where(s > 0, 1.0 / s, torch.zeros_like(s))
    q = torch.clamp(torch.round(x * inv), -127, 127)
    return q, s


def pack_nibbles(q):
    n, k = q.shape
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    if k % 2:
        u = torch.cat([u, torch.full((n, 1), 0, dtype=torch.uint8)], dim=1)
    return (u[:, 0::2] | (u[:, 1::2] << 4)).contiguous()


def assert_weight_only_close(y, x, wdeq, bias):
    ref = x.double() @ wdeq.double().T + (0 if bias is None else bias.double())
    rows = x.numel() // max(x.shape[-1], 1)
    bound = weight_only_rtol(rows) * (x.double().abs() @ wdeq.double().abs().T) + 1e-5
    err = (y.double() - ref).abs()
    assert y.dtype == torch.float32 and y.shape == ref.shape
    assert bool((err <= bound).all()), f"max excess {(err - bound).max().item()}"


def assert_int_close(y, ref):
    ref = ref.to(torch.float32)
    scale = max(ref.abs().max().item(), 1e-30)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_dynamic_int8_matches_torch(kernels, m, k, n):
    x = torch.randn(m, k)
    codes, scales, bias = random_int8(n, k), random_scales(n), torch.randn(n)
    w = ops.pack_int8(codes, scales)
    y = ops.linear_dynamic_int8(x, w, bias)
    q, s = act_codes(x)
    ref = (q.double() @ codes.double().T) * (s.double() * scales.double()) + bias.double()
    assert_int_close(y, ref)


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("zp", [0, -128, 50])
def test_static_int8_matches_torch(kernels, m, k, n, zp):
    x = torch.randn(m, k)
    codes, scales = random_int8(n, k), random_scales(n)
    w = ops.pack_int8(codes, scales)
    act_scale = 0.03
    y = ops.linear_static_int8(x, w, act_scale, zp)
    q = torch.clamp(torch.round(x * (1.0 / torch.tensor(act_scale))) + zp, -128, 127)
    ref = ((q - zp).double() @ codes.double().T) * (act_scale * scales.double())
    assert_int_close(y, ref)


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_int8_weight_only_matches_torch(kernels, m, k, n):
    x = torch.randn(m, k)
    codes, scales, bias = random_int8(n, k), random_scales(n), torch.randn(n)
    y = ops.linear_weight_only(x, ops.pack_int8(codes, scales), bias)
    assert_weight_only_close(y, x, codes.float() * scales[:, None], bias)


@pytest.mark.parametrize("case", INT4_CASES)
def test_int4_weight_only_and_w4a8_match_torch(kernels, case):
    (m, k, n), g = case
    groups = (k + g - 1) // g
    x = torch.randn(m, k)
    q = torch.randint(-8, 8, (n, k), dtype=torch.int8)
    scales, bias = random_scales(n, groups), torch.randn(n)
    w = ops.pack_int4(pack_nibbles(q), k, scales, g)
    expanded = scales.repeat_interleave(g, dim=1)[:, :k]
    assert_weight_only_close(ops.linear_weight_only(x, w, bias), x, q.float() * expanded, bias)
    # W4A8: per-group integer sums, scaled per group, then by the row scale.
    aq, s = act_codes(x)
    ref = torch.zeros(m, n, dtype=torch.float64)
    for gi in range(groups):
        sl = slice(gi * g, min(k, (gi + 1) * g))
        ref += (aq[:, sl].double() @ q[:, sl].double().T) * scales[:, gi].double()
    ref = ref * s.double() + bias.double()
    assert_int_close(ops.linear_dynamic_int8(x, w, bias), ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_half_weights_match_torch(kernels, dtype, m, k, n):
    x = torch.randn(m, k)
    weight = (torch.randn(n, k) * 0.1).to(dtype)
    y = ops.linear_weight_only(x, ops.pack_half(weight))
    assert_weight_only_close(y, x, weight.float(), None)


def test_pack_weight_quantizes_like_monoquant():
    torch.manual_seed(1)
    weight = torch.randn(37, 70)
    x = torch.randn(4, 70)
    qt = monoquant.quantize_tensor(weight, bits=8)
    w = ops.pack_weight(weight, "int8")
    assert_weight_only_close(ops.linear(x, w), x, qt.dequantize(), None)
    qt4 = monoquant.quantize_tensor(weight, bits=4, group_size=32)
    w4 = ops.pack_weight(weight, "int4", group_size=32)
    assert_weight_only_close(ops.linear(x, w4), x, qt4.dequantize(), None)
    # And the quantized result is close to the float layer.
    ref = x @ weight.T
    # float16 weights: float32-accurate, except on the bf16 kernels (bf16-rounded activations and weights).
    f16_limit = 1e-3 if weight_only_rtol(x.shape[0]) == 2e-5 else 1e-2
    for fmt, mode, limit in [("int8", "dynamic", 0.02), ("int4", "weight_only", 0.2), ("int4", "dynamic", 0.2),
                             ("float16", "weight_only", f16_limit), ("bfloat16", "weight_only", 1e-2)]:
        y = ops.linear(x, ops.pack_weight(weight, fmt, 32), mode=mode)
        assert (y - ref).norm() / ref.norm() < limit, (fmt, mode)


def test_leading_dims_dtypes_and_noncontiguous_input():
    w = ops.pack_weight(torch.randn(12, 16), "int8")
    x = torch.randn(2, 3, 16)
    y = ops.linear_dynamic_int8(x, w)
    assert y.shape == (2, 3, 12)
    torch.testing.assert_close(y.reshape(6, 12), ops.linear_dynamic_int8(x.reshape(6, 16), w), rtol=0, atol=0)
    xt = torch.randn(16, 5).T  # non-contiguous
    torch.testing.assert_close(ops.linear_dynamic_int8(xt, w), ops.linear_dynamic_int8(xt.contiguous(), w),
                               rtol=0, atol=0)
    yb = ops.linear_dynamic_int8(x.to(torch.bfloat16), w)
    assert yb.dtype == torch.bfloat16


def test_output_owns_fresh_memory_and_input_is_not_copied():
    w = ops.pack_weight(torch.randn(8, 32), "int8")
    x = torch.randn(4, 32)
    before = x.clone()
    y = ops.linear_weight_only(x, w)
    assert y.data_ptr() != x.data_ptr()
    assert torch.equal(x, before)


def test_conv2d_matches_torch(kernels):
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(3, 7, kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2))
    x = torch.randn(2, 3, 11, 9)
    q = monoquant.QuantConv2d.from_float(conv, mode="weight_only", format="int8")
    qt = monoquant.quantize_tensor(conv.weight.detach().reshape(7, -1), bits=8)
    ref = F.conv2d(x.double(), qt.dequantize().reshape(conv.weight.shape).double(), conv.bias.double(),
                   conv.stride, conv.padding, conv.dilation)
    y = q(x)
    assert y.shape == ref.shape
    tol = 1e-4 if weight_only_rtol(6 * 9) == 2e-5 else 2.0 ** -7 * 8  # 54 output pixels: bf16 tiles on amx
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol)
    # Dynamic int8 conv: close to float conv.
    yd = monoquant.QuantConv2d.from_float(conv, mode="dynamic")(x)
    assert (yd.double() - ref).norm() / ref.norm() < 0.02


def test_quant_linear_module_and_errors():
    torch.manual_seed(2)
    lin = torch.nn.Linear(50, 20)
    x = torch.randn(7, 50)
    for mode, fmt in [("dynamic", "int8"), ("dynamic", "int4"), ("weight_only", "int8"), ("weight_only", "int4"),
                      ("weight_only", "float16"), ("weight_only", "bfloat16")]:
        m = monoquant.QuantLinear.from_float(lin, mode=mode, format=fmt, group_size=32)
        y = m(x)
        ref = lin(x)
        assert (y - ref).norm() / ref.norm() < 0.1, (mode, fmt)
    ms = monoquant.QuantLinear.from_float(lin, mode="static", act_scale=x.abs().max().item() / 127)
    assert (ms(x) - lin(x)).norm() / lin(x).norm() < 0.05
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.QuantLinear.from_float(lin, mode="dynamic", format="float16")
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.QuantLinear.from_float(lin, mode="static")
    w = ops.pack_weight(lin.weight, "int8")
    with pytest.raises(monoquant.InvalidArgumentError):
        ops.linear(torch.randn(2, 49), w)
    with pytest.raises(monoquant.InvalidArgumentError):
        ops.linear(x, w, mode="static", act_scale=0.0)
    with pytest.raises(monoquant.InvalidArgumentError):
        ops.linear(x, w, mode="sometimes")
    with pytest.raises(monoquant.InvalidArgumentError):
        ops.pack_weight(lin.weight, "int4", group_size=12)


def test_nan_row_gives_nan_row():
    w = ops.pack_weight(torch.randn(6, 10), "int8")
    x = torch.randn(3, 10)
    x[1, 4] = float("nan")
    y = ops.linear_dynamic_int8(x, w)
    assert torch.isnan(y[1]).all() and not torch.isnan(y[0]).any() and not torch.isnan(y[2]).any()


def test_custom_op_opcheck():
    w = ops.pack_weight(torch.randn(9, 24), "int4", group_size=8)
    x = torch.randn(3, 24)
    args = (x, w.data, w.scales, w.sums, torch.randn(9), w.format, w.out_features, w.in_features, w.group_size,
            "dynamic", 0.0, 0)
    torch.library.opcheck(torch.ops.monoquant.linear.default, args)


def test_torch_compile_and_trace():
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.ReLU(), torch.nn.Linear(48, 8))
    qmodel = torch.nn.Sequential(monoquant.QuantLinear.from_float(model[0], mode="dynamic"), torch.nn.ReLU(),
                                 monoquant.QuantLinear.from_float(model[2], mode="weight_only", format="int4",
                                                                  group_size=16))
    x = torch.randn(5, 32)
    eager = qmodel(x)
    compiled = torch.compile(qmodel, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), eager, rtol=0, atol=0)
    traced = torch.jit.trace(qmodel, x)
    torch.testing.assert_close(traced(x), eager, rtol=0, atol=0)
    exported = torch.export.export(qmodel, (x,))
    torch.testing.assert_close(exported.module()(x), eager, rtol=0, atol=0)


def test_eager_fast_path_equals_custom_op():
    w = ops.pack_weight(torch.randn(20, 33), "int4", group_size=32)
    x = torch.randn(6, 33)
    bias = torch.randn(20)
    for mode in ("weight_only", "dynamic"):
        direct = ops.linear(x, w, bias, mode)
        via_op = torch.ops.monoquant.linear(x, w.data, w.scales, w.sums, bias, w.format, w.out_features,
                                            w.in_features, w.group_size, mode, 0.0, 0)
        assert torch.equal(direct, via_op)
    # Inputs that require grad go through the custom op and still compute.
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(ops.linear(xg, w, bias).detach(), ops.linear(x, w, bias), rtol=0, atol=0)


def test_fast_path_rechecks_arrays_that_change():
    # The eager path caches its checks of the packed arrays; a re-pointed
    # array must be checked again, and a module whose buffers are replaced
    # must not keep using the old ones.
    torch.manual_seed(5)
    lin = torch.nn.Linear(40, 12)
    x = torch.randn(3, 40)
    w = ops.pack_weight(lin.weight, "int8")
    y0 = ops.linear(x, w, lin.bias.detach(), "dynamic")
    w.scales.data = w.scales.data.to(torch.float64)
    with pytest.raises(monoquant.InvalidArgumentError, match="scales"):
        ops.linear(x, w, lin.bias.detach(), "dynamic")
    w.scales.data = w.scales.data.to(torch.float32)
    assert torch.equal(ops.linear(x, w, lin.bias.detach(), "dynamic"), y0)

    m = monoquant.QuantLinear.from_float(lin, mode="dynamic")
    assert torch.equal(m(x), y0)
    m.packed_scales = m.packed_scales * 2  # a new tensor: the next call must use it
    torch.testing.assert_close(m(x), 2 * (y0 - lin.bias.detach()) + lin.bias.detach(), rtol=1e-5, atol=1e-5)
    y2 = m(x)
    m.to(torch.float64)  # keeps the kernels' float32 scales; the output follows the input's dtype
    assert m.packed_scales.dtype == torch.float32
    y64 = m(x.double())
    assert y64.dtype == torch.float64 and torch.equal(y64.float(), y2)
    # Bias of the wrong size or dtype is refused, not read past its end.
    with pytest.raises(monoquant.InvalidArgumentError, match="bias"):
        ops.linear(x, w, torch.randn(11), "dynamic")


@pytest.mark.parametrize("mode,fmt", [("weight_only", "int8"), ("dynamic", "int8"), ("weight_only", "int4"),
                                      ("dynamic", "int4"), ("weight_only", "bfloat16")])
def test_bf16_activations_in_and_out(kernels, mode, fmt):
    # A bf16 input is widened exactly and the float32 result rounded to nearest even, inside the call:
    # the same bits as widening in torch, running float32, and rounding in torch.
    torch.manual_seed(5)
    lin = torch.nn.Linear(96, 40)
    q = monoquant.QuantLinear.from_float(lin, mode=mode, format=fmt, group_size=32)
    for rows in (3, 37):
        xb = torch.randn(rows, 96).to(torch.bfloat16)
        xb[1, 5] = float("nan")  # a NaN row stays NaN through the bf16 output
        with torch.no_grad():
            yb = q(xb)
            want = q(xb.float()).to(torch.bfloat16)
        assert yb.dtype == torch.bfloat16
        nan = torch.isnan(want)
        assert torch.equal(torch.isnan(yb), nan)  # NaN where float32 gives NaN (its bits may differ)
        assert torch.equal(yb[~nan].view(torch.int16), want[~nan].view(torch.int16)), (mode, fmt, rows)
        assert bool(nan[1].all()) and not bool(nan[0].any())


def test_bf16_tiles_switch_gives_float32_tolerance(kernels):
    # MONOQUANT_BF16_WEIGHT_ONLY=0 / set_bf16_weight_only_enabled(False): weight-only back to float32 accuracy.
    torch.manual_seed(6)
    codes, scales = random_int8(48, 256), torch.rand(48) * 0.01 + 0.001
    w = ops.pack_int8(codes, scales)
    x = torch.randn(64, 256)
    wdeq = codes.double() * scales.double()[:, None]
    _core.set_bf16_weight_only_enabled(False)
    try:
        y = ops.linear_weight_only(x, w)
        ref = x.double() @ wdeq.T
        assert bool(((y.double() - ref).abs() <= 2e-5 * (x.double().abs() @ wdeq.abs().T) + 1e-5).all())
    finally:
        _core.set_bf16_weight_only_enabled(True)
    y_default = ops.linear_weight_only(x, w)
    assert_weight_only_close(y_default, x, wdeq.float(), None)


def test_bf16_weight_only_follows_the_cpu_and_both_switch_names():
    # bf16 weight-only kernels exist on the amx set (AMX-BF16) and on the avx512_vnni set where the CPU has
    # AVX-512 BF16 (vdpbf16ps); MONOQUANT_BF16_WEIGHT_ONLY=0 and its older name MONOQUANT_AMX_BF16=0 turn them off.
    import os
    import subprocess
    import sys

    probe = "from monoquant import _core; print(_core.linear_kernel_name(), _core.bf16_weight_only_min_rows())"

    def run(**env):
        out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env}, check=True,
                             capture_output=True, text=True).stdout.split()
        return out[0], int(out[1])

    name, from_rows = run()
    has_bf16 = bool(_core.cpu_features()["avx512_bf16"])
    assert (from_rows > 0) == (has_bf16 and name in ("amx", "avx512_vnni")), (name, from_rows)
    if from_rows == 0:
        print(f"no bf16 weight-only kernels on this CPU (linear kernel set {name}, AVX-512 BF16 {has_bf16})")
    for switch in ("MONOQUANT_BF16_WEIGHT_ONLY", "MONOQUANT_AMX_BF16"):
        assert run(**{switch: "0"}) == (name, 0)
