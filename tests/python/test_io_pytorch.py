"""torch.save archives: files written by torch.save read bit-exactly; our
files read by torch.load(weights_only=True); hostile pickles refused by name
without executing anything."""

import io
import os
import pickle
import struct
import zipfile

import pytest
import torch

from monoquant import FormatError, UnsupportedError
from monoquant import io as mqio

from test_io_safetensors import ALL_DTYPES, bits_equal, sample


def test_reads_torch_save_every_dtype(tmp_path):
    d = {str(dt)[6:]: sample(dt, (4, 3), i) for i, dt in enumerate(ALL_DTYPES)}
    d["complex64"] = torch.randn(3, dtype=torch.complex64)
    d["complex128"] = torch.randn(3, dtype=torch.complex128)
    d["scalar"] = torch.tensor(7, dtype=torch.int64)
    d["empty"] = torch.empty(0, 3)
    path = tmp_path / "all.pt"
    torch.save(d, path)
    got = mqio.load_state_dict(path)
    assert set(got) == set(d)
    for k in d:
        assert bits_equal(got[k], d[k]), k


def test_views_offsets_strides_and_shared_storage(tmp_path):
    base = torch.arange(60.0).reshape(6, 10)
    d = {
        "base": base,
        "rows": base[2:4],             # storage offset
        "cols": base[:, 1::3],         # strides
        "t": base.t(),                 # transposed
        "elem": base[5, 7],            # 0-d view
        "expand": torch.arange(3.0)[None].expand(4, 3),  # stride 0
    }
    path = tmp_path / "views.pt"
    torch.save(d, path)
    got = mqio.load_state_dict(path)
    for k in d:
        assert torch.equal(got[k], d[k]), k
        assert got[k].stride() == d[k].stride(), k
    # Views keep sharing one storage, as torch.load gives them.
    assert got["rows"].untyped_storage().data_ptr() == got["base"].untyped_storage().data_ptr()
    got["base"][2, 0] = -1.0
    assert got["rows"][0, 0].item() == -1.0


def test_nested_containers_and_parameters(tmp_path):
    lin = torch.nn.Linear(4, 3)
    obj = {"model": lin.state_dict(), "epoch": 3, "lr": 0.5, "name": "run", "flags": [True, None], "pair": (1, 2),
           "param": torch.nn.Parameter(torch.ones(2)), "dtype": torch.float16}
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    got = mqio.load_checkpoint(path)
    assert got["epoch"] == 3 and got["lr"] == 0.5 and got["name"] == "run"
    assert got["flags"] == [True, None] and got["pair"] == (1, 2) and got["dtype"] is torch.float16
    assert isinstance(got["param"], torch.nn.Parameter) and torch.equal(got["param"], obj["param"])
    for k, v in lin.state_dict().items():
        assert torch.equal(got["model"][k], v)
    flat = mqio.load_state_dict(path)
    assert torch.equal(flat["model.weight"], lin.weight)


def test_any_archive_prefix_and_zip64(tmp_path):
    path = tmp_path / "weird_name.pth"
    torch.save({"a": torch.arange(5)}, path)
    assert zipfile.ZipFile(path).namelist()[0].startswith("weird_name/")
    assert torch.equal(mqio.load_state_dict(path)["a"], torch.arange(5))
    # Re-pack with Python's zipfile forcing zip64 records (stored, as torch does).
    src = zipfile.ZipFile(path)
    z64 = tmp_path / "z64.pt"
    with zipfile.ZipFile(z64, "w", compression=zipfile.ZIP_STORED) as out:
        for n in src.namelist():
            with out.open(zipfile.ZipInfo(n), "w", force_zip64=True) as f:
                f.write(src.read(n))
    assert torch.equal(mqio.load_state_dict(z64)["a"], torch.arange(5))


def test_our_pt_reads_with_weights_only(tmp_path):
    d = {str(dt)[6:]: sample(dt, (2, 3), i) for i, dt in enumerate(ALL_DTYPES)}
    d["scalar"] = torch.tensor(1.25)
    d["empty"] = torch.empty(0, 2, dtype=torch.float16)
    d["strided"] = torch.arange(12.0).reshape(3, 4)[:, 1]
    path = tmp_path / "ours.pt"
    mqio.save_state_dict(d, path)
    got = torch.load(path, weights_only=True)
    assert set(got) == set(d)
    for k in d:
        assert bits_equal(got[k], d[k].contiguous()), k
    mm = torch.load(path, weights_only=True, mmap=True)
    assert bits_equal(mm["float32"], d["float32"])
    again = mqio.load_state_dict(path)
    for k in d:
        assert bits_equal(again[k], d[k].contiguous()), k


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def write_archive(path, pkl, storages=None):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for k, v in (storages or {}).items():
            z.writestr(f"archive/data/{k}", v)
        z.writestr("archive/version", "3\n")


