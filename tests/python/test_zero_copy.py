"""Memory ownership across the Python boundary: inputs are read in place
through DLPack, results are torch tensors that own the C++ buffers."""

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch

import monoquant


def _storage_ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _ranges_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    sa, sb = a.untyped_storage(), b.untyped_storage()
    a0, b0 = sa.data_ptr(), sb.data_ptr()
    return a0 < b0 + sb.nbytes() and b0 < a0 + sa.nbytes()


@pytest.mark.parametrize("kwargs", [dict(bits=8), dict(bits=8, scheme="asymmetric"), dict(bits=4),
                                    dict(bits=16), dict(bits=16, dtype=torch.bfloat16)],
                         ids=["i8", "i8-asym", "i4", "f16", "bf16"])
def test_results_do_not_alias_input_or_each_other(kwargs):
    x = torch.randn(32, 64)
    qt = monoquant.quantize_tensor(x, **kwargs)
    parts = [p for p in (qt.codes, qt.scale, qt.zero_point) if p is not None]
    y = qt.dequantize()
    for p in parts + [y]:
        assert not _ranges_overlap(p, x)
    for i, p in enumerate(parts):
        for q in parts[i + 1:] + [y]:
            if p.numel() and q.numel():
                assert not _ranges_overlap(p, q)
    # two quantizations of the same input own separate buffers
    again = monoquant.quantize_tensor(x, **kwargs)
    assert _storage_ptr(again.codes) != _storage_ptr(qt.codes)


@pytest.mark.parametrize("bits", [4, 8, 16])
def test_results_outlive_quantized_tensor_and_input(bits):
    x = torch.randn(64, 256)
    qt = monoquant.quantize_tensor(x, bits=bits, scheme="asymmetric" if bits != 16 else "symmetric")
    expected_codes = qt.codes.clone()
    expected_y = qt.dequantize().clone()
    codes, scale, y = qt.codes, qt.scale, qt.dequantize()
    ref = weakref.ref(qt)
    del qt, x
    gc.collect()
    assert ref() is None
    # allocate and free some memory so that freed buffers would be reused
    junk = [torch.randn(64, 256) for _ in range(8)]
    del junk
    gc.collect()
    assert torch.equal(codes, expected_codes)
    assert torch.equal(y, expected_y)
    if scale is not None:
        assert torch.isfinite(scale).all() and (scale > 0).all()
    # and they are ordinary, writable torch tensors
    codes.zero_()
    assert int(codes.float().abs().sum()) == 0
    assert float(y.sum() * 0) == 0.0


def test_writing_codes_does_not_touch_input_or_other_results():
    x = torch.randn(16, 16)
    before = x.clone()
    a = monoquant.quantize_tensor(x)
    b = monoquant.quantize_tensor(x)
    a.codes.fill_(5)
    assert torch.equal(x, before)
    assert not torch.equal(b.codes, a.codes)


def test_views_work_in_place():
    x = torch.randn(128, 256)
    for v in (x, x[:, ::2], x[7:, 3:], x.t()):
        qt = monoquant.quantize_tensor(v, bits=8, granularity="per_tensor")
        ref = monoquant.quantize_tensor(v.contiguous(), bits=8, granularity="per_tensor")
        assert torch.equal(qt.codes, ref.codes) and torch.equal(qt.scale, ref.scale)


_PEAK_SCRIPT = textwrap.dedent(r"""
    import json, os, sys
    import torch, monoquant
    monoquant.set_num_threads(2)
    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def hwm():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

    def extra(fn):
        # reset the peak-RSS counter, then measure how far fn pushes it
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = rss()
        keep = fn()
        peak = hwm()
        del keep
        return peak - base

    n = int(sys.argv[1])
    x = torch.rand(n)  # touched: all its pages are resident
    monoquant.quantize_tensor(x[:1024], bits=8)  # warm up the thread pool
    out = {
        "clone": extra(lambda: x.clone()),
        "int8": extra(lambda: monoquant.quantize_tensor(x, bits=8, granularity="per_tensor")),
        "int4": extra(lambda: monoquant.quantize_tensor(x.view(-1, 4096), bits=4)),
        "fp16": extra(lambda: monoquant.quantize_tensor(x, bits=16)),
    }
    print(json.dumps(out))
""")


def test_no_hidden_input_copy():
    """Quantizing a contiguous float32 tensor must not copy it: the peak
    memory grows by about the size of the results, not by the input's size.
    A clone() in the same process shows that the measurement sees copies."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("cannot reset the peak RSS counter here")
    n = 32 * 1024 * 1024  # 128 MiB of float32
    mib = 1024 * 1024
    r = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json
    m = json.loads(r.stdout.strip().splitlines()[-1])
    slack = 40 * mib
    assert m["clone"] >= 4 * n * 0.9, m  # the method sees a copy
    assert m["int8"] < n + slack, m       # codes are n bytes
    assert m["int4"] < n // 2 + slack, m  # codes are n / 2 bytes
    assert m["fp16"] < 2 * n + slack, m   # codes are 2n bytes


def _misaligned(src: torch.Tensor) -> torch.Tensor:
    """A copy of src whose data starts one byte past an aligned address, as a
    tensor over a bytearray (e.g. a view into a file or a network buffer)."""
    nbytes = src.numel() * src.element_size()
    buf = bytearray(nbytes + 1)
    t = torch.frombuffer(buf, dtype=src.dtype, count=src.numel(), offset=1).view(src.shape)
    t.copy_(src)
    assert t.data_ptr() % 2 == 1
    return t


@pytest.mark.parametrize("kwargs", [dict(bits=8), dict(bits=8, scheme="asymmetric", granularity="per_tensor"),
                                    dict(bits=4, scheme="asymmetric", group_size=32), dict(bits=16),
                                    dict(bits=16, dtype=torch.bfloat16)],
                         ids=["i8", "i8-asym-tensor", "i4-asym", "f16", "bf16"])
def test_unaligned_input(kwargs):
    src = torch.randn(12, 100)
    x = _misaligned(src)
    a, b = monoquant.quantize_tensor(x, **kwargs), monoquant.quantize_tensor(src, **kwargs)
    assert torch.equal(a.codes.view(torch.uint8), b.codes.view(torch.uint8))
    if b.scale is not None:
        assert torch.equal(a.scale, b.scale)
    assert torch.equal(x, src)  # read, not written
    y = b.dequantize()
    assert monoquant.error_metrics(x, y) == monoquant.error_metrics(src, y)
    assert monoquant.error_metrics(src, _misaligned(y)) == monoquant.error_metrics(src, y)


def test_unaligned_half_and_qparams():
    src = torch.randn(10, 64)
    h = _misaligned(src.to(torch.float16))
    assert torch.equal(monoquant._core.half_to_float(h), src.to(torch.float16).float())
    qt = monoquant.quantize_tensor(src, bits=8, scheme="asymmetric")
    y = monoquant._core.dequantize(qt.codes, _misaligned(qt.scale), _misaligned(qt.zero_point), [10, 64], 8,
                                   "asymmetric", "per_channel", 0, 128)
    assert torch.equal(y, qt.dequantize())
