"""QuantizationReport.diagnostics(): why a quantized model may not be faster -- the kernel set and why, layers
too small to gain, activation quantization without VNNI, weight-only layers."""

import torch
from torch import nn

import monoquant
from monoquant import _core, ops
from monoquant.report import SMALL_LAYER_PARAMS


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 32))


def test_diagnostics_name_kernels_small_layers_and_modes():
    res = monoquant.quantize(_model(), bits=8, dynamic=True, show_progress=False)
    d = res.report.diagnostics()
    assert d[0].startswith(f"linear kernels: {ops.kernel_name()} ")
    assert _core.linear_kernel_reason() in d[0]
    small = [l for l in res.report.quantized if l.shape[0] * l.shape[1] < SMALL_LAYER_PARAMS]
    assert small  # 64 x 256 = 16384 is not small, 32 x 64 is
    assert any(f"{len(small)} layers have fewer than {SMALL_LAYER_PARAMS}" in x for x in d)
    assert not any("layers are weight-only" in x for x in d)
    assert res.report.to_dict()["diagnostics"] == d
    assert "speed: linear kernels" in str(res.report)
    wo = monoquant.quantize(_model(), bits=4, group_size=32, show_progress=False)
    assert any("3 layers are weight-only" in x for x in wo.report.diagnostics())


def test_diagnostics_warn_without_vnni():
    was = ops.kernel_name()
    ops.set_vnni_enabled(False)
    try:
        res = monoquant.quantize(_model(), bits=8, dynamic=True, show_progress=False)
        assert res.report.layers[0].kernel == "avx2" or was == "scalar"
        if was != "scalar":
            assert any("without VNNI" in x for x in res.report.diagnostics())
            assert any("bits=7 (7-bit weights, W7A8)" in x for x in res.report.diagnostics())
            w7 = monoquant.quantize(_model(), bits=7, dynamic=True, show_progress=False)
            assert w7.report.layers[0].kernel == "avx2"
            assert not any("bits=7" in x for x in w7.report.diagnostics())  # already there
    finally:
        ops.set_vnni_enabled(True)
    res = monoquant.quantize(_model(), bits=8, dynamic=True, show_progress=False)
    if ops.kernel_name() not in ("avx2", "scalar"):
        assert not any("without VNNI" in x for x in res.report.diagnostics())
