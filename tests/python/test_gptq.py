"""GPTQ (C++ _core.gptq_quantize, python/monoquant/gptq.py) against a plain dense float64 GPTQ written here:
the same Hessian, the same column order, the same group scales rule."""

import pytest
import torch
from torch import nn

import monoquant
from monoquant import _core
from monoquant.errors import InvalidArgumentError


def _asym_qparams(x):
    """docs/FORMAT.md's asymmetric rule per row of x: [lo, hi] widened to 0, scale (hi - lo) / 15 (int4) or / 255
    (computed in double, stored as float32), zero point clamp(qmin - round(lo / scale)). (int4 here.)"""
    lo = torch.clamp(x.double().amin(1), max=0)
    hi = torch.clamp(x.double().amax(1), min=0)
    s = ((hi - lo) / 15).float()
    s = torch.where(s > 0, s, torch.ones_like(s))
    z = torch.clamp(-8 - torch.round(lo / s.double()), -8, 7).long()
    return s, z


def reference_gptq(w, h, bits, group, damp=0.01, block=128, act_order=False, static_groups=False, symmetric=True):
    """Frantar et al.'s algorithm, dense, in float64 (scales: absmax of the updated group / qmax, in float32;
    asymmetric (int4): min/max of the updated group, with a zero point)."""
    w = w.double().clone()
    h = h.double().clone()
    n, k = w.shape
    qmax = 127 if bits == 8 else 7
    g = group if group else k
    w0 = w.float().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    perm = torch.argsort(torch.diag(h), descending=True, stable=True) if act_order else torch.arange(k)
    w, h = w[:, perm], h[perm][:, perm]
    h += damp * torch.mean(torch.diag(h)) * torch.eye(k, dtype=torch.float64)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros(n, k, dtype=torch.int64)
    scales = torch.zeros(n, k // g, dtype=torch.float32)
    zeros = torch.zeros(n, k // g, dtype=torch.int64)
    if not group:
        scales[:, 0] = (w.float().abs().amax(1).double() / qmax).float()
    if group and static_groups:
        scales = (w0.reshape(n, k // g, g).abs().amax(2).double() / qmax).float()
    block = max(1, -(-block // g)) * g if group and not static_groups else block
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].clone()
        err = torch.zeros_like(w1)
        for i in range(i2 - i1):
            c = i1 + i
            if group and not static_groups and c % g == 0:
                if symmetric:
                    scales[:, c // g] = (w1[:, i:i + g].float().abs().amax(1).double() / qmax).float()
                else:
                    scales[:, c // g], zeros[:, c // g] = _asym_qparams(w1[:, i:i + g].float())
            s = scales[:, (int(perm[c]) if static_groups else c) // g]
            z = zeros[:, (int(perm[c]) if static_groups else c) // g]
            lo, hi = (-qmax, qmax) if symmetric else (-8, 7)
            qc = torch.clamp(torch.round(w1[:, i].float() * (1.0 / s)) + z, lo, hi)
            q[:, c] = qc.long()
            e = (w1[:, i] - ((qc - z) * s).double()) / u[c, c]
            w1[:, i:] -= e.unsqueeze(1) * u[c, c:i2].unsqueeze(0)
            err[:, i] = e
        w[:, i2:] -= err @ u[i1:i2, i2:]
    out = torch.empty_like(q)
    out[:, perm] = q
    g_idx = torch.empty(k, dtype=torch.int64)
    g_idx[perm] = torch.arange(k) // g
    if static_groups:
        g_idx = torch.arange(k) // g
    if not symmetric:
        return out, scales, g_idx, zeros
    return out, scales, g_idx


def unpack_codes(r, bits, k):
    c = r["codes"]
    if bits == 8:
        return c.long()
    u = c.view(torch.uint8)
    out = torch.stack([(u & 0xF).long() - 8, (u >> 4).long() - 8], dim=-1).reshape(u.shape[0], -1)
    return out[:, :k]


def correlated_layer(n, k, rows=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) / k ** 0.5 + torch.eye(k)
    x = torch.randn(rows, k, generator=g) @ mix * (torch.rand(k, generator=g) * 3 + 0.1)
    w = torch.randn(n, k, generator=g) * 0.05
    return w, x


def hessian_of(x):
    acc = _core.HessianAccumulator(x.shape[1])
    for part in x.split(1000):
        acc.add(part.contiguous())
    return acc


def deq(codes, scales, g_idx, group):
    if not group:
        return codes.double() * scales[:, :1].double()
    return codes.double() * scales.double()[:, g_idx]


@pytest.mark.parametrize("bits,group,act_order,static_groups",
                         [(4, 64, False, False), (4, 32, False, False), (8, 0, False, False), (4, 64, True, False),
                          (8, 0, True, False), (4, 32, True, True), (4, 64, False, True)])
def test_gptq_matches_dense_float64_reference(bits, group, act_order, static_groups):
    w, x = correlated_layer(48, 256)
    acc = hessian_of(x)
    h = acc.hessian()
    r = _core.gptq_quantize(w, h, bits, group, "absmax", "float32", 0.01, 128, act_order, static_groups)
    ref_codes, ref_scales, ref_gidx = reference_gptq(w, h, bits, group, act_order=act_order,
                                                     static_groups=static_groups)
    codes = unpack_codes(r, bits, 256)
    g_idx = r["g_idx"].long() if r["g_idx"] is not None else torch.arange(256) // (group or 256)
    if act_order and group and not static_groups:
        assert torch.equal(g_idx, ref_gidx)
    else:
        assert r["g_idx"] is None
    # Float64 Cholesky factors from LAPACK and torch differ in the last bits: a rare tie may round the other way.
    same = (codes == ref_codes).double().mean().item()
    assert same > 0.995, same
    ours = _core.hessian_error(w, deq(codes, r["scales"].reshape(48, -1), g_idx, group).float(), h)
    ref = _core.hessian_error(w, deq(ref_codes, ref_scales, ref_gidx, group).float(), h)
    assert ours <= ref * 1.001
    assert abs(r["error"] - ours) <= 1e-6 * ours
    assert r["error"] < 0.8 * r["rtn_error"]  # correlated inputs: error feedback must pay


@pytest.mark.parametrize("group,act_order", [(64, False), (32, True)])
def test_asymmetric_gptq_matches_dense_float64_reference(group, act_order):
    """Asymmetric int4: each group's scale and zero point from the error-updated weights, codes in [-8, 7],
    the error fed back against (q - z) * s."""
    w, x = correlated_layer(48, 256)
    w = w + 0.03  # lopsided groups, where a zero point matters
    h = hessian_of(x).hessian()
    r = _core.gptq_quantize(w, h, 4, group, "absmax", "float32", 0.01, 128, act_order, False, False, False)
    ref_codes, ref_scales, ref_gidx, ref_zeros = reference_gptq(w, h, 4, group, act_order=act_order, symmetric=False)
    codes = unpack_codes(r, 4, 256)
    g_idx = r["g_idx"].long() if r["g_idx"] is not None else torch.arange(256) // group
    assert torch.equal(g_idx, ref_gidx)
    zeros = r["zero_points"].long()
    assert zeros.shape == (48, 256 // group) and zeros.dtype == torch.int64
    assert int(zeros.min()) >= -8 and int(zeros.max()) <= 7 and bool((zeros != 0).any())
    assert (codes == ref_codes).double().mean().item() > 0.995
    assert (zeros == ref_zeros).double().mean().item() > 0.99
    ours = _core.hessian_error(w, ((codes - zeros[:, g_idx]).double() * r["scales"].double()[:, g_idx]).float(), h)
    ref = _core.hessian_error(w, ((ref_codes - ref_zeros[:, ref_gidx]).double()
                                  * ref_scales.double()[:, ref_gidx]).float(), h)
    assert ours <= ref * 1.001
    assert abs(r["error"] - ours) <= 1e-6 * ours
    assert r["error"] < 0.8 * r["rtn_error"]
    sym = _core.gptq_quantize(w, h, 4, group, "absmax", "float32", 0.01, 128, act_order, False, True)
    assert r["error"] < sym["error"]  # the zero point pays on lopsided weights


def test_asymmetric_gptq_with_identity_hessian_is_round_to_nearest():
    w, _ = correlated_layer(40, 128)
    w = w + 0.02
    for method in ("absmax", "mse"):
        r = _core.gptq_quantize(w, torch.eye(128, dtype=torch.float64), 4, 32, method, "float32", 0.01, 128,
                                False, False, False, False)
        rtn = _core.quantize_weight(w, 4, "asymmetric", "per_group", 0, 32, method, "float32")
        assert torch.equal(r["codes"].view(torch.uint8), rtn["codes"].view(torch.uint8))
        assert torch.equal(r["scales"], rtn["scales"])
        assert torch.equal(r["zero_points"], rtn["zero_points"].reshape(40, 4))


def test_hessian_accumulator_is_x_transpose_x():
    _, x = correlated_layer(4, 300, rows=777)  # K not a multiple of the 128-column tiles
    acc = hessian_of(x)
    assert acc.rows == 777 and acc.features == 300
    exact = x.double().T @ x.double()
    assert torch.allclose(acc.hessian(), exact, rtol=1e-5, atol=1e-3 * exact.abs().max().item() * 1e-3)
    assert torch.equal(acc.hessian(), acc.hessian().T)


def test_identity_hessian_gives_round_to_nearest():
    """With H = I no column's error reaches another: GPTQ is round-to-nearest, code for code."""
    w, _ = correlated_layer(40, 128)
    r = _core.gptq_quantize(w, torch.eye(128, dtype=torch.float64), 4, 32, "absmax", "float32")
    rtn = _core.quantize_weight(w, 4, "symmetric", "per_group", 0, 32, "absmax", "float32")
    assert torch.equal(r["codes"].view(torch.uint8), rtn["codes"].view(torch.uint8))
    assert torch.equal(r["scales"], rtn["scales"])


def test_bad_inputs_are_named():
    w, x = correlated_layer(8, 64)
    h = hessian_of(x).hessian()
    with pytest.raises(InvalidArgumentError, match="not a multiple of group_size"):
        _core.gptq_quantize(w, h, 4, 48, "absmax", "float32")
    with pytest.raises(InvalidArgumentError, match="Hessian must be"):
        _core.gptq_quantize(w, h[:32, :32].contiguous(), 4, 32, "absmax", "float32")
    bad = w.clone()
    bad[3, 5] = float("nan")
    with pytest.raises(InvalidArgumentError, match="non-finite"):
        _core.gptq_quantize(bad, h, 4, 32, "absmax", "float32")
    acc = _core.HessianAccumulator(64)
    xb = x[:10].clone()
    xb[2, 7] = float("inf")
    with pytest.raises(InvalidArgumentError, match="row 2, feature 7"):
        acc.add(xb)
    with pytest.raises(InvalidArgumentError, match="float32"):
        acc.add(x[:10, :32].contiguous())
    with pytest.raises(InvalidArgumentError, match="dampening"):
        _core.gptq_quantize(w, h, 4, 32, "absmax", "float32", -1.0)


class _Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.a = nn.Linear(d, 2 * d)
        self.b = nn.Linear(2 * d, d)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


class _Net(nn.Module):
    def __init__(self, d=64, blocks=3):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.blocks = nn.ModuleList(_Block(d) for _ in range(blocks))
        self.out = nn.Linear(d, d)

    def forward(self, x):
        x = self.inp(x)
        for blk in self.blocks:
            x = blk(x)
        return self.out(x)


def _net_and_data(seed=0):
    torch.manual_seed(seed)
    net = _Net().eval()
    mix = torch.randn(64, 64) / 8 + torch.eye(64)
    data = [torch.randn(32, 64) @ mix for _ in range(8)]
    test = torch.randn(256, 64) @ mix
    return net, data, test


@pytest.mark.parametrize("bits,kwargs", [(4, dict(weight_only=True, group_size=32)), (8, dict(dynamic=True)),
                                         (8, dict(weight_only=True))])
@pytest.mark.parametrize("sequential,act_order", [(True, False), (False, False), (True, True)])
def test_model_gptq_beats_round_to_nearest(bits, kwargs, sequential, act_order):
    net, data, test = _net_and_data()
    with torch.no_grad():
        ref = net(test)
    rtn = monoquant.quantize(net, bits=bits, include=["out"], show_progress=False, **kwargs)
    gq = monoquant.quantize(net, bits=bits, include=["out"], method="gptq", calibration_data=data,
                            sequential=sequential, act_order=act_order, show_progress=False, **kwargs)
    assert all(type(m).__name__ == "QuantLinear" for n, m in gq.model.named_modules() if n in ("inp", "out"))
    with torch.no_grad():
        e_rtn = (rtn.model(test) - ref).pow(2).mean().item()
        e_gq = (gq.model(test) - ref).pow(2).mean().item()
    assert e_gq < e_rtn, (e_gq, e_rtn)
    layers = gq.config["gptq"]["layers"]
    assert set(layers) == {"inp", "out", *(f"blocks.{i}.{x}" for i in range(3) for x in "ab")}
    assert all(v["error"] <= v["rtn_error"] for v in layers.values())
    assert layers["inp"]["tokens"] == 256


def test_model_gptq_saves_and_loads_the_same_codes(tmp_path):
    net, data, test = _net_and_data(1)
    res = monoquant.quantize(net, bits=4, weight_only=True, group_size=32, method="gptq", calibration_data=data,
                             show_progress=False)
    res.save(tmp_path / "m.safetensors")
    back = monoquant.load(tmp_path / "m.safetensors", model=_Net())
    with torch.no_grad():
        assert torch.equal(back(test), res.model(test))


def test_model_gptq_needs_calibration_data():
    net, data, _ = _net_and_data()
    with pytest.raises(InvalidArgumentError, match="calibration_data"):
        monoquant.quantize(net, bits=4, method="gptq")
    with pytest.raises(InvalidArgumentError, match="method must be"):
        monoquant.quantize(net, bits=4, method="gtpq", calibration_data=data)
    with pytest.raises(monoquant.errors.UnsupportedError, match="g_idx"):
        monoquant.quantize(net, bits=4, method="gptq", calibration_data=data, act_order="group")
    bad = [d.clone() for d in data]
    bad[2][1, 3] = float("nan")
    with pytest.raises(InvalidArgumentError, match="layer 'blocks.0.b'.*non-finite.*row 1"):
        monoquant.quantize(net, bits=4, method="gptq", calibration_data=bad)
    with pytest.raises(InvalidArgumentError, match="did not run through the model"):
        monoquant.quantize(net, bits=4, method="gptq", calibration_data=[torch.randn(4, 3)])


@pytest.mark.parametrize("act_order", [False, True])
def test_model_gptq_asymmetric_beats_its_round_to_nearest_and_round_trips(tmp_path, act_order):
    """quantize(method="gptq", scheme="asymmetric"): zero points per group from the sweep, the error below
    asymmetric round-to-nearest, and the saved file (weight_zero_point, and weight_g_idx with act_order)
    loads back to the same outputs."""
    net, data, test = _net_and_data(2)
    with torch.no_grad():
        net.out.weight.add_(0.05)  # lopsided groups, where a zero point matters
        ref = net(test)
    kw = dict(bits=4, weight_only=True, group_size=32, scheme="asymmetric", include=["out"], show_progress=False)
    rtn = monoquant.quantize(net, **kw)
    gq = monoquant.quantize(net, method="gptq", calibration_data=data, act_order=act_order, **kw)
    for name in ("inp", "out", "blocks.0.a"):
        layer = gq.model.get_submodule(name)
        assert layer.scheme.label == "W4A16-g32-asym", name
        zp = layer.quantized_weight().zero_points
        assert zp is not None and zp.shape == (layer.out_features, layer.in_features // 32)
        assert int(zp.min()) >= -8 and int(zp.max()) <= 7 and bool((zp != 0).any()), name
        # The module runs (q - z) s: the same as a float layer holding its dequantized weight.
        x = test[:7, :layer.in_features]
        want = torch.nn.functional.linear(x, layer.dequantized_weight(), layer.bias)
        assert (layer(x) - want).abs().max().item() <= 1e-5 * want.abs().max().item()
    with torch.no_grad():
        e_rtn = (rtn.model(test) - ref).pow(2).mean().item()
        e_gq = (gq.model(test) - ref).pow(2).mean().item()
    assert e_gq < e_rtn, (e_gq, e_rtn)
    assert all(v["error"] <= v["rtn_error"] for v in gq.config["gptq"]["layers"].values())
    gq.save(tmp_path / "m.safetensors")
    back = monoquant.load(tmp_path / "m.safetensors", model=_Net())
    with torch.no_grad():
        assert torch.equal(back(test), gq.model(test))


class _TokenNet(nn.Module):
    """Per-token, called like a transformers model: input_ids and an attention_mask it does not need."""

    def __init__(self, vocab=50, d=64):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.fc = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, input_ids, attention_mask=None):
        return self.out(torch.relu(self.fc(self.emb(input_ids))))


def test_gptq_hessians_take_only_the_real_tokens_of_padded_batches():
    # The oracle: the same tokens without any padding (each batch's real tokens, in order, as one
    # unpadded row: the Hessian sees the same rows in the same calls). Padded
    # batches (pad id 0, whose embedding is far from every real input, right and left padding
    # mixed) must give the very same Hessians, hence codes; without the mask they must not.
    torch.manual_seed(0)
    net = _TokenNet().eval()
    with torch.no_grad():
        net.emb.weight[0] = 30.0
    g = torch.Generator().manual_seed(3)
    padded, rows = [], []
    for b in range(4):
        lengths = torch.randint(3, 17, (8,), generator=g).tolist()
        ids = torch.zeros(8, 16, dtype=torch.long)
        mask = torch.zeros(8, 16, dtype=torch.long)
        for r, n in enumerate(lengths):
            start = 16 - n if r % 3 == 0 else 0  # every third row padded on the left
            ids[r, start:start + n] = torch.randint(1, 50, (n,), generator=g)
            mask[r, start:start + n] = 1
        padded.append({"input_ids": ids, "attention_mask": mask})
        real = ids[mask.bool()]
        rows.append({"input_ids": real[None], "attention_mask": torch.ones(1, real.numel(), dtype=torch.long)})
    real_tokens = sum(int(p["attention_mask"].sum()) for p in padded)
    kw = dict(bits=4, weight_only=True, group_size=32, method="gptq", include=["fc", "out"], show_progress=False)
    a = monoquant.quantize(net, calibration_data=padded, **kw)
    b = monoquant.quantize(net, calibration_data=rows, **kw)
    c = monoquant.quantize(net, calibration_data=[{"input_ids": p["input_ids"]} for p in padded], **kw)
    for name in ("fc", "out"):
        assert a.config["gptq"]["layers"][name]["tokens"] == real_tokens == b.config["gptq"]["layers"][name]["tokens"]
        assert c.config["gptq"]["layers"][name]["tokens"] == 4 * 8 * 16
        assert a.model.get_submodule(name).quantized_weight().equal(b.model.get_submodule(name).quantized_weight())
    assert not a.model.get_submodule("fc").quantized_weight().equal(c.model.get_submodule("fc").quantized_weight())


def test_real_rows_keeps_every_row_when_the_layout_is_not_the_mask_s():
    from monoquant.token_mask import batch_token_mask, real_rows

    mask = batch_token_mask({"attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]])})
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    assert torch.equal(real_rows(x, mask), torch.stack([x[0, 0], x[0, 1], x[1, 0]]))
    assert torch.equal(real_rows(x.reshape(6, 4), mask), torch.stack([x[0, 0], x[0, 1], x[1, 0]]))
    other = torch.ones(2, 5, 4)  # another sequence (cross-attention, a pooled layer): all rows
    assert real_rows(other, mask).shape == (10, 4)
    assert real_rows(x, None).shape == (6, 4)
    # Not a 0 / 1 mask (an additive float mask, other values): no mask.
    assert batch_token_mask({"attention_mask": torch.zeros(2, 3)}) is None
    assert batch_token_mask({"attention_mask": torch.full((2, 3), 2)}) is None
    assert batch_token_mask(torch.ones(2, 3)) is None
