"""monoquant.quantize on the real pretrained MiniLM: mean sentence-embedding
cosine to fp32 over 60 held-out sentences (never used for calibration) per
mode, sizes from the bytes of the saved files, and a fresh process that loads
each saved directory and computes bit-identical embeddings.

Bounds are the issue's acceptance figures; the measured values are in the
README's table (bench/minilm_modes.py prints them)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import monoquant as mq
import minilm

MODES = {
    # name: (quantize kwargs, minimum mean cosine)
    "int8_dynamic": (dict(bits=8, dynamic=True), 0.995),
    "int8_static": (dict(bits=8, calibration_data="calib"), 0.99),
    "fp16": (dict(bits=16), 0.9999),
    "int4_g128": (dict(bits=4, weight_only=True, group_size=128), 0.95),
}


@pytest.fixture(scope="module")
def setup():
    tok, model = minilm.load()
    held = minilm.batches(tok, minilm.HELD_OUT)
    calib = minilm.batches(tok, minilm.calibration_sentences(64))
    return tok, model, held, calib, minilm.embed(model, held)


@pytest.fixture(scope="module")
def results(setup):
    _, model, _, calib, _ = setup
    out = {}
    for name, (kwargs, _) in MODES.items():
        kw = dict(kwargs)
        if kw.get("calibration_data") == "calib":
            kw["calibration_data"] = calib
        out[name] = mq.quantize(model, **kw)
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_minilm_embedding_cosine(setup, results, mode):
    _, model, held, _, ref = setup
    r = results[mode]
    cos = minilm.mean_cosine(minilm.embed(r.model, held), ref)
    assert cos >= MODES[mode][1], f"{mode}: mean cosine {cos:.5f}"
    assert cos < 1.0 or mode == "fp16"  # quantized for real
    # Every encoder Linear is quantized; embeddings and LayerNorms stay float.
    t = r.report.totals()
    assert t["layers_quantized"] == 6 * 6 + 1  # 6 Linear per layer + the pooler
    assert all(not layer.quantized for layer in r.report.layers if "LayerNorm" in layer.name or "embeddings" in layer.name)


def test_minilm_sizes_are_real_bytes_and_fresh_process_matches(setup, results, tmp_path):
    _, model, held, _, _ = setup
    torch.save(held, tmp_path / "held.pt")
    want = {}
    for mode, r in results.items():
        d = tmp_path / mode
        r.save(d)
        on_disk = os.path.getsize(d / "model.safetensors")
        header = int.from_bytes(open(d / "model.safetensors", "rb").read(8), "little")
        assert on_disk - 8 - header == r.report.total_bytes_after  # the report counts what is written
        want[mode] = minilm.embed(r.model, held)
    fp32 = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert results["int8_dynamic"].report.total_bytes_before == fp32
    assert results["int4_g128"].report.total_bytes_after < results["int8_dynamic"].report.total_bytes_after \
        < results["fp16"].report.total_bytes_after < fp32
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import monoquant as mq, minilm
        held = torch.load({str(tmp_path / 'held.pt')!r})
        out = {{}}
        for mode in {list(results)!r}:
            m = mq.load({str(tmp_path)!r} + "/" + mode)
            assert any(isinstance(x, mq.QuantLinear) for x in m.modules()), mode
            out[mode] = minilm.embed(m, held)
        torch.save(out, {str(tmp_path / 'out.pt')!r})
    """)
    env = dict(os.environ, MONOQUANT_NO_PROGRESS="1")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=600)
    got = torch.load(tmp_path / "out.pt")
    for mode in results:
        assert torch.equal(got[mode], want[mode]), mode
