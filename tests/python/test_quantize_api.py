"""monoquant.quantize on models built here: every call form, the module walk
(nesting, ModuleList, custom classes, shared modules, skip rules and quality
defaults), one set of codes (what runs = what is saved = what is loaded),
static activations that really run int8 x int8, the report's real bytes,
validate, warnings, errors, and what quantized modules support (state_dict,
deepcopy, pickle, compile, export, dtype and device moves).

Oracles: torch's own float ops, an int8 x int8 product written here from the
saved codes, the `safetensors` package reading our files, torch.load.
"""

import copy
import io as pyio
import os
import pickle
import warnings

import pytest
import safetensors.torch
import torch
from torch import nn

import monoquant as mq
from tolerances import bf16_tiles
from monoquant import errors


class Block(nn.Module):
    """A custom class with nested layers, a norm and a ModuleList."""

    def __init__(self, d=64):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.ff = nn.ModuleList([nn.Linear(d, 2 * d), nn.Linear(2 * d, d)])

    def forward(self, x):
        h = self.norm(x)
        return x + self.ff[1](torch.relu(self.ff[0](h)))


class Net(nn.Module):
    def __init__(self, vocab=100, d=64):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d), Block(d)])
        self.tiny = nn.Linear(d, 4)          # 256 parameters: under the INT4 minimum
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.emb.weight  # tied output embedding

    def forward(self, ids):
        h = self.emb(ids)
        for b in self.blocks:
            h = b(h)
        return self.lm_head(h) + self.tiny(h).sum(-1, keepdim=True)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 32)).eval()


def rel(a, b):
    return float((a - b).norm() / b.norm())


def batches(n=6, rows=8, k=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, k, generator=g) for _ in range(n)]


CALL_FORMS = [
    ("W8A8-dynamic", dict(bits=8, dynamic=True), "dynamic", "int8", 0.02),
    ("W8A8-static", dict(bits=8, calibration_data="data"), "static", "int8", 0.03),
    ("W4A16", dict(bits=4, weight_only=True, group_size=32), "weight_only", "int4", 0.15),
    ("W8A16", dict(bits=8, weight_only=True), "weight_only", "int8", 0.01),
    ("W4A8", dict(bits=4, dynamic=True, group_size=32), "dynamic", "int4", 0.15),
    ("W4A8-static", dict(bits=4, calibration_data="data", group_size=32), "static", "int4", 0.15),
    ("FP16", dict(bits=16), "weight_only", "float16", 1e-3),
    ("BF16", dict(bits=16, dtype=torch.bfloat16), "weight_only", "bfloat16", 1e-2),
]


@pytest.mark.parametrize("label,kwargs,mode,fmt,bound", CALL_FORMS, ids=[c[0] for c in CALL_FORMS])
def test_call_forms(label, kwargs, mode, fmt, bound):
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = dict(kwargs)
    if kwargs.get("calibration_data") == "data":
        kwargs["calibration_data"] = batches()
    r = mq.quantize(model, **kwargs)
    assert isinstance(r, mq.QuantizationResult)
    qs = [m for m in r.model.modules() if isinstance(m, mq.QuantLinear)]
    assert len(qs) == 2 and all(q.scheme.mode == mode and q.format == fmt for q in qs)
    x = torch.randn(5, 64)
    with torch.no_grad():
        y, ref = r.model(x), model(x)
    if fmt == "float16" and bf16_tiles(x.shape[0]):
        bound = 1e-2  # bf16 kernels (AMX-BF16, AVX-512 BF16) round activations and float16 weights to bf16
    assert 0 < rel(y, ref) < bound
    # The input model is untouched (inplace=False).
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert r.config["mode"] == mode


