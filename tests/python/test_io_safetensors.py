"""safetensors and model directories against the reference implementation
(safetensors.torch.save_file / load_file)."""

import json
import os
import struct

import pytest
import torch

import safetensors.torch as safetensors_torch

from monoquant import FormatError
from monoquant import io as mqio

ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
              torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16, torch.uint32,
              torch.uint64]


def sample(dtype, shape, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 10).to(dtype)
    if dtype in (torch.uint16, torch.uint32, torch.uint64):
        return torch.randint(0, 60000, shape, generator=g, dtype=torch.int64).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -(2**31)), min(info.max, 2**31 - 1), shape, generator=g, dtype=torch.int64).to(dtype)


def bits_equal(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.numel() == 0:
        return True
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def every_dtype_dict():
    d = {}
    for i, dt in enumerate(ALL_DTYPES):
        d[f"t.{i}.{str(dt)[6:]}"] = sample(dt, (3, 5), i)
    d["scalar"] = torch.tensor(3.5)
    d["empty"] = torch.empty(0, 4)
    d["nan"] = torch.tensor([float("nan"), float("inf"), -0.0])
    return d


def test_reads_reference_files_bit_exactly(tmp_path):
    d = every_dtype_dict()
    path = tmp_path / "ref.safetensors"
    safetensors_torch.save_file(d, str(path), metadata={"format": "pt", "k": "v"})
    got = mqio.load_state_dict(path)
    assert set(got) == set(d)
    for k in d:
        assert bits_equal(got[k], d[k]), k
    assert mqio.load_metadata(path) == {"format": "pt", "k": "v"}


def test_our_files_read_bit_exactly_by_reference(tmp_path):
    d = every_dtype_dict()
    d["view"] = torch.arange(20.0).reshape(4, 5)[1:, ::2]  # non-contiguous input is written contiguous
    path = tmp_path / "ours.safetensors"
    mqio.save_state_dict(d, path, metadata={"note": "x"})
    got = safetensors_torch.load_file(str(path))
    for k in d:
        assert bits_equal(got[k], d[k].contiguous()), k
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    assert n % 8 == 0
    assert header["__metadata__"] == {"format": "pt", "note": "x"}


def test_layout_matches_reference_writer_byte_for_byte(tmp_path):
    d = {f"w{i}": sample(dt, (2, 3), i) for i, dt in enumerate([torch.float32, torch.int8, torch.float64, torch.bfloat16])}
    ref, ours = tmp_path / "ref.safetensors", tmp_path / "ours.safetensors"
    safetensors_torch.save_file(d, str(ref))
    mqio.save_state_dict(d, ours)
    def offsets(p):
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            h = json.loads(f.read(n))
        h.pop("__metadata__", None)
        return {k: v["data_offsets"] for k, v in h.items()}
    assert offsets(ref) == offsets(ours)


def test_reading_is_zero_copy_and_copy_on_write(tmp_path):
    path = tmp_path / "z.safetensors"
    safetensors_torch.save_file({"a": torch.zeros(1024)}, str(path))
    t = mqio.load_state_dict(path)["a"]
    t += 1  # a private mapping: the file must not change
    assert torch.equal(safetensors_torch.load_file(str(path))["a"], torch.zeros(1024))
    again = mqio.load_state_dict(path)["a"]
    assert torch.equal(again, torch.zeros(1024))


def test_tensors_outlive_the_loader(tmp_path):
    path = tmp_path / "life.safetensors"
    safetensors_torch.save_file({"a": torch.arange(10.0)}, str(path))
    t = mqio.load_state_dict(path)["a"]
    import gc
    gc.collect()
    os.remove(path)
    assert torch.equal(t, torch.arange(10.0))


def test_write_is_atomic_on_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(Exception):
        mqio.save_state_dict({"a": torch.zeros(1), "b": object()}, path)
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_hostile_headers_give_format_errors(tmp_path):
    def write(header_bytes, buf=b""):
        p = tmp_path / "h.safetensors"
        p.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + buf)
        return p
    cases = [
        write(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"1234"),          # out of range
        write(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"1234"),
        write(b'{"a":{"dtype":"F32","shape":[99999999999,99999999999],"data_offsets":[0,4]}}', b"1234"),
        write(b'{"a":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}}', b"1234"),
        write(b'{"__metadata__":{"a":{"nested":1}}}'),
        write(b"\xff\xfe{}"),
    ]
    for p in cases:
        with pytest.raises(FormatError, match="h.safetensors"):
            mqio.load_state_dict(p)
    p = tmp_path / "huge.safetensors"
    p.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(FormatError, match="exceeds the limit"):
        mqio.load_state_dict(p)


def test_every_truncation_of_a_small_file_fails_cleanly(tmp_path):
    src = tmp_path / "src.safetensors"
    safetensors_torch.save_file({"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int8)}, str(src))
    data = src.read_bytes()
    p = tmp_path / "t.safetensors"
    for n in range(len(data)):
        p.write_bytes(data[:n])
        with pytest.raises(FormatError):
            mqio.load_state_dict(p)


def test_sharded_directory_round_trip_with_transformers_layout(tmp_path):
    d = {f"layer{i}.weight": sample(torch.float32, (64, 64), i) for i in range(6)}
    d["tiny"] = torch.tensor([1, 2, 3], dtype=torch.int8)
    out = tmp_path / "model"
    mqio.save_state_dict(d, out, max_shard_size=40000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in d.values())
    merged = {}
    for s in shards:
        merged.update(safetensors_torch.load_file(str(out / s)))  # every shard is a valid file on its own
    got = mqio.load_state_dict(out)
    for k in d:
        assert bits_equal(got[k], d[k]) and bits_equal(merged[k], d[k]), k


def test_rewriting_a_directory_removes_stale_weight_files(tmp_path):
    d = {f"w{i}": torch.full((1024,), float(i)) for i in range(4)}
    (tmp_path / "config.json").write_text("{}")
    mqio.save_state_dict(d, tmp_path, max_shard_size=8192)
    assert (tmp_path / "model.safetensors.index.json").exists()
    mqio.save_state_dict({"w0": torch.zeros(2)}, tmp_path)  # now small: one file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert torch.equal(mqio.load_state_dict(tmp_path)["w0"], torch.zeros(2))
    mqio.save_state_dict(d, tmp_path, max_shard_size=8192)
    assert not (tmp_path / "model.safetensors").exists()
    assert set(mqio.load_state_dict(tmp_path)) == set(d)


def test_sharded_directory_written_by_reference_tools(tmp_path):
    d = {f"w{i}": sample(torch.bfloat16, (8, 8), i) for i in range(4)}
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    safetensors_torch.save_file({"w0": d["w0"], "w1": d["w1"]}, str(tmp_path / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    safetensors_torch.save_file({"w2": d["w2"], "w3": d["w3"]}, str(tmp_path / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    wm = {"w0": "model-00001-of-00002.safetensors", "w1": "model-00001-of-00002.safetensors",
          "w2": "model-00002-of-00002.safetensors", "w3": "model-00002-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 256}, "weight_map": wm}))
    got = mqio.load_state_dict(tmp_path)
    for k in d:
        assert bits_equal(got[k], d[k])
    wm["w3"] = "model-00001-of-00002.safetensors"  # index disagrees with the shards
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    with pytest.raises(FormatError):
        mqio.load_state_dict(tmp_path)
    wm["w3"] = "../../etc/passwd"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    with pytest.raises(FormatError, match="invalid shard name"):
        mqio.load_state_dict(tmp_path)
