"""Bf16LayerNorm (monoquant.bf16_norms, the core's layer_norm_bf16) against torch's layer_norm: the oracle is
torch in float64 on the same bf16 values, the bound torch's own bf16 error on them. On a CPU without AVX-512
BF16 the kernel must refuse and models keep nn.LayerNorm: those branches are asserted instead."""

import copy

import pytest
import torch
import torch.nn.functional as F
import transformers

import monoquant
from monoquant import _core
from monoquant.bf16_norms import Bf16LayerNorm, use_for
from monoquant.errors import UnsupportedError

FAST = _core.layer_norm_bf16_available()


def _norm(n, affine=True, bias=True, seed=0):
    torch.manual_seed(seed)
    ln = torch.nn.LayerNorm(n, elementwise_affine=affine, bias=bias)
    if affine:
        ln.weight.data.uniform_(0.5, 1.5)
        if bias:
            ln.bias.data.normal_()
    return ln.to(torch.bfloat16)


@pytest.mark.parametrize("n", [1, 37, 384, 1000])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, False)])
def test_matches_torch_within_its_own_bf16_error(n, affine, bias):
    ln = _norm(n, affine, bias, seed=n)
    fast = copy.deepcopy(ln)
    fast.__class__ = Bf16LayerNorm
    g = torch.Generator().manual_seed(n)
    x = (torch.randn(3, 17, n, generator=g) * 4 + 20).to(torch.bfloat16)  # far from zero mean
    x[0, 0] = 0  # a constant row: variance 0
    with torch.no_grad():
        y = fast(x)
        ours = ln(x)
    w = None if ln.weight is None else ln.weight.double()
    b = None if ln.bias is None else ln.bias.double()
    ref = F.layer_norm(x.double(), (n,), w, b, ln.eps)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    err, torch_err = (y.double() - ref).abs().max().item(), (ours.double() - ref).abs().max().item()
    assert err <= 1.5 * torch_err + 1e-6 * ref.abs().max().item(), (err, torch_err)
    if not FAST:
        assert torch.equal(y, ours)  # nn.LayerNorm's forward, exactly


def test_what_the_kernel_does_not_take_is_nn_layernorm_exactly():
    ln = _norm(64)
    fast = copy.deepcopy(ln)
    fast.__class__ = Bf16LayerNorm
    x = torch.randn(8, 128).to(torch.bfloat16)[:, ::2]  # not contiguous
    with torch.no_grad():
        assert torch.equal(fast(x), ln(x))
        y32 = torch.nn.LayerNorm(64)  # float32 inputs and parameters: nn.LayerNorm's
        f32 = copy.deepcopy(y32)
        f32.__class__ = Bf16LayerNorm
        assert torch.equal(f32(x.float()), y32(x.float()))
    xg = torch.randn(4, 64).to(torch.bfloat16).requires_grad_()
    y = fast(xg)  # autograd: nn.LayerNorm's, so backward works
    y.sum().backward()
    assert xg.grad is not None and y.grad_fn is not None


def test_empty_input():
    fast = _norm(16)
    fast.__class__ = Bf16LayerNorm
    with torch.no_grad():
        assert fast(torch.empty(0, 16, dtype=torch.bfloat16)).shape == (0, 16)


def test_unavailable_refuses():
    if FAST:
        with pytest.raises(monoquant.errors.InvalidArgumentError):
            _core.layer_norm_bf16_raw(0, 1, 0, 0, 0, 0, 1e-5, 0, 0)  # n = 0
        return
    with pytest.raises(UnsupportedError, match="AVX-512 BF16"):
        _core.layer_norm_bf16_raw(0, 1, 8, 8, 0, 0, 1e-5, 0, 8)
    print("AVX-512 BF16 absent on this CPU: the refusal and the nn.LayerNorm fallback are checked instead")


def test_a_bf16_model_swaps_its_plain_layernorms_and_keeps_its_state():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=128, max_position_embeddings=64)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 96, (2, 20))
    with torch.no_grad():
        res = monoquant.quantize(model, show_progress=False, bits=8, dynamic=True, compute_dtype=torch.bfloat16)
        norms = [m for m in res.model.modules() if isinstance(m, torch.nn.LayerNorm)]
        swapped = [m for m in norms if type(m) is Bf16LayerNorm]
        native = monoquant.compute_dtype.native_bf16()
        assert len(swapped) == (len(norms) if FAST and native else 0)
        assert any("Bf16LayerNorm" in n for n in res.report.notes) == bool(swapped)
        y = res.model(input_ids=ids).last_hidden_state
        for m in swapped:
            m.__class__ = torch.nn.LayerNorm
        y_torch = res.model(input_ids=ids).last_hidden_state
    cos = F.cosine_similarity(y.float().flatten(1), y_torch.float().flatten(1), dim=-1).min().item()
    assert cos > 0.9999
    assert all(type(m) is torch.nn.LayerNorm for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    keys = set(res.model.state_dict())
    assert all(any(k.startswith(p) for k in keys) for p in ("encoder.layer.0.attention.output.LayerNorm.weight",))


def test_subclasses_are_left_alone():
    class MyNorm(torch.nn.LayerNorm):
        pass
    m = torch.nn.Sequential(MyNorm(8), torch.nn.LayerNorm(8))
    count = use_for(m)
    assert type(m[0]) is MyNorm
    assert count == (1 if FAST else 0) and (type(m[1]) is Bf16LayerNorm) == FAST


def test_fake_tensors_see_torchs_op():
    from torch._subclasses.fake_tensor import FakeTensorMode
    fast = _norm(32)
    fast.__class__ = Bf16LayerNorm
    with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
        y = fast(torch.empty(4, 32, dtype=torch.bfloat16))
        assert y.shape == (4, 32)