def test_static_forward_is_int8_times_int8():
    # Oracle: quantize x with the stored input_scale / input_zero_point (torch.quantize_per_tensor),
    # integer matmul with the saved int8 codes, one float scale: what the W8A8 static kernel must compute.
    model = mlp()
    r = mq.quantize(model, bits=8, calibration_data=batches())
    lin = r.model[0]
    sd = lin.state_dict()
    codes, wscale = sd["weight"], sd["weight_scale"].float().reshape(-1)
    s, z = float(sd["input_scale"]), int(sd["input_zero_point"])
    assert z != 0  # default static INT8 activations are asymmetric
    x = torch.randn(7, 64) * 2  # some values clip
    xq = torch.quantize_per_tensor(x, s, z + 128, torch.quint8).int_repr().to(torch.int64) - 128
    acc = (xq - z) @ codes.to(torch.int64).t()
    want = acc.double() * (s * wscale.double()) + lin.bias.double()
    got = lin(x).double()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # and it is not what float activations give
    float_act = (x.double() @ (codes.double() * wscale.double()[:, None]).t()) + lin.bias.double()
    assert (got - float_act).abs().max() > 1e-4


def test_one_set_of_codes_run_save_load(tmp_path):
    # fp16 model: scales are rounded up to fp16 before the codes are computed, so the module's
    # float32 scales, the file's fp16 scales and the reloaded ones are the same numbers.
    model = mlp().half()
    r = mq.quantize(model, bits=4, weight_only=True, group_size=32)
    lin = r.model[0]
    qw = lin.quantized_weight()
    direct = mq._core.quantize_weight(model[0].weight.detach(), 4, "symmetric", "per_group", 0, 32, "mse", "float16", True)
    assert torch.equal(qw.codes, direct["codes"].view(torch.uint8))
    assert torch.equal(qw.scales, direct["scales"])
    path = tmp_path / "m.safetensors"
    r.save(path)
    file = safetensors.torch.load_file(str(path))
    assert file["0.weight_scale"].dtype == torch.float16
    assert torch.equal(file["0.weight_scale"].float(), qw.scales)  # exact: rounded up to fp16 before quantizing
    words = file["0.weight_packed"]
    assert words.dtype == torch.int32 and torch.equal(words.view(torch.uint8).reshape(128, -1), qw.codes)
    back = mq.load(path, mq.dequantize(r.model))
    assert back[0].quantized_weight().equal(qw)
    x = torch.randn(3, 64, dtype=torch.float16)
    assert torch.equal(back(x), r.model(x))


def test_walk_defaults_reasons_and_ties():
    torch.manual_seed(0)
    net = Net().eval()
    r = mq.quantize(net, bits=4, weight_only=True, group_size=32)
    by_name = {layer.name: layer for layer in r.report.layers}
    assert by_name["blocks.0.ff.0"].quantized and by_name["blocks.1.ff.1"].quantized
    assert not by_name["tiny"].quantized and "too small" in by_name["tiny"].reason
    assert not by_name["lm_head"].quantized and "output head" in by_name["lm_head"].reason
    assert not by_name["emb"].quantized and "embedding" in by_name["emb"].reason
    assert not by_name["blocks.0.norm"].quantized and "norm" in by_name["blocks.0.norm"].reason
    assert r.model.lm_head.weight is r.model.emb.weight  # kept tied
    ids = torch.randint(0, 100, (2, 5))
    assert 0 < rel(r.model(ids), net(ids)) < 0.2
    # include= quantizes a sensitive layer, with a warning
    with pytest.warns(RuntimeWarning, match="sensitive layer 'tiny'"):
        r2 = mq.quantize(net, bits=4, weight_only=True, group_size=32, include=["tiny"])
    assert isinstance(r2.model.tiny, mq.QuantLinear)
    # INT8: every Linear but the head; the embedding is in layer_types but tied to the kept head
    r3 = mq.quantize(net, bits=8, layer_types=(nn.Linear, nn.Embedding))
    assert isinstance(r3.model.tiny, mq.QuantLinear) and isinstance(r3.model.lm_head, nn.Linear)
    assert isinstance(r3.model.emb, nn.Embedding) and r3.model.lm_head.weight is r3.model.emb.weight
    assert "tied to 'lm_head'" in {layer.name: layer for layer in r3.report.layers}["emb"].reason
    # asked for both: both quantized, from the same weight, to the same codes
    r4 = mq.quantize(net, bits=8, layer_types=(nn.Linear, nn.Embedding), include=["lm_head"])
    assert isinstance(r4.model.emb, mq.QuantEmbedding) and isinstance(r4.model.lm_head, mq.QuantLinear)
    assert r4.model.emb.quantized_weight().equal(r4.model.lm_head.quantized_weight())


