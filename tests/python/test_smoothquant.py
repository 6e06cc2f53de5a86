"""SmoothQuant (smoothing.py, quantize(..., smoothquant=alpha)): the smoothed float model is the original
one (folded into pre-norms where that is exact, applied by the module elsewhere), and smoothing lowers the
W8A8 error on activations with outlier channels."""

import copy

import pytest
import torch
import transformers
from torch import nn

import monoquant
from monoquant import smoothing
from monoquant.errors import InvalidArgumentError

VOCAB = 96


def _llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaModel(cfg).eval()


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=32)
    return transformers.GPT2Model(cfg).eval()


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, initializer_range=0.1)
    return transformers.BertModel(cfg).eval()


def _ids(n=6, seq=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, VOCAB, (4, seq), generator=g)} for _ in range(n)]


def _linears(model):
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]


def _out(model, batches):
    with torch.no_grad():
        return torch.cat([model(**b).last_hidden_state for b in batches])


@pytest.mark.parametrize("make,folds", [(_llama, True), (_gpt2, True), (_bert, False)])
def test_smoothed_float_model_equals_the_original(make, folds):
    model = make()
    data = _ids()
    ref = _out(model, data)
    target = copy.deepcopy(model)
    sm = smoothing.smooth(target, _linears(target), data, smoothing.smoothquant_factors(0.5))
    got = _out(target, data)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    if folds:  # pre-norm: the norms before q/k/v and the MLP take the factors
        assert any("q_proj" in n or "c_attn" in n for n in sm.folded)
        assert all(("norm" in v or "ln_" in v) for v in sm.folded.values())
    else:  # post-LN BERT: a LayerNorm's output is also the next residual; every fold is refused
        assert sm.folded == {}
        assert "encoder.layer.0.attention.self.query" in sm.inverse
    sm.remove_hooks()


def _outlier_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64)).eval()
    boost = torch.ones(64)
    boost[[3, 17, 40]] = 30.0  # activation outlier channels, as in LLM activations
    data = [torch.randn(32, 64) * boost for _ in range(8)]
    test = torch.randn(256, 64) * boost
    return net, data, test


@pytest.mark.parametrize("kwargs", [dict(dynamic=True), dict(static=True)])
def test_smoothquant_lowers_w8a8_error(kwargs):
    net, data, test = _outlier_net()
    with torch.no_grad():
        ref = net(test)
    extra = {"calibration_data": data} if "static" in kwargs else {}
    plain = monoquant.quantize(net, bits=8, include=["2"], show_progress=False, **kwargs, **extra)
    smooth = monoquant.quantize(net, bits=8, include=["2"], calibration_data=data, smoothquant=0.5,
                                show_progress=False, **kwargs)
    with torch.no_grad():
        e_plain = (plain.model(test) - ref).pow(2).mean().item()
        e_smooth = (smooth.model(test) - ref).pow(2).mean().item()
    assert e_smooth < 0.7 * e_plain, (e_smooth, e_plain)
    assert smooth.model[0].input_smooth is not None
    assert smooth.config["smoothquant"]["in_module"] == ["0", "2"]
    # the report compares with the user's float weights, not the scaled ones
    assert all(l.sqnr_db > 30 for l in smooth.report.layers if l.quantized)


def test_smoothquant_inplace_reports_against_the_original_weights():
    net, data, _ = _outlier_net()
    w0 = net[0].weight.detach().clone()
    res = monoquant.quantize(net, bits=8, dynamic=True, calibration_data=data, smoothquant=0.5, inplace=True,
                             show_progress=False)
    layer = next(l for l in res.report.layers if l.name == "0")
    assert layer.sqnr_db > 30
    err = (res.model[0].dequantized_weight() - w0).norm() / w0.norm()
    assert err < 0.02, err  # the effective weight is the user's, not the scaled one


def test_smoothquant_save_load_roundtrip(tmp_path):
    net, data, test = _outlier_net()
    res = monoquant.quantize(net, bits=8, dynamic=True, calibration_data=data, smoothquant=0.5, show_progress=False)
    with pytest.warns(RuntimeWarning, match="input_smooth"):
        res.save(tmp_path / "m.safetensors")
    fresh = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
    back = monoquant.load(tmp_path / "m.safetensors", model=fresh)
    assert torch.equal(back[0].input_smooth, res.model[0].input_smooth)
    with torch.no_grad():
        assert torch.equal(back(test), res.model(test))
    # and dequantizing gives the float model that computes the same function
    deq = monoquant.dequantize(res.model)
    with torch.no_grad():
        assert torch.allclose(deq(test), res.model(test), rtol=0.05, atol=0.05 * res.model(test).abs().max().item())


