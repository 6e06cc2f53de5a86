"""quantize(model, recipe=...): per-layer schemes (names, 're:' patterns, module types -> a scheme or "float"),
the first matching rule deciding; mixed-precision files with several config_groups, loaded by monoquant and
by transformers' from_pretrained."""

import json

import pytest
import torch
import transformers
from torch import nn

import monoquant
from monoquant.errors import InvalidArgumentError


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, initializer_range=0.1)
    return transformers.BertModel(cfg).eval()


RECIPE = {
    "encoder.layer.0.attention.self.query": "float",
    "re:.*intermediate\\.dense$": {"bits": 8},                    # W8A16: the call is weight-only
    "re:.*attention\\.output\\.dense$": {"bits": 8, "mode": "dynamic", "act_group_size": 32},
    "re:.*attention\\.self\\..*": {"bits": 4, "group_size": 32},  # query of layer 0 was decided above
}


def _schemes(model):
    return {n: m.scheme.label for n, m in model.named_modules() if isinstance(m, monoquant.QuantModule)}


def test_recipe_sets_each_layer_and_first_match_wins():
    model = _bert()
    res = monoquant.quantize(model, bits=4, weight_only=True, group_size=64, recipe=RECIPE, show_progress=False)
    s = _schemes(res.model)
    assert "encoder.layer.0.attention.self.query" not in s
    assert s["encoder.layer.1.attention.self.query"] == "W4A16-g32"
    assert s["encoder.layer.0.intermediate.dense"] == "W8A16"
    assert s["encoder.layer.0.attention.output.dense"] == "W8A8-dynamic-g32"
    assert s["encoder.layer.0.output.dense"] == "W4A16-g64"  # no rule: the call's own scheme
    reasons = {l.name: l.reason for l in res.report.layers}
    assert "recipe" in reasons["encoder.layer.0.attention.self.query"]
    rules = {r["match"]: r["scheme"] for r in res.config["recipe"]}  # canonical: resolved, in order
    assert [r["match"] for r in res.config["recipe"]] == list(RECIPE)
    assert rules["encoder.layer.0.attention.self.query"] == "float"
    assert rules["re:.*attention\\.self\\..*"]["group_size"] == 32
    # a type key, and a layer the quality defaults keep (the pooler is not kept; use types)
    res2 = monoquant.quantize(model, bits=8, dynamic=True, recipe={nn.Linear: {"bits": 4, "group_size": 32}},
                              show_progress=False)
    assert set(_schemes(res2.model).values()) == {"W4A8-dynamic-g32"}
    assert res2.config["recipe"][0]["match"] == "type:Linear"
    # the same rule written as JSON does ("type:NAME" matches the class or a base class by name)
    res3 = monoquant.quantize(model, bits=8, dynamic=True, recipe={"type:Linear": {"bits": 4, "group_size": 32}},
                              show_progress=False)
    assert _schemes(res3.model) == _schemes(res2.model)


def test_mixed_file_loads_in_monoquant_and_transformers(tmp_path):
    model = _bert()
    ids = torch.randint(0, 96, (3, 16), generator=torch.Generator().manual_seed(3))
    res = monoquant.quantize(model, bits=4, weight_only=True, group_size=64, recipe=RECIPE, show_progress=False)
    res.save(tmp_path / "mixed")
    cfg = json.loads((tmp_path / "mixed" / "config.json").read_text())["quantization_config"]
    assert len(cfg["config_groups"]) == 4  # W4A16-g64, W4A16-g32, W8A16, W8A8 with activation groups
    assert "encoder.layer.0.attention.self.query" in cfg["ignore"] or all(
        "encoder.layer.0.attention.self.query" not in g["targets"] for g in cfg["config_groups"].values())
    back = monoquant.load(tmp_path / "mixed")
    assert _schemes(back) == _schemes(res.model)
    with torch.no_grad():
        ours = res.model(input_ids=ids).last_hidden_state
        assert torch.equal(back(input_ids=ids).last_hidden_state, ours)
        theirs = transformers.AutoModel.from_pretrained(tmp_path / "mixed").eval()(input_ids=ids).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(theirs.flatten(1), ours.flatten(1)).min().item()
    assert cos > 0.999, cos


