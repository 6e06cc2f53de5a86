"""Quantized checkpoints in the compressed-tensors format, decompressed by the
compressed-tensors package (PyPI) and by monoquant: the same float weights.

Tolerance: none. Both compute (q - zero_point) * scale from the same stored
codes and scales; for fp32 scales the products are identical floats. With
bf16/fp16 scales compressed-tensors multiplies in the scale dtype (torch
rounds the fp32 product to it), so monoquant's fp32 result rounded to that
dtype is compared, again bit for bit."""

import json
import struct

import pytest
import torch

import compressed_tensors as ct
import monoquant
import safetensors.torch as safetensors_torch

from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.quantization import QuantizationConfig

from monoquant import io as mqio


def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(64, 256, generator=g),           # K multiple of the group
        "a.bias": torch.randn(64, generator=g),
        "b.weight": torch.randn(24, 200, generator=g) * 3,       # K = 200: groups of 40, 25 int32 words
        "c.weight": torch.randn(48, 37, generator=g),            # odd K, W8A8
        "d.weight": torch.randn(16, 128, generator=g).to(torch.bfloat16),  # bf16 scales
        "e.weight": torch.randn(20, 96, generator=g) + 0.5,      # asymmetric int4
        "f.weight": torch.randn(8, 40, generator=g),             # w8a16, pack 8-bit
        "norm.weight": torch.ones(64),
    }


PLAN = {"a.weight": ("w4a16", 128), "b.weight": ("w4a16", 40), "c.weight": "w8a8", "d.weight": ("w4a16", 64),
        "e.weight": ("w4a16", 32, False), "f.weight": ("w8a16", 8)}


def ct_decompress(state, config, module):
    cfg = QuantizationConfig.model_validate(config)
    for scheme in cfg.config_groups.values():
        if module in scheme.targets:
            fmt = scheme.format or cfg.format
            compressor = BaseCompressor.get_value_from_registry(fmt)
            local = {k[len(module) + 1:]: v for k, v in state.items() if k.startswith(module + ".")}
            return compressor.decompress(local, scheme)["weight"]
    raise AssertionError(f"{module} matches no group")


@pytest.mark.parametrize("as_directory", [False, True])
def test_compressed_tensors_package_decompresses_to_monoquant_weights(tmp_path, as_directory):
    w = weights()
    path = tmp_path / ("model" if as_directory else "model.safetensors")
    mqio.save_quantized(w, path, PLAN)
    if as_directory:
        config = json.loads((path / "config.json").read_text())["quantization_config"]
        state = safetensors_torch.load_file(str(path / "model.safetensors"))
        meta = mqio.load_metadata(path)
        assert "quantization_config" not in meta
    else:
        state = safetensors_torch.load_file(str(path))
        meta = mqio.load_metadata(path)
        config = json.loads(meta["quantization_config"])
    assert meta["format"] == "pt"
    assert json.loads(meta["monoquant"])["tensors"]["a.weight"]["bits"] == 4
    assert config["quant_method"] == "compressed-tensors" and config["quantization_status"] == "compressed"
    assert config["format"] == "mixed-precision"
    ours = mqio.load_quantized(path)

    # Layout facts of the format.
    assert state["a.weight_packed"].dtype == torch.int32 and state["a.weight_packed"].shape == (64, 32)
    assert state["b.weight_packed"].shape == (24, 25) and state["b.weight_scale"].shape == (24, 5)
    assert state["a.weight_shape"].dtype == torch.int64 and state["a.weight_shape"].tolist() == [64, 256]
    assert state["c.weight"].dtype == torch.int8 and state["c.weight_scale"].shape == (48, 1)
    assert state["d.weight_scale"].dtype == torch.bfloat16
    assert "a.weight_zero_point" not in state and state["e.weight_zero_point"].shape == (3, 3)
    assert torch.equal(state["a.bias"], w["a.bias"]) and torch.equal(state["norm.weight"], w["norm.weight"])

    for module in ["a", "b", "c", "d", "e", "f"]:
        ref = ct_decompress(state, config, module)
        mine = ours[f"{module}.weight"]
        assert ref.shape == mine.shape
        assert torch.equal(mine.to(ref.dtype), ref), module
        # and both are a faithful quantization of the original
        orig = w[f"{module}.weight"].float()
        scale = state[f"{module}.weight_scale"].float()
        assert (mine - orig).abs().max() <= scale.max() * 0.5 + 1e-6, module


