"""W8A8 with activation groups (quantize(..., bits=8, dynamic=True, act_group_size=g)): int8 weights with a
scale per output channel per group of K, activations per token per group, integer dots per group. Held to a
float64 oracle built from the module's own codes, to per-token W8A8, and through save / load / the CLI /
transformers."""

import pytest
import torch
import transformers
from torch import nn

import monoquant
from monoquant import ops
from monoquant.errors import InvalidArgumentError, UnsupportedError


def _act_oracle(x, g):
    """Per row and group: scale absmax / 127 (float32), codes round(x * (1 / scale)) in [-127, 127]."""
    m, k = x.shape
    xg = x.reshape(m, k // g, g)
    s = xg.abs().amax(-1) / 127.0
    s = torch.where(s == 0, torch.ones_like(s), s)
    inv = (1.0 / s).unsqueeze(-1)
    q = torch.clamp(torch.round(xg * inv), -127, 127)
    return q, s


@pytest.mark.parametrize("g", [32, 64, 128])
def test_layer_matches_float64_oracle(g):
    torch.manual_seed(0)
    lin = nn.Linear(256, 40)
    x = torch.randn(7, 256)
    x[:, 5] *= 40  # an outlier channel: its group gets its own scale
    res = monoquant.quantize(nn.Sequential(lin), bits=8, dynamic=True, act_group_size=g, include=["0"],
                             show_progress=False)
    q = res.model[0]
    assert q.scheme.label == f"W8A8-dynamic-g{g}"
    qw = q.quantized_weight()
    assert tuple(qw.scales.shape) == (40, 256 // g)
    wq = qw.codes.double().reshape(40, 256 // g, g)
    aq, sa = _act_oracle(x, g)
    dots = torch.einsum("mjg,njg->mnj", aq.double(), wq)
    ref = (dots * sa.double().unsqueeze(1) * qw.scales.double().unsqueeze(0)).sum(-1) + lin.bias.double()
    with torch.no_grad():
        y = q(x)
    assert torch.allclose(y.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_groups_beat_per_token_on_outliers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64)).eval()
    x = torch.randn(64, 256)
    x[:, [3, 100, 200]] *= 50
    with torch.no_grad():
        ref = net(x)
        per_token = monoquant.quantize(net, bits=8, dynamic=True, include=["2"], show_progress=False).model(x)
        grouped = monoquant.quantize(net, bits=8, dynamic=True, act_group_size=32, include=["2"],
                                     show_progress=False).model(x)
    e_tok = (per_token - ref).pow(2).mean().item()
    e_grp = (grouped - ref).pow(2).mean().item()
    assert e_grp < 0.5 * e_tok, (e_grp, e_tok)


def test_kernel_sets_agree_bit_for_bit():
    """The layer's output on every kernel set this CPU has equals the scalar set's."""
    torch.manual_seed(1)
    lin = nn.Linear(192, 33)
    res = monoquant.quantize(nn.Sequential(lin), bits=8, dynamic=True, act_group_size=64, include=["0"],
                             show_progress=False)
    x = torch.randn(5, 192)
    outs = {}
    try:
        for name in monoquant._core.available_linear_kernel_sets():
            monoquant._core.use_linear_kernel_set(name)
            with torch.no_grad():
                outs[name] = (ops.kernel_name(), res.model(x).clone())
    finally:
        monoquant._core.use_linear_kernel_set("best")
    ref = outs["scalar"][1]
    for name, (kernel, y) in outs.items():
        assert torch.equal(y, ref), (name, kernel)


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, initializer_range=0.1)
    return transformers.BertModel(cfg).eval()


def test_save_load_and_transformers(tmp_path):
    model = _bert()
    ids = torch.randint(0, 96, (3, 16), generator=torch.Generator().manual_seed(2))
    res = monoquant.quantize(model, bits=8, dynamic=True, act_group_size=32, show_progress=False)
    res.save(tmp_path / "m")
    back = monoquant.load(tmp_path / "m")
    with torch.no_grad():
        ours = res.model(input_ids=ids).last_hidden_state
        assert torch.equal(back(input_ids=ids).last_hidden_state, ours)
        theirs = transformers.AutoModel.from_pretrained(tmp_path / "m").eval()(input_ids=ids).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(theirs.flatten(1), ours.flatten(1)).min().item()
    assert cos > 0.999, cos  # compressed-tensors' own group fake-quantization


def test_cli_act_group_size_matches_api(cli, tmp_path):
    import subprocess
    model = _bert()
    model.save_pretrained(tmp_path / "bert")
    out = tmp_path / "ag.safetensors"
    subprocess.run([cli, "quantize", str(tmp_path / "bert"), "-o", str(out), "--bits", "8", "--dynamic",
                    "--act-group-size", "32", "--quiet"], check=True)
    from safetensors.torch import load_file
    t = load_file(str(out))
    api = monoquant.quantize(monoquant.load_state_dict(tmp_path / "bert"), bits=8, dynamic=True, act_group_size=32,
                             show_progress=False).model
    assert set(t) == set(api)
    for k in t:
        assert torch.equal(t[k], api[k]), k
    bad = subprocess.run([cli, "quantize", str(tmp_path / "bert"), "-o", str(tmp_path / "x.safetensors"), "--bits",
                          "8", "--weight-only", "--act-group-size", "32"], capture_output=True, text=True)
    assert bad.returncode != 0 and "act-group-size" in bad.stderr


def test_bad_arguments():
    net = nn.Sequential(nn.Linear(96, 8))
    with pytest.raises(InvalidArgumentError, match="act_group_size applies"):
        monoquant.quantize(net, bits=8, weight_only=True, act_group_size=32)
    with pytest.raises(InvalidArgumentError, match="multiple of 8"):
        monoquant.quantize(net, bits=8, dynamic=True, act_group_size=12)
    with pytest.raises(InvalidArgumentError, match="not a multiple of group_size"):
        monoquant.quantize(net, bits=8, dynamic=True, act_group_size=64, include=["0"])
    with pytest.raises(UnsupportedError):
        monoquant.schemes.LayerScheme(format="int8", mode="static", group_size=32)
