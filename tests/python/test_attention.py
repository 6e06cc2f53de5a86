"""monoquant_amx attention (monoquant.attention, the core's attention_bf16 on AMX-BF16 tiles or AVX-512 BF16
vdpbf16ps) against torch's scaled_dot_product_attention: the oracle is torch in float64 on the same bf16 inputs,
and the bound is torch's own bf16 error on them. Every kernel the CPU has is tested (the AVX-512 BF16 one also on
AMX CPUs, with the avx512_vnni linear kernel set, which it follows). On a CPU with neither the kernel must refuse
(and say why) and models keep sdpa: those branches are asserted instead, and the test prints what was absent."""

import pytest
import torch
import torch.nn.functional as F
import transformers

import monoquant
from monoquant import _core, attention
from monoquant.errors import UnsupportedError

AMX = _core.amx_bf16_available()
AVX512_BF16 = bool(_core.cpu_features()["avx512_bf16"])
# (linear kernel set, the attention kernel it brings) for every bf16 attention kernel this CPU has.
KERNELS = ([("amx", "amx_bf16")] if AMX else []) + (
    [("avx512_vnni", "avx512_bf16")] if AVX512_BF16 and "avx512_vnni" in _core.available_linear_kernel_sets() else [])
HAS = bool(KERNELS)


def _report_absent():
    print("AMX-BF16 and AVX-512 BF16 absent on this CPU: the kernel's refusal and the sdpa fallback are checked instead")


@pytest.fixture(params=KERNELS or [None], ids=lambda k: k[1] if k else "none")
def kernel(request):
    if request.param is None:
        yield None
        return
    _core.use_linear_kernel_set(request.param[0])
    try:
        assert _core.attention_bf16_kernel() == request.param[1]
        yield request.param[1]
    finally:
        _core.use_linear_kernel_set("best")


def test_every_bf16_kernel_of_this_cpu_is_offered():
    assert (_core.attention_bf16_kernel() != "") == HAS
    if AMX:
        assert _core.attention_bf16_kernel() == "amx_bf16"
    elif AVX512_BF16:
        assert _core.attention_bf16_kernel() == "avx512_bf16"
    if not AMX:
        print("AMX-BF16 absent on this CPU: only the AVX-512 BF16 attention kernel is tested" if HAS else "")


def _qkv(b, h, s, kv, d, seed):
    g = torch.Generator().manual_seed(seed)
    # q as transformers passes it: a [b, h, s, d] view of [b, s, h, d] (strided rows).
    q = torch.randn(b, s, h, d, generator=g).to(torch.bfloat16).transpose(1, 2)
    k = (torch.randn(b, h, kv, d, generator=g) * 2).to(torch.bfloat16)
    v = torch.randn(b, h, kv, d, generator=g).to(torch.bfloat16)
    return q, k, v


def _masks(b, h, s, kv):
    g = torch.Generator().manual_seed(7)
    padding = torch.ones(b, 1, 1, kv, dtype=torch.bool)
    padding[0, ..., kv // 2:] = False
    full = torch.rand(b, h, s, kv, generator=g) > 0.3
    full[..., 0] = True  # every row keeps a key
    return {"none": None, "padding [b,1,1,kv]": padding, "per head [b,h,s,kv]": full,
            "sdpa rows [b,1,s,kv]": padding.expand(b, 1, s, kv).contiguous()}


class _Module(torch.nn.Module):
    is_causal = False


@pytest.mark.parametrize("shape", [(2, 12, 128, 128, 32), (3, 4, 37, 45, 64), (1, 2, 16, 300, 32), (2, 3, 5, 7, 32),
                                   (1, 1, 1, 1, 64)])
def test_matches_torch_within_its_own_bf16_error(shape, kernel):
    b, h, s, kv, d = shape
    q, k, v = _qkv(b, h, s, kv, d, seed=sum(shape))
    scale = d ** -0.5
    for name, mask in _masks(b, h, s, kv).items():
        if not HAS:
            assert not _core.attention_bf16_supported(d, kv)
            out, _ = attention.attention_forward(_Module(), q, k, v, mask, scaling=scale)
            expect = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(1, 2)
            assert torch.equal(out, expect), name  # the fallback is transformers' sdpa, exactly
            continue
        ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask, scale=scale)
        ref = ref.transpose(1, 2)
        torch_bf16 = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(1, 2)
        out, weights = attention.attention_forward(_Module(), q, k, v, mask, scaling=scale)
        assert weights is None and out.dtype == torch.bfloat16 and out.shape == (b, s, h, d) and out.is_contiguous()
        err = (out.double() - ref).abs().max().item()
        torch_err = (torch_bf16.double() - ref).abs().max().item()
        assert err <= 1.5 * torch_err + 1e-3 * ref.abs().max().item(), (name, kernel, err, torch_err)
    if not HAS:
        _report_absent()