def test_shared_module_stays_shared_and_skip_rules():
    torch.manual_seed(0)
    shared = nn.Linear(64, 64)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(64, 64), nn.Linear(64, 64)).eval()
    r = mq.quantize(model, bits=8, skip=["re:^3$", nn.ReLU])
    assert r.model[0] is r.model[2] and isinstance(r.model[0], mq.QuantLinear)
    assert isinstance(r.model[3], nn.Linear) and isinstance(r.model[4], mq.QuantLinear)
    assert "matches skip 're:^3$'" in {layer.name: layer for layer in r.report.layers}["3"].reason
    r2 = mq.quantize(model, bits=8, skip=[nn.Linear])
    assert not any(isinstance(m, mq.QuantModule) for m in r2.model.modules())


def test_conv_and_embedding_modules():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, groups=2),
                          nn.Flatten(1, 2)).eval()
    r = mq.quantize(model, bits=8, dynamic=True)
    assert isinstance(r.model[0], mq.QuantConv2d) and isinstance(r.model[2], nn.Conv2d)
    assert "groups=2" in {layer.name: layer for layer in r.report.layers}["2"].reason
    x = torch.randn(2, 3, 8, 8)
    assert 0 < rel(r.model(x), model(x)) < 0.03
    c1 = nn.Conv1d(8, 16, 5, stride=2, padding=2).eval()
    q1 = mq.quantize(nn.Sequential(c1), bits=8, weight_only=True).model[0]
    assert isinstance(q1, mq.QuantConv1d)
    x1 = torch.randn(3, 8, 20)
    # weight-only int8: exactly the float conv with the dequantized weight (up to summation order)
    ref = nn.functional.conv1d(x1, q1.dequantized_weight(), c1.bias, stride=2, padding=2)
    tol = 1e-5 if not bf16_tiles(10) else 2.0 ** -7 * 8  # 10 output positions per sequence
    torch.testing.assert_close(q1(x1), ref, rtol=tol, atol=tol)
    emb = nn.Embedding(50, 64, padding_idx=0)
    for bits, kw in ((8, {}), (4, {"group_size": 32})):
        qe = mq.quantize(nn.Sequential(emb), bits=bits, layer_types=(nn.Embedding,), **kw).model[0]
        assert isinstance(qe, mq.QuantEmbedding)
        ids = torch.tensor([[0, 3, 49], [7, 7, 1]])
        assert torch.equal(qe(ids), nn.functional.embedding(ids, qe.dequantized_weight()))


def test_state_dict_and_path_inputs(tmp_path):
    model = mlp()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    r = mq.quantize(sd, bits=8, dynamic=True)
    assert set(r.model) == {"0.weight", "0.weight_scale", "0.bias", "2.weight", "2.weight_scale", "2.bias"}
    assert r.model["0.weight"].dtype == torch.int8
    # the same codes as the module path
    rm = mq.quantize(model, bits=8, dynamic=True)
    assert torch.equal(r.model["0.weight"], rm.model[0].state_dict()["weight"])
    for suffix in ("m.safetensors", "m.pt"):
        p = tmp_path / suffix
        if suffix.endswith(".pt"):
            torch.save(sd, p)
        else:
            safetensors.torch.save_file(sd, str(p))
        rp = mq.quantize(p, bits=4, weight_only=True, group_size=32)
        assert rp.model["0.weight_packed"].dtype == torch.int32
        out = tmp_path / ("q-" + suffix)
        rp.save(out)
        back = mq.load(out, mlp(5))
        assert isinstance(back[0], mq.QuantLinear) and back[0].scheme.format == "int4"
        assert rp.validate().roundtrip_identical
    loaded = torch.load(tmp_path / "q-m.pt", weights_only=True)
    assert torch.equal(loaded["0.weight_packed"], rp.model["0.weight_packed"])


