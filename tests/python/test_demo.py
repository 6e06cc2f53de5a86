"""The bundled main job (python -m monoquant.demo, what scripts/demo.sh runs)
on the real MiniLM: the CLI's INT8 and INT4 directories, their reports
checked against the files' own bytes, loaded back with monoquant.load and
embedding sentences close to the float model."""

import json
import os
from pathlib import Path

import pytest
import safetensors.torch as safetensors_torch
import torch

import monoquant
import monoquant.demo as demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []

    class Sink:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    summary = demo.run(demo.default_model_dir(), out, stream=Sink())
    return summary, "".join(lines), out


def test_both_jobs_ran_and_load_back(demo_run):
    summary, text, out = demo_run
    assert set(summary) == {"int8", "int4"}
    for name, s in summary.items():
        assert s["quantized_modules"] == 37, name  # 6 Linear per layer x 6 layers + the pooler
        assert (Path(s["directory"]) / "config.json").exists()
        assert (Path(s["directory"]) / "tokenizer.json").exists()  # the tokenizer travels with the model
        assert s["speed_vs_fp32"] > 0
    assert summary["int8"]["cosine_mean"] >= 0.995
    assert summary["int4"]["cosine_mean"] >= 0.93
    assert summary["int8"]["cosine_mean"] > summary["int4"]["cosine_mean"]
    assert "monoquant quantize" in text and "cosine to fp32" in text and "summary:" in text


def test_reports_match_the_files(demo_run):
    summary, _, _ = demo_run
    fp32_dir = demo.default_model_dir()
    fp32 = safetensors_torch.load_file(str(fp32_dir / "model.safetensors"))
    for name, s in summary.items():
        t = s["report"]["totals"]
        written = safetensors_torch.load_file(os.path.join(s["directory"], "model.safetensors"))
        assert t["bytes_after"] == sum(v.numel() * v.element_size() for v in written.values())
        assert t["bytes_before"] == sum(v.numel() * v.element_size() for v in fp32.values())
        assert t["compression_ratio"] == pytest.approx(t["bytes_before"] / t["bytes_after"])
        rows = {r["name"]: r for r in s["report"]["tensors"]}
        assert not rows["embeddings.LayerNorm.weight"]["quantized"]
        q = rows["encoder.layer.0.attention.self.query.weight"]
        assert q["quantized"] and q["bytes_before"] == 384 * 384 * 4
        expected = 384 * 384 + 384 * 4 if name == "int8" else 384 * 192 + 384 * 3 * 4
        assert q["bytes_after"] == expected
        cfg = json.loads((Path(s["directory"]) / "config.json").read_text())
        assert cfg["quantization_config"]["quant_method"] == "compressed-tensors"


def test_main_refuses_a_missing_model(tmp_path, capsys):
    assert demo.main([str(tmp_path / "missing")]) == 2
    assert "not a model directory" in capsys.readouterr().err