def test_smoothquant_bad_arguments():
    net, data, _ = _outlier_net()
    with pytest.raises(InvalidArgumentError, match="calibration_data"):
        monoquant.quantize(net, bits=8, dynamic=True, smoothquant=0.5)
    with pytest.raises(InvalidArgumentError, match="quantized"):
        monoquant.quantize(net, bits=8, weight_only=True, calibration_data=data, smoothquant=0.5)
    with pytest.raises(InvalidArgumentError, match=r"\(0, 1\)"):
        monoquant.quantize(net, bits=8, dynamic=True, calibration_data=data, smoothquant=1.5)


def test_awq_lowers_weight_only_error():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64)).eval()
    boost = torch.ones(256)
    boost[[3, 100, 200]] = 30.0
    data = [torch.randn(32, 256) * boost for _ in range(8)]
    test = torch.randn(256, 256) * boost
    with torch.no_grad():
        ref = net(test)
    kw = dict(bits=4, weight_only=True, group_size=128, show_progress=False)
    rtn = monoquant.quantize(net, **kw)
    awq = monoquant.quantize(net, method="awq", calibration_data=data, **kw)
    with torch.no_grad():
        e_rtn = (rtn.model(test) - ref).pow(2).mean().item()
        e_awq = (awq.model(test) - ref).pow(2).mean().item()
    assert e_awq < e_rtn, (e_awq, e_rtn)
    assert awq.config["awq"]["scaled"]  # a layer where no scale helps is left alone; here one is not
    with pytest.raises(InvalidArgumentError, match="one of smoothquant"):
        monoquant.quantize(net, bits=8, dynamic=True, method="awq", smoothquant=0.5, calibration_data=data)


def test_awq_accumulates_hessians_only_for_groups_judged_by_them(monkeypatch):
    # query / key / value read one input and are judged by their attention block's output error:
    # no Hessian for them, and one set of statistics for the group, not three. Every other layer
    # is judged by its own Hessian, which must be there.
    net = _bert()
    seen = {}
    real = smoothing._channel_stats

    def spy(model, names, batches, hessian):
        stats = real(model, names, batches, hessian)
        seen.update(stats)
        return stats

    monkeypatch.setattr(smoothing, "_channel_stats", spy)
    r = monoquant.quantize(net, bits=4, weight_only=True, group_size=32, method="awq", calibration_data=_ids(3),
                           show_progress=False)
    linears = _linears(net)
    queries = [n for n in linears if n.endswith("attention.self.query")]
    assert queries and all(seen[q].acc is None for q in queries)
    assert not any(n.endswith(("attention.self.key", "attention.self.value")) for n in seen)
    singles = [n for n in seen if n not in queries]
    assert singles and all(seen[n].acc is not None for n in singles), singles
    assert r.config["awq"]["scaled"]


@pytest.mark.parametrize("bits,static", [(8, False), (8, True), (7, False), (7, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_smoothing_gives_the_bits_of_the_explicit_multiply(bits, static, dtype):
    # On the eager path the kernel multiplies the factors in as it quantizes each row; the oracle is the
    # custom op (the torch.compile / export path) on x * smooth computed by torch, on every kernel set.
    model = _bert()
    data = _ids()
    kw = dict(calibration_data=data, smoothquant=0.5)
    if not static:
        kw["dynamic"] = True
    r = monoquant.quantize(model, bits=bits, show_progress=False, **kw)
    smoothed = [(n, m) for n, m in r.model.named_modules()
                if isinstance(m, monoquant.QuantLinear) and m.input_smooth is not None]
    assert smoothed  # BERT is post-LN: the query / key / value factors cannot be folded
    g = torch.Generator().manual_seed(5)
    try:
        for kernel_set in monoquant._core.available_linear_kernel_sets():
            monoquant._core.use_linear_kernel_set(kernel_set)
            for name, m in smoothed:
                assert m.input_smooth.dtype == torch.float32 and m.input_smooth.is_contiguous()
                x = (torch.randn(3, 7, m.in_features, generator=g) * 2).to(dtype)
                with torch.no_grad():
                    got = m(x)
                    want = monoquant.ops.linear(x * m.input_smooth.to(dtype), m.packed_weight, m.bias, m.scheme.mode,
                                                m.act_scale, m.act_zero_point)
                assert torch.equal(got, want), (kernel_set, name)
    finally:
        monoquant._core.use_linear_kernel_set("best")