def test_report_counts_real_bytes(tmp_path):
    model = mlp()
    r = mq.quantize(model, bits=8, dynamic=True)
    path = tmp_path / "m.safetensors"
    r.save(path)
    file = safetensors.torch.load_file(str(path))
    assert r.report.total_bytes_after == sum(t.numel() * t.element_size() for t in file.values())
    assert r.report.total_bytes_before == sum(t.numel() * t.element_size() for t in model.state_dict().values())
    layer = r.report.layers[0]
    assert layer.bytes_after == file["0.weight"].numel() + file["0.weight_scale"].numel() * 4
    text = str(r.report)
    assert "W8A8-dynamic" in text and "compression" not in text or "x)" in text
    d = r.report.to_dict()
    assert d["totals"]["layers_quantized"] == 2 and d["totals"]["compression_ratio"] > 3
    assert 40 < d["layers"][0]["sqnr_db"] < 60


def test_validate_reports_outputs_and_roundtrip():
    model = mlp()
    r = mq.quantize(model, bits=8, calibration_data=batches())
    v = r.validate()  # calibration batches are reused
    assert v.ok and v.roundtrip_identical and v.batches > 0
    assert 25 < v.output_sqnr_db < 80 and v.mean_sample_cosine > 0.99
    v2 = r.validate(sample_inputs=[torch.randn(4, 64)])
    assert v2.batches == 1 and v2.output_sqnr_db > 25
    rd = mq.quantize(model, bits=8, dynamic=True)
    v3 = rd.validate()  # no inputs at all: weights and the round trip only
    assert v3.roundtrip_identical and v3.output_sqnr_db is None and any("no sample inputs" in n for n in v3.notes)


def test_warnings():
    model = mlp()
    with torch.no_grad():  # heavy-tailed weights: int4 groups of 64 lose much of them
        for m in (model[0], model[2]):
            m.weight.copy_(torch.randn_like(m.weight) ** 3)
    with pytest.warns(RuntimeWarning, match="weight SQNR under 20 dB"):
        r = mq.quantize(model, bits=4, weight_only=True, group_size=64, scale_method="absmax")
    assert any("SQNR" in w for w in r.warnings)
    with pytest.warns(RuntimeWarning, match="calibration samples"):
        mq.quantize(model, bits=8, calibration_data=[torch.randn(4, 64)])

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(64, 64), nn.Linear(64, 64)

        def forward(self, x, other=False):
            return self.unused(x) if other else self.used(x)

    with pytest.warns(RuntimeWarning, match="never reached layer 'unused'"):
        rb = mq.quantize(Branchy().eval(), bits=8, calibration_data=batches(n=8))
    assert rb.model.used.scheme.mode == "static" and rb.model.unused.scheme.mode == "dynamic"


def test_errors_name_the_problem():
    model = mlp()
    with pytest.raises(errors.InvalidArgumentError, match="bits must be 4, 7, 8 or 16"):
        mq.quantize(model, bits=5)
    with pytest.raises(errors.InvalidArgumentError, match="K = 64.*not a multiple of group_size 48.*group_size=32"):
        mq.quantize(model, bits=4, group_size=48)
    with pytest.raises(errors.InvalidArgumentError, match="needs calibration_data"):
        mq.quantize(model, bits=8, static=True)
    with pytest.raises(errors.InvalidArgumentError, match="choose one of"):
        mq.quantize(model, bits=8, dynamic=True, weight_only=True)
    with pytest.raises(errors.InvalidArgumentError, match="did not run through the model"):
        mq.quantize(model, bits=8, calibration_data=[torch.randn(4, 63)])
    with pytest.raises(errors.InvalidArgumentError, match="did not run through the model"):
        mq.quantize(model, bits=8, calibration_data=[torch.randint(0, 5, (4, 64))])
    with pytest.raises(errors.InvalidArgumentError, match="no module named 'ff'.*did you mean"):
        mq.quantize(Net(), bits=8, skip=["ff"])
    bad = mlp()
    with torch.no_grad():
        bad[2].weight[3, 5] = float("nan")
    with pytest.raises(errors.InvalidArgumentError, match="layer '2'.*non-finite"):
        mq.quantize(bad, bits=8)
    with pytest.raises(errors.UnsupportedError, match="dynamic activations are symmetric"):
        mq.quantize(model, bits=8, dynamic=True, scheme="asymmetric")
    # nothing was changed by any failed call
    assert not any(isinstance(m, mq.QuantModule) for m in model.modules())