def refused(tmp_path, pkl, name):
    p = tmp_path / "evil.pt"
    write_archive(p, pkl)
    with pytest.raises(FormatError, match=f"refused global '{name}'"):
        mqio.load_checkpoint(p)


def test_malicious_pickles_are_refused_by_name(tmp_path):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    refused(tmp_path, pickle.dumps(Evil(os.system, cmd), protocol=2), "posix.system")
    refused(tmp_path, pickle.dumps({"w": [1, {"x": Evil(os.system, cmd)}]}, protocol=2), "posix.system")
    refused(tmp_path, pickle.dumps(Evil(eval, "1+1"), protocol=2), r"(__builtin__|builtins)\.eval")
    refused(tmp_path, pickle.dumps(Evil(exec, "x=1"), protocol=2), r"(__builtin__|builtins)\.exec")
    refused(tmp_path, pickle.dumps(Evil(os.system, cmd), protocol=4), "posix.system")  # STACK_GLOBAL
    refused(tmp_path, b"(X\x02\x00\x00\x00lsios\nsystem\n.", "os.system")  # INST
    refused(tmp_path, b"\x80\x02(cbuiltins\nexec\nX\x01\x00\x00\x00xo.", "builtins.exec")  # OBJ
    refused(tmp_path, b"\x80\x02ctorch\nload\nX\x01\x00\x00\x00x\x85R.", "torch.load")  # unknown torch global
    refused(tmp_path, b"\x80\x02ctorch._C\n_nn\n.", "torch._C._nn")
    assert not marker.exists()


def test_legacy_and_broken_archives(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsupportedError, match="legacy"):
        mqio.load_state_dict(legacy)
    good = tmp_path / "good.pt"
    torch.save({"a": torch.arange(4.0), "b": torch.arange(3)}, good)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.pt"
    for n in range(0, len(data), 7):
        trunc.write_bytes(data[:n])
        with pytest.raises((FormatError, UnsupportedError)):
            mqio.load_state_dict(trunc)
    # A tensor that reaches past its storage.
    pkl = (b"\x80\x02}(X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
           b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x02K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRu.")
    p = tmp_path / "oob.pt"
    write_archive(p, pkl, {"0": b"\0" * 16})
    with pytest.raises(FormatError, match="past the end of storage"):
        mqio.load_state_dict(p)
    write_archive(p, pkl, {"0": b"\0" * 12})  # record shorter than declared
    with pytest.raises(FormatError, match="declares 4 elements"):
        mqio.load_state_dict(p)
    # Absurd sizes and strides.
    big = pkl.replace(b"K\x04\x85K\x01\x85", b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f\x85\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f\x85")
    write_archive(p, big, {"0": b"\0" * 16})
    with pytest.raises(FormatError):
        mqio.load_state_dict(p)


def test_cycles_deep_nesting_and_bad_strings(tmp_path):
    p = tmp_path / "c.pt"
    write_archive(p, b"\x80\x02]q\x00h\x00a.")  # a list that contains itself
    with pytest.raises(FormatError, match="cyclic"):
        mqio.load_checkpoint(p)
    write_archive(p, b"\x80\x02" + b"]" * 1000 + b"a" * 999 + b".")  # 1000 nested lists
    with pytest.raises(FormatError, match="nested"):
        mqio.load_checkpoint(p)
    write_archive(p, b"\x80\x02X\x02\x00\x00\x00\xc3\x28.")  # invalid UTF-8 text
    with pytest.raises(FormatError, match="UTF-8"):
        mqio.load_checkpoint(p)
    write_archive(p, b"\x80\x02c\xff\xfe\nsystem\n.")  # non-UTF-8 global name: refused, message stays printable
    with pytest.raises(FormatError, match=r"refused global '\\xff\\xfe\.system'"):
        mqio.load_checkpoint(p)
    # Shared (not cyclic) objects stay shared.
    write_archive(p, b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01X\x01\x00\x00\x00bh\x01u.")
    got = mqio.load_checkpoint(p)
    assert got["a"] is got["b"]