def test_recipe_errors_and_notes():
    model = _bert()
    with pytest.raises(InvalidArgumentError, match="recipe\\['x'\\]"):
        monoquant.quantize(model, bits=4, recipe={"x": {"bitz": 8}})
    with pytest.raises(InvalidArgumentError, match="recipe\\['re:.*'\\]: .*bits"):
        monoquant.quantize(model, bits=4, recipe={"re:.*": {"bits": 5}})
    with pytest.raises(InvalidArgumentError, match="unknown setting 'bitz'"):
        monoquant.quantize(dict(model.state_dict()), bits=4, recipe={"x": {"bitz": 8}})
    with pytest.raises(InvalidArgumentError, match="method 'gptq'"):
        monoquant.quantize(model, bits=4, recipe={"re:.*": {"method": "gptq"}})
    with pytest.raises(InvalidArgumentError, match="static"):
        monoquant.quantize(model, bits=8, recipe={"re:.*": {"mode": "static"}})
    with pytest.raises(InvalidArgumentError, match="Python API"):
        monoquant.quantize(dict(model.state_dict()), bits=8, recipe={"type:LayerNorm": "float"})
    res = monoquant.quantize(model, bits=8, recipe={"re:^nothing$": "float"}, show_progress=False)
    assert any("matched no layer" in n for n in res.report.notes)


def test_recipe_scheme_setting_gives_asymmetric_weights_per_layer(tmp_path):
    """"scheme" in a rule: asymmetric weights for a weight-only layer, symmetric ones back for another;
    weight-only rules inherit the call's asymmetric weights, other modes keep symmetric weights."""
    model = _bert()
    recipe = {"re:.*attention\\.self\\.query$": {"bits": 4, "group_size": 32, "scheme": "symmetric"},
              "re:.*attention\\.self\\.key$": {"bits": 8, "scheme": "asymmetric"},
              "re:.*attention\\.output\\.dense$": {"bits": 8, "mode": "dynamic"},
              "re:.*intermediate\\.dense$": {"bits": 8}}
    res = monoquant.quantize(model, bits=4, weight_only=True, group_size=64, scheme="asymmetric", recipe=recipe,
                             show_progress=False)
    s = _schemes(res.model)
    assert s["encoder.layer.0.attention.self.query"] == "W4A16-g32"
    assert s["encoder.layer.0.attention.self.key"] == "W8A16-asym"
    assert s["encoder.layer.0.attention.output.dense"] == "W8A8-dynamic"
    assert s["encoder.layer.0.intermediate.dense"] == "W8A16-asym"   # weight-only: the call's scheme
    assert s["encoder.layer.0.output.dense"] == "W4A16-g64-asym"      # no rule
    res.save(tmp_path / "m")
    back = monoquant.load(tmp_path / "m")
    assert _schemes(back) == s
    ids = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(back(input_ids=ids).last_hidden_state, res.model(input_ids=ids).last_hidden_state)
    with pytest.raises(InvalidArgumentError, match="scheme 'asymmetric' applies to weight-only"):
        monoquant.quantize(model, bits=8, dynamic=True, recipe={"re:.*query$": {"bits": 8, "scheme": "asymmetric"}},
                           show_progress=False)
    with pytest.raises(InvalidArgumentError, match="scheme must be"):
        monoquant.quantize(model, bits=8, weight_only=True, recipe={"re:.*query$": {"scheme": "asym"}},
                           show_progress=False)
    with pytest.raises(InvalidArgumentError, match="scheme applies to bits 8 and 4"):
        monoquant.quantize(model, bits=8, weight_only=True, recipe={"re:.*query$": {"bits": 16, "scheme": "symmetric"}},
                           show_progress=False)
