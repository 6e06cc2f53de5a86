"""A W4A16 and a W8A8 checkpoint written by monoquant load in Hugging Face
transformers (compressed-tensors quantizer) as quantized modules, and compute
what the model with monoquant's dequantized weights computes."""

import pytest
import torch

import compressed_tensors  # noqa: F401  (required: the quantizer transformers uses)
import transformers

from monoquant import io as mqio


@pytest.mark.parametrize("method", [("w4a16", 32), "w8a8"])
def test_from_pretrained_loads_our_quantized_directory(tmp_path, method):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=4)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(tmp_path)  # config.json + model.safetensors, then quantized in place
    sd = mqio.load_state_dict(tmp_path)
    plan = {k: method for k in sd if k.endswith("proj.weight")}
    mqio.save_quantized(sd, tmp_path, plan)
    q = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    params = dict(q.model.layers[0].self_attn.q_proj.named_parameters())
    params.update(dict(q.model.layers[0].self_attn.q_proj.named_buffers()))
    assert "weight_scale" in params  # loaded as a quantized module, not silently as float
    # The float model with monoquant's dequantized weights computes the same logits.
    deq = mqio.load_quantized(tmp_path)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    ref.load_state_dict({k: v.to(torch.float32) for k, v in deq.items()}, strict=False)
    x = torch.randint(0, 128, (2, 8))
    with torch.no_grad():
        got, want, orig = q(x).logits, ref(x).logits, model(x).logits
    if method == "w8a8":
        # compressed-tensors also quantizes activations per token (dynamic int8) on CPU:
        # close to the float model with our weights, not identical.
        assert (got - want).abs().max() < 0.05
    else:
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert (got - orig).abs().max() > 0  # really quantized
