"""GPTQ and AWQ on transformers-built LLaMA-style and GPT-2 models (random weights, seeded): each lowers the
output error against round-to-nearest at W4A16 g32, on held-out token sequences (both models, both methods).

Trained LLMs carry a few input channels with much larger activations than the rest (the reason AWQ and
SmoothQuant exist); freshly initialised norms do not, so the models here get them: a handful of norm
weights raised 8-fold. Without them every channel looks alike and activation-aware scaling has nothing
to find (AWQ then keeps round-to-nearest wherever no scale helps on the calibration data)."""

import pytest
import torch
import transformers

import monoquant

VOCAB, SEQ = 256, 32


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=SEQ)
    return transformers.LlamaModel(cfg)


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=128, n_layer=2, n_head=4, n_positions=SEQ)
    return transformers.GPT2Model(cfg)


def _salient(model):
    g = torch.Generator().manual_seed(3)
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if ("norm" in name or "ln_" in name) and isinstance(w, torch.Tensor) and w.dim() == 1:
            idx = torch.randperm(w.numel(), generator=g)[:4]
            with torch.no_grad():
                w[idx] *= 8.0
    return model


def _data(seed, n):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, VOCAB, (4, SEQ), generator=g)} for _ in range(n)]


def _error(model, ref_model, data):
    with torch.no_grad():
        errs = [(model(**b).last_hidden_state - ref_model(**b).last_hidden_state).pow(2).mean() for b in data]
    return float(torch.stack(errs).mean())


@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_gptq_and_awq_beat_round_to_nearest(make):
    torch.manual_seed(0)
    model = _salient(make()).eval()
    # 32 held-out batches: with 8, the LLaMA comparison sits within its sampling spread (AWQ 1.007x RTN on
    # seed 2's 8 batches, 0.92x-0.96x on four seeds' 32).
    calib, held = _data(1, 16), _data(2, 32)
    kw = dict(bits=4, weight_only=True, group_size=32, show_progress=False)
    rtn = _error(monoquant.quantize(model, **kw).model, model, held)
    gptq = _error(monoquant.quantize(model, method="gptq", calibration_data=calib, **kw).model, model, held)
    awq_res = monoquant.quantize(model, method="awq", calibration_data=calib, **kw)
    awq = _error(awq_res.model, model, held)
    print(f"{make.__name__}: held-out output MSE rtn {rtn:.3e} gptq {gptq:.3e} awq {awq:.3e}")
    assert gptq < 0.9 * rtn
    assert awq_res.config["awq"]["folded"], "pre-norm models take the AWQ factors into their norms"
    # Measured (held-out MSE against RTN): LLaMA 0.93x, GPT-2 0.62x. Before the block objective and the
    # layers' own scale method in the search, LLaMA was 0.99x-1.04x and GPT-2 0.76x-0.79x (4 seeds of 32 batches).
    assert awq < rtn
    rtn_cal = _error(monoquant.quantize(model, **kw).model, model, calib)
    assert _error(awq_res.model, model, calib) < rtn_cal


@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_asymmetric_awq_beats_asymmetric_round_to_nearest(make):
    """AWQ with scheme="asymmetric": the search rounds each candidate with zero points, the layers run them.
    Measured: held-out MSE 0.71x (LLaMA) and 0.73x (GPT-2) asymmetric RTN's."""
    torch.manual_seed(0)
    model = _salient(make()).eval()
    calib, held = _data(1, 16), _data(2, 32)
    kw = dict(bits=4, weight_only=True, group_size=32, scheme="asymmetric", show_progress=False)
    rtn = _error(monoquant.quantize(model, **kw).model, model, held)
    res = monoquant.quantize(model, method="awq", calibration_data=calib, **kw)
    layers = [m for m in res.model.modules() if isinstance(m, monoquant.QuantLinear)]
    assert layers and all(m.scheme.label == "W4A16-g32-asym" for m in layers)
    assert _error(res.model, model, held) < 0.9 * rtn
