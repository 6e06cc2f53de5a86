"""`monoquant quantize DIR --method gptq|awq --calibration-data FILE` (and --smoothquant, --static
from data): the binary hands the run to the Python API (src/cli/model_run.cpp ->
monoquant.cli_runner). The oracle is the Python API itself on the same model directory and the
same batches: the files must hold the same tensors, bit for bit. Bad flags and bad data fail
with a named problem, the binary's exit code, and nothing written."""

import json
import os
import subprocess
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import monoquant

CONFIG = dict(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
              max_position_embeddings=32, initializer_range=0.1)
# A recipe with --method gptq: int4 g32 attention, the output projections kept to round-to-nearest.
RECIPE = {"re:.*attention\\.self\\.": {"bits": 4, "group_size": 32},
          "re:.*output\\.dense$": {"method": "rtn"},
          "type:Embedding": "float"}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**CONFIG)).eval().save_pretrained(d)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, CONFIG["vocab_size"], (20, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[3, 8:] = 0
    save_file({"input_ids": ids, "attention_mask": mask}, str(d / "calib.safetensors"))
    torch.save({"input_ids": ids, "attention_mask": mask}, str(d / "calib.pt"))
    (d / "recipe.json").write_text(json.dumps(RECIPE))
    return d


def run(cli, *args, env=None):
    e = dict(os.environ, MONOQUANT_NO_PROGRESS="1", CI="1", **(env or {}))
    return subprocess.run([cli, *map(str, args)], capture_output=True, text=True, timeout=600, env=e)


def api_file(bert_dir, tmp_path, batch_size=8, **kw):
    batches = monoquant.tokenized_batches(bert_dir / "calib.safetensors", batch_size)
    out = tmp_path / "api.safetensors"
    monoquant.quantize(str(bert_dir), calibration_data=batches, show_progress=False, **kw).save(str(out))
    return load_file(str(out))


def assert_same_tensors(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("flags,kw", [
    (["--bits", "4", "--method", "gptq"], dict(bits=4, method="gptq")),
    (["--bits", "4", "--method", "gptq", "--act-order", "--scheme", "asymmetric", "--group-size", "32"],
     dict(bits=4, method="gptq", act_order=True, scheme="asymmetric", group_size=32)),
    (["--bits", "4", "--method", "awq"], dict(bits=4, method="awq")),
    (["--bits", "8", "--static", "--smoothquant", "0.5"], dict(bits=8, static=True, smoothquant=0.5)),
    (["--bits", "8", "--dynamic", "--method", "gptq"], dict(bits=8, dynamic=True, method="gptq")),
    (["--bits", "8"], dict(bits=8)),  # --calibration-data alone: static ranges from the data
    (["--bits", "8", "--dynamic", "--method", "gptq", "--recipe", "RECIPE"],
     dict(bits=8, dynamic=True, method="gptq", recipe=RECIPE)),
])
def test_cli_equals_the_python_api(cli, bert_dir, tmp_path, flags, kw):
    out = tmp_path / "cli.safetensors"
    flags = [str(bert_dir / "recipe.json") if f == "RECIPE" else f for f in flags]
    r = run(cli, "quantize", bert_dir, "-o", out, "--calibration-data", bert_dir / "calib.safetensors",
            "--quiet", *flags)
    assert r.returncode == 0, r.stderr
    cli_tensors = load_file(str(out))
    assert_same_tensors(cli_tensors, api_file(bert_dir, tmp_path, **kw))
    # Something was quantized: int codes are in the file.
    assert any(t.dtype in (torch.int8, torch.int32, torch.uint8) and k.endswith(("weight", "weight_packed"))
               for k, t in cli_tensors.items())


def test_directory_output_loads_in_transformers_and_monoquant(cli, bert_dir, tmp_path):
    out = tmp_path / "gptq_dir"
    r = run(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--method", "gptq", "--calibration-data",
            bert_dir / "calib.pt", "--calibration-batch-size", "5", "--calibration-samples", "15", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["config"]["method"] == "gptq" and report["totals"]["bytes_after"] < report["totals"]["bytes_before"]
    assert {"layers", "warnings", "notes"} <= set(report) and any(row["quantized"] for row in report["layers"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "compressed-tensors"
    ids = load_file(str(bert_dir / "calib.safetensors"))["input_ids"][:4]
    ref = transformers.BertModel.from_pretrained(str(bert_dir)).eval()
    q = monoquant.load(str(out))
    with torch.no_grad():
        want, got = ref(input_ids=ids).last_hidden_state, q(input_ids=ids).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(want.flatten(), got.flatten(), dim=0)
    assert cos > 0.98, float(cos)
    # The same samples in other batches give the same file as the API with those batches.
    batches = monoquant.tokenized_batches(bert_dir / "calib.pt", 5, max_samples=15)
    assert len(batches) == 3 and batches[-1]["input_ids"].shape[0] == 5
    api = tmp_path / "api.safetensors"
    monoquant.quantize(str(bert_dir), bits=4, method="gptq", calibration_data=batches,
                       show_progress=False).save(str(api))
    assert_same_tensors(load_file(str(out / "model.safetensors")), load_file(str(api)))


@pytest.mark.parametrize("flags,code,words", [
    (["--bits", "4", "--method", "gptq"], 3, "--calibration-data FILE"),                       # no data
    (["--bits", "4", "--act-order", "--calibration-data", "CALIB"], 3, "--act-order applies to --method gptq"),
    (["--bits", "4", "--method", "gptq", "--calibration-data", "CALIB", "--dry-run"], 3, "--dry-run"),
    (["--bits", "4", "--method", "gptq", "--calibration-data", "CALIB", "--override", "re:.*=8"], 3, "--override"),
    (["--bits", "4", "--method", "gptq", "--calibration-data", "missing.safetensors"], 5, "no such file"),
    (["--bits", "4", "--method", "gptq", "--calibration-data", "CALIB", "--format", "pt"], 3, "--format"),
    (["--bits", "4", "--method", "rtn", "--smoothquant", "0.5", "--weight-only", "--calibration-data", "CALIB"],
     3, "smoothquant"),                                                                         # the API's own check
    (["--bits", "4", "--method", "sparsegpt"], 2, "method"),                                    # not a choice
])
def test_bad_flags_fail_with_a_named_problem_and_write_nothing(cli, bert_dir, tmp_path, flags, code, words):
    out = tmp_path / "out.safetensors"
    flags = [str(bert_dir / "calib.safetensors") if f == "CALIB" else f for f in flags]
    r = run(cli, "quantize", bert_dir, "-o", out, *flags)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert words in r.stderr, r.stderr
    assert not out.exists()


def test_bad_inputs_and_data(cli, bert_dir, tmp_path):
    out = tmp_path / "out.safetensors"
    # A bare checkpoint names no architecture to run.
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(4, 4)}, str(bare))
    r = run(cli, "quantize", bare, "-o", out, "--method", "gptq", "--calibration-data", bert_dir / "calib.safetensors")
    assert r.returncode == 3 and "config.json" in r.stderr, r.stderr
    # Rows that do not line up, tensors the model takes no argument for, a corrupt file.
    uneven = tmp_path / "uneven.safetensors"
    save_file({"input_ids": torch.zeros(4, 8, dtype=torch.long), "attention_mask": torch.ones(3, 8, dtype=torch.long)},
              str(uneven))
    stranger = tmp_path / "stranger.safetensors"
    save_file({"pixel_values": torch.zeros(4, 3, 8, 8)}, str(stranger))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\xff" * 64)
    for data, code, words in [(uneven, 3, "same number of rows"), (stranger, 3, "pixel_values"),
                              (corrupt, 4, "corrupt.safetensors")]:
        r = run(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--method", "gptq", "--calibration-data", data)
        assert r.returncode == code, (data, r.returncode, r.stderr)
        assert words in r.stderr, r.stderr
        assert not out.exists()
    # No Python to run the model with: unsupported, and says how to fix it.
    r = run(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--method", "gptq", "--calibration-data",
            bert_dir / "calib.safetensors", env={"MONOQUANT_PYTHON": str(tmp_path / "no-python")})
    assert r.returncode == 6 and "MONOQUANT_PYTHON" in r.stderr, r.stderr
    assert not out.exists()
    # A Python without monoquant (this one without its site-packages): the same, not a traceback.
    bare_python = tmp_path / "bare-python"
    bare_python.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare_python.chmod(0o755)
    r = run(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--method", "gptq", "--calibration-data",
            bert_dir / "calib.safetensors", env={"MONOQUANT_PYTHON": str(bare_python)})
    assert r.returncode == 6 and "cannot import monoquant" in r.stderr, r.stderr
    assert not out.exists()


def test_strict_turns_warnings_into_exit_8_and_writes_nothing(cli, bert_dir, tmp_path):
    # 20 samples are fewer than GPTQ's 32: a warning, so --strict refuses.
    out = tmp_path / "out.safetensors"
    r = run(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--method", "gptq", "--calibration-data",
            bert_dir / "calib.safetensors", "--strict")
    assert r.returncode == 8, r.stderr
    assert "calibration samples" in r.stderr and not out.exists()


def test_tokenized_batches_checks_its_arguments(bert_dir):
    with pytest.raises(monoquant.InvalidArgumentError, match="batch_size"):
        monoquant.tokenized_batches(bert_dir / "calib.safetensors", 0)
    with pytest.raises(monoquant.InvalidArgumentError, match="max_samples"):
        monoquant.tokenized_batches(bert_dir / "calib.safetensors", 4, max_samples=0)
    b = monoquant.tokenized_batches(bert_dir / "calib.safetensors", 8)
    assert [x["input_ids"].shape[0] for x in b] == [8, 8, 4]
    full = load_file(str(bert_dir / "calib.safetensors"))
    assert torch.equal(torch.cat([x["attention_mask"] for x in b]), full["attention_mask"])


def test_tokenized_batches_cut_the_padding_beyond_each_batch(tmp_path):
    # Rows 0-3 attend to 5 positions at most, rows 4-5 to all 9: the first batch of 4 is cut to 5 columns
    # (input_ids, attention_mask, token_type_ids alike), the second keeps 9; per-sample tensors stay whole.
    ids = torch.arange(6 * 9).reshape(6, 9)
    mask = torch.zeros(6, 9, dtype=torch.long)
    for r, n in enumerate([3, 5, 2, 4, 9, 7]):
        mask[r, :n] = 1
    labels = torch.arange(6)
    path = tmp_path / "padded.safetensors"
    save_file({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels},
              str(path))
    a, b = monoquant.tokenized_batches(path, 4)
    assert a["input_ids"].shape == a["attention_mask"].shape == a["token_type_ids"].shape == (4, 5)
    assert torch.equal(a["input_ids"], ids[:4, :5]) and torch.equal(a["attention_mask"], mask[:4, :5])
    assert b["input_ids"].shape == (2, 9) and torch.equal(b["labels"], labels[4:])
    assert torch.equal(a["labels"], labels[:4])
    # Left padding: the last column is attended, nothing is cut.
    left = torch.flip(mask, [1])
    save_file({"input_ids": ids, "attention_mask": left}, str(path))
    assert monoquant.tokenized_batches(path, 4)[0]["input_ids"].shape == (4, 9)
