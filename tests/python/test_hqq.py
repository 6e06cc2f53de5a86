"""HQQ-style scales (C++ choose_qparams_hqq, scale_method="hqq"): the l_p objective it minimises, computed
here in float64 from the codes the library itself produces, never ends worse than absmax's on any group and
falls as the iterations grow."""

import pytest
import torch

import monoquant
from monoquant import _core


def weights(seed=0, n=64, k=256):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.02
    w[torch.rand(n, k, generator=g) < 0.01] *= 8  # a few outliers per group, as real weights have
    return w


def lp_per_group(w, scales, zps, bits, group, scheme, p=0.7):
    q = _core.quantize_with_qparams(w, bits, scheme, "per_group", 0, group, scales, zps)
    deq = _core.dequantize(q["codes"], q["scales"], q["zero_points"], list(w.shape), bits, scheme, "per_group", 0,
                           group)
    err = (w.double() - deq.double()).abs().pow(p)
    return err.reshape(w.shape[0], -1, group).sum(-1)


@pytest.mark.parametrize("bits,group,scheme", [(4, 32, "symmetric"), (4, 128, "symmetric"), (8, 64, "symmetric"),
                                               (4, 64, "asymmetric")])
def test_hqq_never_worse_than_absmax_and_improves(bits, group, scheme):
    w = weights()
    base = _core.quantize(w, bits, scheme, "per_group", 0, group)  # absmax / minmax
    hqq = _core.choose_qparams_hqq(w, bits, scheme, "per_group", 0, group)
    e_base = lp_per_group(w, base["scales"], base["zero_points"], bits, group, scheme)
    e_hqq = lp_per_group(w, hqq["scales"], hqq["zero_points"], bits, group, scheme)
    assert bool((e_hqq <= e_base * (1 + 1e-9)).all())
    if scheme == "symmetric":  # integer zero points leave the asymmetric update little room
        assert e_hqq.sum() < 0.99 * e_base.sum()  # and on the whole it does better


def test_hqq_objective_falls_with_iterations():
    w = weights(1)
    totals = []
    for it in (1, 2, 5, 20):
        r = _core.choose_qparams_hqq(w, 4, "symmetric", "per_group", 0, 32, iterations=it)
        totals.append(lp_per_group(w, r["scales"], None, 4, 32, "symmetric").sum().item())
    assert all(b <= a * (1 + 1e-12) for a, b in zip(totals, totals[1:])), totals
    assert totals[-1] < totals[0]


def test_hqq_through_the_api_and_the_rule():
    """scale_method='hqq' reaches the weight rule: scales rounded to the stored dtype, codes from them."""
    w = weights(2)
    q = _core.quantize_weight(w, 4, "symmetric", "per_group", 0, 32, "hqq", "float16")
    assert torch.equal(q["scales"], q["scales"].half().float())
    net = torch.nn.Sequential(torch.nn.Linear(256, 64))
    net[0].weight.data = w
    res = monoquant.quantize(net, bits=4, weight_only=True, group_size=32, scale_method="hqq", include=["0"],
                             show_progress=False)
    assert res.model[0].scheme.scale_method == "hqq"
    assert torch.equal(res.model[0].quantized_weight().scales, _core.quantize_weight(
        w, 4, "symmetric", "per_group", 0, 32, "hqq", "float32", True)["scales"])


def test_hqq_bad_options():
    w = weights()
    with pytest.raises(monoquant.errors.InvalidArgumentError, match="lp_norm"):
        _core.choose_qparams_hqq(w, 4, "symmetric", "per_group", 0, 32, lp_norm=0.0)
    with pytest.raises(monoquant.errors.InvalidArgumentError, match="axis"):
        _core.choose_qparams_hqq(w, 8, "symmetric", "per_channel", 1, 0)
    bad = w.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(monoquant.errors.InvalidArgumentError):
        _core.choose_qparams_hqq(bad, 4, "symmetric", "per_group", 0, 32)