def test_module_state_dict_deepcopy_pickle_and_moves():
    model = mlp()
    r = mq.quantize(model, bits=8, calibration_data=batches())
    x = torch.randn(3, 64)
    y = r.model(x)
    # state_dict -> a fresh quantized model of another seed
    other = mq.quantize(mlp(7), bits=8, calibration_data=batches(seed=9)).model
    other.load_state_dict(r.model.state_dict())
    assert torch.equal(other(x), y)
    assert torch.equal(copy.deepcopy(r.model)(x), y)
    assert torch.equal(pickle.loads(pickle.dumps(r.model))(x), y)
    buf = pyio.BytesIO()
    torch.save(r.model, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), y)
    # dtype moves keep the quantized weight; outputs follow the input dtype
    h = copy.deepcopy(r.model).half()
    assert h[0].packed_scales.dtype == torch.float32
    yh = h(x.half())
    assert yh.dtype == torch.float16 and torch.allclose(yh.float(), y, atol=1e-2, rtol=1e-2)
    with pytest.raises(errors.UnsupportedError, match="CPU kernels"):
        copy.deepcopy(r.model).to("meta")
    with pytest.raises(RuntimeError, match="Missing key"):
        mq.quantize(mlp(), bits=8).model.load_state_dict({})


def test_compile_and_export():
    r = mq.quantize(mlp(), bits=4, weight_only=True, group_size=32)
    x = torch.randn(4, 64)
    eager = r.model(x)
    compiled = torch.compile(r.model, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), eager)
    exported = torch.export.export(r.model, (x,))
    assert torch.equal(exported.module()(x), eager)
    emb = mq.quantize(nn.Sequential(nn.Embedding(20, 32)), bits=8, layer_types=(nn.Embedding,)).model
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(torch.export.export(emb, (ids,)).module()(ids), emb(ids))


def test_dequantize_model_and_tensor():
    model = mlp()
    r = mq.quantize(model, bits=8, dynamic=True)
    f = mq.dequantize(r.model)
    assert isinstance(f[0], nn.Linear) and not any(isinstance(m, mq.QuantModule) for m in f.modules())
    assert torch.equal(f[0].weight, r.model[0].dequantized_weight())
    assert isinstance(mq.dequantize(r)[2], nn.Linear)
    qt = mq.quantize_tensor(torch.randn(8, 16))
    assert mq.dequantize(qt).shape == (8, 16)
    with pytest.raises(errors.InvalidArgumentError):
        mq.dequantize("model")


def test_inplace_and_saved_directory(tmp_path):
    model = mlp()
    r = mq.quantize(model, bits=8, inplace=True)
    assert r.model is model and isinstance(model[0], mq.QuantLinear)
    r.save(tmp_path / "dir")
    assert (tmp_path / "dir" / "config.json").exists() and (tmp_path / "dir" / "model.safetensors").exists()
    back = mq.load(tmp_path / "dir", mlp(3))
    x = torch.randn(2, 64)
    assert torch.equal(back(x), model(x))
    v = r.validate([x])
    assert v.roundtrip_identical and any("inplace=True" in n for n in v.notes)


def test_load_errors(tmp_path):
    safetensors.torch.save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"), {"format": "pt"})
    with pytest.raises(errors.FormatError, match="not a quantized checkpoint"):
        mq.load(tmp_path / "plain.safetensors", mlp())
    r = mq.quantize(mlp(), bits=8)
    r.save(tmp_path / "q.safetensors")
    with pytest.raises(errors.InvalidArgumentError, match="pass model="):
        mq.load(tmp_path / "q.safetensors")
    with pytest.raises(errors.FormatError, match="does not have"):
        mq.load(tmp_path / "q.safetensors", nn.Sequential(nn.Linear(64, 128)))
    with pytest.raises(errors.FormatError, match="weight is"):
        mq.load(tmp_path / "q.safetensors", nn.Sequential(nn.Linear(64, 100), nn.GELU(), nn.Linear(100, 32)))
    with pytest.raises(errors.InvalidArgumentError, match="no such file"):
        mq.load(tmp_path / "missing.safetensors", mlp())
