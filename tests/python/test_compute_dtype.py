"""quantize(..., compute_dtype=torch.bfloat16) / load(..., compute_dtype=): the float part of the model in bf16,
quantized layers taking and returning bf16 activations, weights untouched; float32 plus a warning where the CPU
has no native bf16. Both branches run on every machine (the second by pretending the CPU lacks bf16)."""

import warnings

import pytest
import torch
import transformers

import monoquant
from monoquant import compute_dtype as cd
from monoquant.modules import QuantEmbedding, QuantLinear, QuantModule


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=64)
    return transformers.BertModel(cfg).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(0, 96, (3, 24), generator=g), "attention_mask": torch.ones(3, 24, dtype=torch.long)}


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a.float().flatten(1), b.float().flatten(1), dim=-1).min().item()


@pytest.mark.parametrize("opts", [dict(bits=8, dynamic=True), dict(bits=4, group_size=32),
                                  dict(bits=8, layer_types=(torch.nn.Linear, torch.nn.Embedding))])
def test_float_part_runs_in_bf16(monkeypatch, opts):
    monkeypatch.setattr(cd, "native_bf16", lambda: True)
    model = _bert()
    x = _inputs()
    with torch.no_grad():
        ref = model(**x).last_hidden_state
        fp32 = monoquant.quantize(model, show_progress=False, **opts)
        res = monoquant.quantize(model, show_progress=False, compute_dtype=torch.bfloat16, **opts)
        y32 = fp32.model(**x).last_hidden_state
        y = res.model(**x).last_hidden_state
    assert res.config["compute_dtype"] == "bfloat16"
    assert y.dtype == torch.bfloat16
    floats = [p for n, p in res.model.named_parameters()]
    assert floats and all(p.dtype == torch.bfloat16 for p in floats)
    quantized = [m for m in res.model.modules() if isinstance(m, QuantModule)]
    assert any(isinstance(m, QuantLinear) for m in quantized)
    for m, m32 in zip(quantized, [m for m in fp32.model.modules() if isinstance(m, QuantModule)]):
        # The quantized weights and their scales are the float32 run's, bit for bit.
        assert torch.equal(m.dequantized_weight(), m32.dequantized_weight())
        if m.bias is not None:
            assert m.bias.dtype == torch.float32
        if isinstance(m, QuantEmbedding):
            assert m.compute_dtype == torch.bfloat16
    assert _cos(y, y32) > 0.999  # bf16 rounding only
    assert _cos(y, ref) > 0.99
    assert model.embeddings.word_embeddings.weight.dtype == torch.float32  # the input model is untouched


def test_no_native_bf16_warns_and_keeps_float32(monkeypatch):
    monkeypatch.setattr(cd, "native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        res = monoquant.quantize(_bert(), bits=8, dynamic=True, show_progress=False, compute_dtype=torch.bfloat16)
    assert res.config["compute_dtype"] == "float32"
    assert any("no native bf16" in w for w in res.warnings)
    assert all(p.dtype == torch.float32 for p in res.model.parameters())


def test_bad_compute_dtypes():
    with pytest.raises(monoquant.InvalidArgumentError, match="compute_dtype"):
        monoquant.quantize(_bert(), bits=8, show_progress=False, compute_dtype=torch.float16)
    with pytest.raises(monoquant.InvalidArgumentError, match="state dict"):
        monoquant.quantize(_bert().state_dict(), bits=8, show_progress=False, compute_dtype=torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 asks for nothing
        res = monoquant.quantize(_bert(), bits=8, show_progress=False, compute_dtype=torch.float32)
    assert "compute_dtype" not in res.config


def test_load_with_compute_dtype(monkeypatch, tmp_path):
    monkeypatch.setattr(cd, "native_bf16", lambda: True)
    model = _bert()
    res = monoquant.quantize(model, bits=8, dynamic=True, show_progress=False)
    res.save(tmp_path / "q")
    loaded = monoquant.load(tmp_path / "q", compute_dtype=torch.bfloat16)
    x = _inputs()
    with torch.no_grad():
        y = loaded(**x).last_hidden_state
        want = res.model(**x).last_hidden_state
    assert y.dtype == torch.bfloat16
    assert _cos(y, want) > 0.999
    with pytest.raises(monoquant.InvalidArgumentError, match="compute_dtype"):
        monoquant.load(tmp_path / "q", compute_dtype=torch.float64)
