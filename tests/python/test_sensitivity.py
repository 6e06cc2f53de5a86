"""monoquant.sensitivity: the measured effect of quantizing each layer alone (held to a hand-made swap of
the quantized module), the proxy's ranking of it, outlier statistics, and the report's forms."""

import json

import pytest
import torch
import transformers
from torch import nn

import monoquant
from monoquant.errors import InvalidArgumentError, UnsupportedError


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, initializer_range=0.1)
    model = transformers.BertModel(cfg).eval()
    with torch.no_grad():  # one layer with a few huge weights: int4 must hurt it most
        model.encoder.layer[1].intermediate.dense.weight[:, :3] *= 25.0
    return model


def _data(n=4):
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, 96, (4, 16), generator=g)} for _ in range(n)]


def test_report_measures_each_layer_alone_and_ranks_it():
    model, data = _bert(), _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rep = monoquant.sensitivity(model, data, candidates=("int4", "int8"), group_size=32, show_progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model is left as it was
    assert all(type(m).__name__ != "QuantLinear" for m in model.modules())
    names = {l.name for l in rep.layers}
    assert "encoder.layer[1]" not in names and "encoder.layer.1.intermediate.dense" in names
    assert len(rep.layers) == 2 * len(names)
    worst = rep.ranking("int4")[0]
    assert worst.name == "encoder.layer.1.intermediate.dense"
    # int8 hurts every layer less than int4
    for l4 in rep.ranking("int4"):
        l8 = next(l for l in rep.layers if l.name == l4.name and l.candidate == "int8")
        assert l8.output_cosine >= l4.output_cosine - 1e-4
    rows = [l for l in rep.layers if l.candidate == "int4"]
    ra = torch.tensor([l.proxy for l in rows]).argsort().argsort().double()
    rb = torch.tensor([1 - l.output_cosine for l in rows]).argsort().argsort().double()
    rho = float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])
    assert abs(rep.proxy_rank_correlation["int4"] - rho) < 1e-9
    assert rep.outliers[worst.name]["ratio"] >= 1.0
    d = json.loads(rep.to_json())
    assert d["samples"] == 16 and len(d["layers"]) == len(rep.layers)
    assert "proxy rank correlation" in str(rep)


def test_measured_effect_is_the_model_with_that_layer_quantized():
    model, data = _bert(), _data(2)
    for b in data:  # padded batches: only real tokens count
        mask = torch.ones_like(b["input_ids"])
        mask[0, 10:] = 0
        mask[2, 5:] = 0
        b["attention_mask"] = mask
    rep = monoquant.sensitivity(model, data, candidates=("int8",), show_progress=False)
    row = next(l for l in rep.layers if l.name == "encoder.layer.0.attention.self.query")
    # the oracle: quantize() with only that layer, run the same batches, compare
    only = monoquant.quantize(model, bits=8, dynamic=True, skip=[f"re:^(?!encoder\\.layer\\.0\\.attention\\.self\\.query$).*"],
                              show_progress=False).model
    with torch.no_grad():
        ref = torch.cat([model(**b).last_hidden_state[b["attention_mask"].bool()].flatten() for b in data]).double()
        got = torch.cat([only(**b).last_hidden_state[b["attention_mask"].bool()].flatten() for b in data]).double()
    cos = float(torch.nn.functional.cosine_similarity(ref, got, dim=0))
    assert abs(cos - row.output_cosine) < 1e-9
    assert row.bytes_saved > 0
    # the proxy: mean over input rows of |x (W - W_q)^T|^2, from the layer's real inputs
    lin = model.encoder.layer[0].attention.self.query
    xs = []
    h = lin.register_forward_pre_hook(lambda m, a: xs.append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        for b in data:
            model(**b)
    h.remove()
    x = torch.cat(xs).double()
    qmod = only.encoder.layer[0].attention.self.query
    d = (lin.weight.double() - qmod.dequantized_weight().double())
    want = float((x @ d.T).pow(2).sum()) / x.shape[0]
    assert abs(row.proxy - want) <= 1e-3 * want


def test_plot_and_bad_arguments(tmp_path):
    model, data = _bert(), _data(2)
    with pytest.raises(InvalidArgumentError, match="unknown candidate"):
        monoquant.sensitivity(model, data, candidates=("int3",))
    with pytest.raises(InvalidArgumentError, match="no batches"):
        monoquant.sensitivity(model, [], candidates=("int8",))
    rep = monoquant.sensitivity(model, data, candidates=("int8", "int4"), group_size=32, show_progress=False)
    import matplotlib  # noqa: F401  (installed by setup for this test; an optional extra for users)
    rep.plot(tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without matplotlib: a clear error, nothing written
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    builtins.__import__ = no_matplotlib
    try:
        with pytest.raises(UnsupportedError, match="pip install matplotlib"):
            rep.plot(tmp_path / "t.png")
    finally:
        builtins.__import__ = real_import
    assert not (tmp_path / "t.png").exists()
