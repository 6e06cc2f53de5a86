"""7-bit weights (``quantize(model, bits=7, dynamic=True)``, W7A8): int8 codes in [-63, 63]
with scale absmax / 63 per output channel, int8 activations exactly as W8A8.

Why it exists: on CPUs without VNNI, weights with every |code| <= 64 let the avx2 kernels
take the activations straight as unsigned bytes into vpmaddubsw (docs/ARCHITECTURE.md,
"Narrow weights"). The packed weight records its largest |code| (the last entry of
``sums``), which is what picks that kernel.

Oracles: the weight codes and scales computed here in torch (qref); the forward as an
int64 product of the saved codes with activations quantized here (per token, absmax / 127;
static: torch.quantize_per_tensor with the stored scale and zero point), on every linear
kernel set this CPU has; the ``safetensors`` package reading the saved file.
"""

import copy
import json

import pytest
import safetensors
import safetensors.torch
import torch
from torch import nn

import monoquant as mq
from monoquant import _core, errors
from qref import ref_codes, ref_qparams


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(96, 160), nn.GELU(), nn.Linear(160, 40)).eval()


def batches(n=6, rows=8, k=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, k, generator=g) for _ in range(n)]


@pytest.fixture(params=list(_core.available_linear_kernel_sets()))
def kernel_set(request):
    _core.use_linear_kernel_set(request.param)
    yield request.param
    _core.use_linear_kernel_set("best")


def dynamic_oracle(lin: mq.QuantLinear, x: torch.Tensor) -> torch.Tensor:
    sd = lin.state_dict()
    codes, ws = sd["weight"].to(torch.int64), sd["weight_scale"].double().reshape(-1)
    s = x.abs().amax(-1, keepdim=True) / 127  # float32, as the kernel
    xq = torch.round(x * (1 / s)).clamp(-127, 127).to(torch.int64)
    return (xq @ codes.t()).double() * (s.double() * ws) + lin.bias.double()


def test_codes_scales_and_label():
    model = mlp()
    r = mq.quantize(model, bits=7, dynamic=True, show_progress=False)
    for i in (0, 2):
        lin = r.model[i]
        assert lin.scheme.label == "W7A8-dynamic" and lin.scheme.int8_bits == 7 and lin.format == "int8"
        w = model[i].weight.detach()
        scale, zp = ref_qparams(w, 7, "symmetric", "per_channel")
        want = ref_codes(w, scale, zp, 7, "symmetric", "per_channel")
        qw = lin.quantized_weight()
        torch.testing.assert_close(qw.scales.reshape(-1), scale.reshape(-1).float(), rtol=0, atol=0)
        assert torch.equal(qw.codes.to(torch.int64), want.to(torch.int64))
        assert int(qw.codes.abs().max()) == 63 and int(qw.codes.min()) >= -63
        # The packed weight carries its largest |code|, which picks the narrow-code kernels.
        assert int(lin.packed_sums[-1]) == 63
    # 8 bits for comparison: the same call with bits=8 uses the full [-127, 127].
    r8 = mq.quantize(model, bits=8, dynamic=True, show_progress=False)
    assert int(r8.model[0].packed_sums[-1]) == 127


def test_dynamic_forward_is_the_integer_product_on_every_kernel_set(kernel_set):
    model = mlp()
    r = mq.quantize(model, bits=7, dynamic=True, show_progress=False)
    lin = r.model[0]
    g = torch.Generator().manual_seed(3)
    for m in (1, 2, 7, 33):  # M = 1 takes the two-block path of the avx2 narrow kernel
        x = torch.randn(m, 96, generator=g) * 3
        torch.testing.assert_close(lin(x).double(), dynamic_oracle(lin, x), rtol=1e-5, atol=1e-5)