def test_a_row_that_may_attend_to_nothing_is_zero(kernel):
    if not HAS:
        with pytest.raises(UnsupportedError, match="AVX-512 BF16"):
            _core.attention_bf16_raw(0, 0, 0, 0, 0, [1, 1, 1, 1, 32], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0, 0], 1.0)
        _report_absent()
        return
    q, k, v = _qkv(1, 2, 20, 20, 32, seed=3)
    mask = torch.ones(1, 2, 20, 20, dtype=torch.bool)
    mask[0, 1, 5] = False
    out, _ = attention.attention_forward(_Module(), q, k, v, mask)
    assert torch.all(out[0, 5, 1] == 0)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask).transpose(1, 2)
    assert torch.allclose(out[0, 4].double(), ref[0, 4], atol=2e-2)  # the other rows are unaffected


@pytest.mark.parametrize("case", ["float32", "causal", "head_dim 48", "float mask", "grouped heads"])
def test_what_the_kernel_does_not_take_goes_to_sdpa(case):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    d = 48 if case == "head_dim 48" else 32
    q, k, v = _qkv(2, 4, 9, 9, d, seed=5)
    mask, module = None, _Module()
    if case == "float32":
        q, k, v = q.float(), k.float(), v.float()
    if case == "causal":
        module.is_causal = True
    if case == "float mask":
        mask = torch.zeros(2, 1, 9, 9, dtype=torch.bfloat16)
    if case == "grouped heads":
        k, v = k[:, :2].contiguous(), v[:, :2].contiguous()
        module.num_key_value_groups = 2
    out, _ = attention.attention_forward(module, q, k, v, mask)
    expect, _ = sdpa_attention_forward(module, q, k, v, mask)
    assert torch.equal(out, expect)


def _bert(heads):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=heads,
                                  intermediate_size=128, max_position_embeddings=64)
    return transformers.BertModel(cfg).eval()


def test_a_bf16_model_switches_where_a_bf16_kernel_is_and_keeps_its_outputs(kernel):
    model = _bert(heads=2)  # head_dim 32
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 96, (3, 24), generator=g)
    mask = torch.ones(3, 24, dtype=torch.long)
    mask[1, 15:] = 0  # padding: the boolean mask path
    with torch.no_grad():
        res = monoquant.quantize(model, show_progress=False, bits=8, dynamic=True, compute_dtype=torch.bfloat16)
        # AMX-BF16 or AVX-512 BF16: monoquant's attention; elsewhere (bf16 or not) the model keeps sdpa.
        assert res.model.config._attn_implementation == (attention.NAME if HAS else "sdpa")
        # The report says so, naming the kernel (and how to undo it), only where it happened.
        said = [n for n in res.report.notes if attention.NAME in n]
        assert bool(said) == HAS
        if HAS:
            assert ("AMX-BF16" if kernel == "amx_bf16" else "AVX-512 BF16") in said[0]
        y = res.model(input_ids=ids, attention_mask=mask).last_hidden_state
        res.model.set_attn_implementation("sdpa")
        y_sdpa = res.model(input_ids=ids, attention_mask=mask).last_hidden_state
    cos = F.cosine_similarity(y.float().flatten(1), y_sdpa.float().flatten(1), dim=-1).min().item()
    assert cos > 0.9995
    assert model.config._attn_implementation == "sdpa"  # the input model is untouched
    if not HAS:
        _report_absent()


def test_fake_tensors_and_tracing_see_torchs_op():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        q = torch.empty(2, 4, 16, 32, dtype=torch.bfloat16)
        out, _ = attention.attention_forward(_Module(), q, q, q, None)  # no data pointers asked of fake tensors
        assert out.shape == (2, 16, 4, 32)


def test_an_odd_key_row_stride_is_refused_by_the_kernel_and_routed_to_sdpa(kernel):
    if HAS:
        with pytest.raises(monoquant.errors.InvalidArgumentError, match="key row stride must be even"):
            _core.attention_bf16_raw(1, 1, 1, 1, 0, [1, 1, 1, 1, 32], [0, 0, 32], [0, 0, 33], [0, 0, 32],
                                     [0, 0, 0, 0], 1.0)
    base = torch.randn(1, 1, 8, 33).to(torch.bfloat16)
    k = base[..., :32]  # rows 33 apart
    q, _, v = _qkv(1, 1, 8, 8, 32, seed=9)
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    out, _ = attention.attention_forward(_Module(), q, k, v, None)
    assert torch.equal(out, sdpa_attention_forward(_Module(), q, k, v, None)[0])