def test_pt_output_has_the_same_logical_content(tmp_path):
    w = weights()
    mqio.save_quantized(w, tmp_path / "q.safetensors", PLAN)
    mqio.save_quantized(w, tmp_path / "q.pt", PLAN)
    st = safetensors_torch.load_file(str(tmp_path / "q.safetensors"))
    pt = torch.load(tmp_path / "q.pt", weights_only=True)
    meta = pt.pop("__metadata__")
    assert meta == mqio.load_metadata(tmp_path / "q.safetensors")
    assert set(pt) == set(st) and all(torch.equal(pt[k], st[k]) for k in st)
    config = json.loads(meta["quantization_config"])
    a, b = mqio.load_quantized(tmp_path / "q.pt"), mqio.load_quantized(tmp_path / "q.safetensors")
    for module in ["a", "c", "e"]:
        assert torch.equal(a[f"{module}.weight"], b[f"{module}.weight"])
        assert torch.equal(ct_decompress(pt, config, module), a[f"{module}.weight"].to(torch.float32))


def test_pack_layout_matches_documented_test_vectors(tmp_path):
    # One row of 8 values whose symmetric int4 codes are 0..7 (scale = 1):
    # word 0xFEDCBA98 per the compressed-tensors pack_to_int32 layout.
    x = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7.0]])
    path = tmp_path / "v.safetensors"
    mqio.save_quantized({"l.weight": x}, path, {"l.weight": ("w4a16", 8)})
    st = safetensors_torch.load_file(str(path))
    assert st["l.weight_packed"].tolist() == [[-19088744]]
    assert st["l.weight_scale"].item() == 1.0


def test_plan_errors_are_clear(tmp_path):
    from monoquant import InvalidArgumentError
    with pytest.raises(InvalidArgumentError, match="not an input"):
        mqio.save_quantized({"a.weight": torch.ones(2, 2)}, tmp_path / "x.safetensors", {"zzz.weight": "w8a8"})
    with pytest.raises(InvalidArgumentError, match="2-D"):
        mqio.save_quantized({"a.weight": torch.ones(2)}, tmp_path / "x.safetensors", {"a.weight": "w8a8"})
    with pytest.raises(InvalidArgumentError, match="unknown quantization method"):
        mqio.save_quantized({"a.weight": torch.ones(2, 2)}, tmp_path / "x.safetensors", {"a.weight": "w3"})
    # compressed-tensors cannot dequantize ragged groups: refuse to write them.
    with pytest.raises(InvalidArgumentError, match="not a multiple of group_size"):
        mqio.save_quantized({"a.weight": torch.ones(2, 200)}, tmp_path / "x.safetensors", {"a.weight": ("w4a16", 128)})
    mqio.save_quantized({"a.weight": torch.ones(2, 201)}, tmp_path / "y.safetensors", {"a.weight": ("w4a16", -1)})
    assert mqio.load_quantized(tmp_path / "y.safetensors")["a.weight"].shape == (2, 201)
    assert not (tmp_path / "x.safetensors").exists()


def test_kept_fp8_and_unsigned_pass_through_and_half_casts_refuse_nan(tmp_path):
    # Holes closed: kept tensors of dtypes the core does not compute with are written bit for bit,
    # and the fp16 / bf16 plans follow the documented policy (NaN and Inf are errors).
    d = {"a.weight": torch.randn(4, 8), "f8": torch.randn(3).to(torch.float8_e4m3fn),
         "u": torch.tensor([1, 2, 65535], dtype=torch.int32).to(torch.uint16)}
    path = tmp_path / "m.safetensors"
    mqio.save_quantized(d, path, {"a.weight": "w8a8"})
    back = safetensors_torch.load_file(str(path))
    assert back["f8"].dtype == torch.float8_e4m3fn
    assert torch.equal(back["f8"].view(torch.uint8), d["f8"].view(torch.uint8))
    assert back["u"].dtype == torch.uint16 and torch.equal(back["u"].to(torch.int32), d["u"].to(torch.int32))
    for bad in (float("nan"), float("inf")):
        d["a.weight"][1, 2] = bad
        for method in ("fp16", "bf16"):
            with pytest.raises(monoquant.InvalidArgumentError, match="a.weight.*(NaN|Inf)"):
                mqio.save_quantized(d, tmp_path / "x.safetensors", {"a.weight": method})
    assert not (tmp_path / "x.safetensors").exists()