def test_static_forward_is_the_integer_product_on_every_kernel_set(kernel_set):
    model = mlp()
    r = mq.quantize(model, bits=7, calibration_data=batches(), show_progress=False)
    lin = r.model[0]
    assert lin.scheme.label == "W7A8-static"
    sd = lin.state_dict()
    codes, ws = sd["weight"].to(torch.int64), sd["weight_scale"].double().reshape(-1)
    s, z = float(sd["input_scale"]), int(sd["input_zero_point"])
    assert z != 0  # static int8 activations are asymmetric by default, as with bits=8
    x = torch.randn(9, 96) * 2  # some values clip
    xq = torch.quantize_per_tensor(x, s, z + 128, torch.quint8).int_repr().to(torch.int64) - 128
    want = ((xq - z) @ codes.t()).double() * (s * ws) + lin.bias.double()
    torch.testing.assert_close(lin(x).double(), want, rtol=1e-6, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    model = mlp()
    r = mq.quantize(model, bits=7, dynamic=True, show_progress=False)
    path = tmp_path / "m.safetensors"
    r.save(path)
    with safetensors.safe_open(str(path), "pt") as f:
        cfg = json.loads(f.metadata()["quantization_config"])
    groups = list(cfg["config_groups"].values())
    assert len(groups) == 1 and groups[0]["weights"]["num_bits"] == 7 and groups[0]["format"] == "int-quantized"
    assert groups[0]["input_activations"]["num_bits"] == 8
    file = safetensors.torch.load_file(str(path))
    assert file["0.weight"].dtype == torch.int8 and int(file["0.weight"].abs().max()) == 63
    back = mq.load(path, copy.deepcopy(model))
    assert back[0].scheme.label == "W7A8-dynamic" and back[0].quantized_weight().equal(r.model[0].quantized_weight())
    x = torch.randn(4, 96)
    assert torch.equal(back(x), r.model(x))


def test_accuracy_sits_between_w8a8_and_nothing():
    # Coarser weights than W8A8, so a larger output error; far from the float model's error scale.
    model = mlp()
    x = torch.randn(64, 96)
    with torch.no_grad():
        ref = model(x)
        e8 = float((mq.quantize(model, bits=8, dynamic=True, show_progress=False).model(x) - ref).norm())
        e7 = float((mq.quantize(model, bits=7, dynamic=True, show_progress=False).model(x) - ref).norm())
    assert e8 < e7 < 0.05 * float(ref.norm())


@pytest.mark.parametrize("kwargs,needle", [
    (dict(bits=7, weight_only=True), "bits=7 is for int8 activations"),
    (dict(bits=6, dynamic=True), "bits must be 4, 7, 8 or 16"),
])
def test_errors_name_the_problem(kwargs, needle):
    with pytest.raises(errors.InvalidArgumentError, match=needle):
        mq.quantize(mlp(), show_progress=False, **kwargs)


def test_scheme_validation():
    with pytest.raises(errors.InvalidArgumentError, match="int8_bits must be 8 or 7"):
        mq.schemes.LayerScheme(format="int8", mode="dynamic", int8_bits=6)
    with pytest.raises(errors.InvalidArgumentError, match="7-bit weights"):
        mq.schemes.LayerScheme(format="int8", mode="weight_only", int8_bits=7)


def test_recipe_rule_takes_bits_7():
    model = mlp()
    r = mq.quantize(model, bits=8, dynamic=True, recipe={"0": {"bits": 7}}, show_progress=False)
    assert r.model[0].scheme.label == "W7A8-dynamic" and r.model[2].scheme.label == "W8A8-dynamic"
    r = mq.quantize(model, bits=7, dynamic=True, recipe={"2": {"bits": 8}}, show_progress=False)
    assert r.model[0].scheme.label == "W7A8-dynamic" and r.model[2].scheme.label == "W8A8-dynamic"


@pytest.mark.parametrize("kwargs", [
    dict(method="gptq"), dict(method="gptq", act_order=True), dict(method="awq"),
    dict(smoothquant=0.5, dynamic=True), dict(smoothquant=0.5), dict(dynamic=True, scale_method="mse"),
    dict(dynamic=True, scale_method="hqq"), dict(dynamic=True, act_group_size=32),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_composes_with_methods(kwargs):
    # Every method picks 7-bit codes when asked: codes in [-63, 63], the W7A8 label, a working layer.
    model = mlp()
    data = batches(n=4, rows=16)
    kw = dict(kwargs)
    if "method" in kw or "smoothquant" in kw:
        kw["calibration_data"] = data
    r = mq.quantize(model, bits=7, show_progress=False, **kw)
    x = torch.randn(32, 96)
    with torch.no_grad():
        ref, got = model(x), r.model(x)
    for i in (0, 2):
        qw = r.model[i].quantized_weight()
        assert r.model[i].scheme.label.startswith("W7A8"), r.model[i].scheme.label
        assert -63 <= int(qw.codes.min()) and int(qw.codes.max()) <= 63
    assert float((got - ref).norm() / ref.norm()) < 0.06


class _EmbedAndConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(100, 64)
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.proj = nn.Linear(64, 64)

    def forward(self, ids, img):
        return self.proj(self.embed_tokens(ids)), self.conv(img)


def test_embeddings_take_8_bits_and_convs_7():
    # Embeddings are lookups: 7-bit codes would only cost accuracy there, so they stay 8-bit (W8A16),
    # on the module path and on the state-dict (checkpoint pipeline) path alike.
    torch.manual_seed(0)
    model = _EmbedAndConv().eval()
    types = (nn.Linear, nn.Embedding, nn.Conv2d)
    r = mq.quantize(model, bits=7, dynamic=True, layer_types=types, show_progress=False)
    assert r.model.embed_tokens.scheme.label == "W8A16"
    assert int(r.model.embed_tokens.quantized_weight().codes.abs().max()) == 127
    assert r.model.conv.scheme.label == "W7A8-dynamic" and r.model.proj.scheme.label == "W7A8-dynamic"
    sd = mq.quantize(model.state_dict(), bits=7, layer_types=types, show_progress=False)
    labels = {layer.name: layer.scheme for layer in sd.report.layers}
    assert labels["embed_tokens"] == "W8A16" and labels["proj"] == "W7A8-dynamic"


def test_conv_on_every_kernel_set_gives_the_reference_bits(kernel_set):
    # The integer path is exact: every kernel set gives the scalar reference's bits for a 7-bit conv too.
    torch.manual_seed(0)
    model = _EmbedAndConv().eval()
    r = mq.quantize(model, bits=7, dynamic=True, layer_types=(nn.Conv2d,), show_progress=False)
    img = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        got = r.model.conv(img)
        _core.use_linear_kernel_set("scalar")
        want = r.model.conv(img)
    assert torch.equal(got, want)


def test_a_corrupt_recorded_width_is_a_format_error(tmp_path):
    # monoquant's own metadata records int8_bits; a value other than 7 or 8 is a broken file, named as such.
    model = mlp()
    path = tmp_path / "m.safetensors"
    mq.quantize(model, bits=7, dynamic=True, show_progress=False).save(path)
    with safetensors.safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    assert '"int8_bits":7' in meta["monoquant"]
    meta["monoquant"] = meta["monoquant"].replace('"int8_bits":7', '"int8_bits":9')
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(safetensors.torch.load_file(str(path)), str(bad), metadata=meta)
    with pytest.raises(errors.FormatError, match="int8_bits must be 8 or 7, got 9"):
        mq.load(bad, copy.deepcopy(model))
