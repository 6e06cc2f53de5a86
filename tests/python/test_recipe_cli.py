"""`monoquant quantize --recipe FILE`: the same recipe through the CLI and through the Python API gives
identical bytes (one resolver, pipeline/recipe.hpp); the recipe is recorded in the file and shown by
`monoquant inspect`; the mixed directory loads in transformers with monoquant's outputs; bad recipes fail
with a named problem and write nothing."""

import json
import os
import subprocess

import pytest
import torch
import transformers

import monoquant

CONFIG = dict(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
              max_position_embeddings=32, initializer_range=0.1)

# Mixed: W4A16 g32 attention, W8A8 dynamic MLP output, one layer float, the call's W4A16 g64 elsewhere.
RECIPE = {
    "encoder.layer.1.attention.self.key": "float",
    "re:.*attention\\.self\\.": {"bits": 4, "group_size": 32},
    "re:.*output\\.dense$": {"bits": 8, "mode": "dynamic"},
    "type:Embedding": "float",
}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**CONFIG)).eval().save_pretrained(d)
    (d / "recipe.json").write_text(json.dumps(RECIPE))
    return d


def run(cli, *args):
    env = dict(os.environ, MONOQUANT_NO_PROGRESS="1", CI="1")
    return subprocess.run([cli, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_cli_and_api_write_identical_bytes(cli, bert_dir, tmp_path):
    r = run(cli, "quantize", bert_dir, "-o", tmp_path / "cli.safetensors", "--bits", "4", "--group-size", "64",
            "--recipe", bert_dir / "recipe.json", "--quiet")
    assert r.returncode == 0, r.stderr
    # from the directory (an nn.Module built from config.json) and from the bare weights file (a state dict)
    monoquant.quantize(bert_dir, bits=4, group_size=64, recipe=RECIPE, show_progress=False).save(
        tmp_path / "module.safetensors")
    monoquant.quantize(bert_dir / "model.safetensors", bits=4, group_size=64, recipe=RECIPE,
                       show_progress=False).save(tmp_path / "state_dict.safetensors")
    cli_bytes = (tmp_path / "cli.safetensors").read_bytes()
    assert (tmp_path / "module.safetensors").read_bytes() == cli_bytes
    assert (tmp_path / "state_dict.safetensors").read_bytes() == cli_bytes


def test_recipe_recorded_and_inspected(cli, bert_dir, tmp_path):
    out = tmp_path / "mixed"
    r = run(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--group-size", "64", "--recipe",
            bert_dir / "recipe.json", "--quiet")
    assert r.returncode == 0, r.stderr
    info = json.loads(run(cli, "inspect", out, "--json").stdout)
    assert [rule["match"] for rule in info["recipe"]] == list(RECIPE)
    assert info["recipe"][0]["scheme"] == "float"
    assert info["recipe"][1]["scheme"]["group_size"] == 32
    layers = {l["module"]: l["scheme"] for l in info["quantized_layers"]}
    assert "encoder.layer.1.attention.self.key" not in layers
    assert layers["encoder.layer.0.attention.self.query"] == "W4A16-g32"
    assert layers["encoder.layer.0.output.dense"] == "W8A8-dynamic"
    assert layers["encoder.layer.0.intermediate.dense"] == "W4A16-g64"
    text = run(cli, "inspect", out, "--summary").stdout
    assert "recipe (4 rules, the first match wins):" in text
    assert "re:.*output\\.dense$" in text and "W8A8-dynamic" in text
    groups = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"]
    assert len(groups) == 3
    # transformers loads the mixed directory; its outputs match monoquant's
    ids = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = monoquant.load(out)(input_ids=ids).last_hidden_state
        theirs = transformers.AutoModel.from_pretrained(out).eval()(input_ids=ids).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(ours.flatten(1), theirs.flatten(1)).min().item()
    assert cos > 0.999, cos


@pytest.mark.parametrize("text,needle", [
    ("{not json", "not valid JSON"),
    ('["re:.*"]', "JSON object"),
    ('{"re:.*": {"bits": 3}}', "bits must be 4, 7, 8 or 16"),
    ('{"re:.*": {"method": "gptq"}}', "--calibration-data FILE"),  # runs the model: test_cli_model_methods.py
    ('{"type:LayerNorm": "float"}', "Python API"),
    ('{"re:.*intermediate.*": {"bits": 4, "group_size": 48}}', "not a multiple of the group size"),
])
def test_bad_recipes_fail_and_write_nothing(cli, bert_dir, tmp_path, text, needle):
    recipe = tmp_path / "bad.json"
    recipe.write_text(text)
    out = tmp_path / "out.safetensors"
    r = run(cli, "quantize", bert_dir, "-o", out, "--recipe", recipe, "--quiet")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert needle in r.stderr, r.stderr
    assert not out.exists()


def test_missing_recipe_file(cli, bert_dir, tmp_path):
    r = run(cli, "quantize", bert_dir, "-o", tmp_path / "o.safetensors", "--recipe", tmp_path / "none.json")
    assert r.returncode == 5 and "no such file" in r.stderr, r.stderr


def test_inherited_group_size_skips_a_layer_a_given_one_is_an_error(cli, bert_dir, tmp_path):
    """K = 128 (output.dense) is not a multiple of 48: inherited from the call (not given) it keeps the layer
    float in both faces; given in the rule it is an error in both."""
    inherit = {"re:.*output\\.dense$": {"bits": 4}}
    recipe = tmp_path / "inherit.json"
    recipe.write_text(json.dumps(inherit))
    r = run(cli, "quantize", bert_dir, "-o", tmp_path / "cli.safetensors", "--bits", "8", "--recipe", recipe,
            "--quiet")
    assert r.returncode == 0, r.stderr
    res = monoquant.quantize(bert_dir / "model.safetensors", bits=8, recipe=inherit, show_progress=False)
    res.save(tmp_path / "api.safetensors")
    assert (tmp_path / "api.safetensors").read_bytes() == (tmp_path / "cli.safetensors").read_bytes()
    mod = monoquant.quantize(bert_dir, bits=8, recipe=inherit, show_progress=False)
    mod.save(tmp_path / "mod.safetensors")
    assert (tmp_path / "mod.safetensors").read_bytes() == (tmp_path / "cli.safetensors").read_bytes()
    given = {"re:.*intermediate\\.dense$": {"bits": 4, "group_size": 48}}
    with pytest.raises(monoquant.errors.InvalidArgumentError, match="group"):
        monoquant.quantize(bert_dir, bits=8, recipe=given, show_progress=False)
