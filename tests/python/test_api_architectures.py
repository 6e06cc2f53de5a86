"""``monoquant.quantize`` on real transformers architectures, end to end.

Five models built from tiny configs (random weights, fixed seeds) cover the
layer kinds monoquant has to find and replace:

    bert    BertModel              nn.Linear, attention mask, a pooler
    gpt2    GPT2LMHeadModel        transformers' Conv1D (weight [in, out]), lm_head tied to wte
    llama   LlamaForCausalLM       grouped-query attention (2 KV heads for 4 heads), untied lm_head
    vit     ViTModel               Conv2d patch embedding + Linear blocks
    resnet  ResNetModel            Conv2d only; the 7x7 stem has K = 3*7*7 = 147, no multiple of 32

Each model is quantized in every mode of the API (W8A8 dynamic and static,
W4A16, W8A16, W4A8 dynamic and static, FP16, BF16), and for each result:

- the quantized model runs and its output is close to the float model's, but
  not equal to it (it really was quantized);
- the report and the module tree say that exactly the expected layers were
  quantized, with the asked-for format, mode and group size;
- the result saved to ``<tmp>/<model>/<mode>`` and read back by
  ``monoquant.load`` in a fresh Python process computes bit-identical outputs
  (one subprocess per model loads all its modes, to keep the runtime low);
- tied weights stay tied (GPT-2's lm_head / wte), in process and after load;
- the input model is untouched (``inplace=False`` is the default).

The quantization work is done once per model in a module-scoped fixture; the
tests only look at what it recorded, so one failing mode does not hide the
others (a mode that raised is re-raised by each test of that mode).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import pytest
import torch
from torch import nn

import transformers  # required test dependency

import monoquant
from monoquant.errors import InvalidArgumentError  # noqa: E402
from monoquant.modules import QuantConv2d, QuantLinear, QuantModule  # noqa: E402

VOCAB = 128
SEQ = 12
IMAGE = 32
GROUP = 32            # every K of the models below is a multiple of 32, except the ResNet stem's 147
CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 4   # 8 x 4 = 32 samples: enough that quantize does not warn about too few


# ---------------------------------------------------------------- the modes

@dataclass(frozen=True)
class Mode:
    kwargs: Dict[str, Any]        # what quantize takes (calibration_data is added for static modes)
    format: str                   # what every quantized module must then hold
    mode: str
    group_size: int
    family: str                   # "16", "8" or "4": which error bound applies
    static: bool = False


MODES: Dict[str, Mode] = {
    "w8a8_dynamic": Mode(dict(bits=8, dynamic=True), "int8", "dynamic", 0, "8"),
    "w8a8_static": Mode(dict(bits=8), "int8", "static", 0, "8", static=True),
    "w4a16_g32": Mode(dict(bits=4, weight_only=True, group_size=GROUP), "int4", "weight_only", GROUP, "4"),
    "w8a16": Mode(dict(bits=8, weight_only=True), "int8", "weight_only", 0, "8"),
    "w4a8_dynamic_g32": Mode(dict(bits=4, dynamic=True, group_size=GROUP), "int4", "dynamic", GROUP, "4"),
    "w4a8_static_g32": Mode(dict(bits=4, group_size=GROUP), "int4", "static", GROUP, "4", static=True),
    "fp16": Mode(dict(bits=16), "float16", "weight_only", 0, "16"),
    "bf16": Mode(dict(bits=16, dtype=torch.bfloat16), "bfloat16", "weight_only", 0, "16"),
}

# Bounds on ||quantized - float|| / ||float|| of the model's main output. Measured at these sizes and seeds
# (worst over the five models): FP16 2.8e-4 and BF16 2.6e-3 (bf16 keeps 8 mantissa bits, ~2^-9 per weight);
# INT8 9.2e-3 weight-only, 1.2e-2 dynamic, 1.5e-2 static (activation rounding adds to the weights');
# INT4 g32 0.08-0.12 in all three activation modes (the weight error dominates). The bounds leave 2-4x
# margin and still sit far below garbage: replacing every quantizable layer's weight by random values of
# the same std moves the outputs by 0.76-1.4 relative (test_error_bound_rejects_garbage_weights keeps
# that true; with BERT's default initializer_range of 0.02 it was only 0.04, so BERT is built with 0.1).
REL_ERROR_BOUND = {"16": 0.01, "8": 0.04, "4": 0.25}


# ---------------------------------------------------------------- the models

def _tokens(g: torch.Generator, batch: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, SEQ), generator=g)


def _pixels(g: torch.Generator, batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, IMAGE, IMAGE, generator=g)


def _bert():
    # initializer_range 0.1 (default 0.02): with 0.02 the blocks barely move BERT's LayerNormed residual
    # stream, and even garbage weights would pass a 4-bit error bound (see REL_ERROR_BOUND).
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, initializer_range=0.1)
    return transformers.BertModel(cfg)


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(cfg)


def _vit():
    cfg = transformers.ViTConfig(image_size=IMAGE, patch_size=8, num_channels=3, hidden_size=64,
                                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    return transformers.ViTModel(cfg)


def _resnet():
    # Channels 32 and 64: the 3x3 convs have K = 288 and 576 and the 1x1 shortcut K = 32, all multiples
    # of GROUP; only the stem (K = 147) needs skipping at group_size=32.
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=32, hidden_sizes=[32, 64], depths=[1, 1],
                                    layer_type="basic")
    return transformers.ResNetModel(cfg)


def _bert_inputs(g, batch):
    ids = _tokens(g, batch)
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # some padding, so the attention mask path runs too
    return {"input_ids": ids, "attention_mask": mask}


@dataclass
class ModelSpec:
    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator, int], Dict[str, torch.Tensor]]   # keyword arguments of forward
    # One calibration batch in the form this model's test feeds it (tensor, tuple or dict: all three
    # forms quantize takes are exercised across the models).
    calibration_batch: Callable[[torch.Generator], Any]
    output: str                                  # the output the error bound applies to
    skip_int4: List[str] = field(default_factory=list)   # layers whose K is no multiple of GROUP
    tied: List[tuple] = field(default_factory=list)      # (parameter, parameter) pairs that must be one object


MODELS: Dict[str, ModelSpec] = {
    "bert": ModelSpec(_bert, _bert_inputs, lambda g: _bert_inputs(g, CALIBRATION_BATCH_SIZE), "last_hidden_state"),
    "gpt2": ModelSpec(_gpt2, lambda g, b: {"input_ids": _tokens(g, b)},
                      lambda g: _tokens(g, CALIBRATION_BATCH_SIZE), "logits",
                      tied=[("lm_head.weight", "transformer.wte.weight")]),
    "llama": ModelSpec(_llama, lambda g, b: {"input_ids": _tokens(g, b)},
                       lambda g: (_tokens(g, CALIBRATION_BATCH_SIZE),), "logits"),
    "vit": ModelSpec(_vit, lambda g, b: {"pixel_values": _pixels(g, b)},
                     lambda g: _pixels(g, CALIBRATION_BATCH_SIZE), "last_hidden_state"),
    "resnet": ModelSpec(_resnet, lambda g, b: {"pixel_values": _pixels(g, b)},
                        lambda g: {"pixel_values": _pixels(g, CALIBRATION_BATCH_SIZE)}, "pooler_output",
                        skip_int4=["embedder.embedder.convolution"]),
}

#: Output heads monoquant keeps in float by default (their error lands directly on the logits).
HEADS = {"lm_head"}


# ---------------------------------------------------------------- helpers

def _float_layer_types():
    from transformers.pytorch_utils import Conv1D
    return (nn.Linear, nn.Conv2d, Conv1D)


def expected_quantized(model: nn.Module, spec: ModelSpec, mode: Mode) -> Dict[str, str]:
    """name -> float type name of every layer that must be quantized: all Linear / Conv1D / Conv2d layers
    of the float model except the output head and, at 4 bits, the layers skipped for their K."""
    skip = set(spec.skip_int4) if mode.format == "int4" else set()
    return {n: type(m).__name__ for n, m in model.named_modules()
            if isinstance(m, _float_layer_types()) and n not in HEADS and n not in skip}


def tensor_outputs(out) -> Dict[str, torch.Tensor]:
    """The tensors of a transformers ModelOutput (caches and None entries left out)."""
    return {k: v.detach().clone() for k, v in out.items() if isinstance(v, torch.Tensor)}


def rel_error(q: torch.Tensor, f: torch.Tensor) -> float:
    return float((q.double() - f.double()).norm() / f.double().norm())


def describe(model: nn.Module) -> Dict[str, list]:
    """What a loaded model must reproduce of each quantized module (kept in sync with _FRESH_SCRIPT)."""
    return {n: [type(m).__name__, m.source_type, m.scheme.format, m.scheme.mode, m.scheme.group_size,
                m.act_scale, m.act_zero_point]
            for n, m in model.named_modules() if isinstance(m, QuantModule)}


def parameter(model: nn.Module, dotted: str):
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# The fresh process: load every saved mode of one model, run the saved inputs, write outputs back.
# A mode that fails to load or run is recorded as an error, so the others are still compared.
_FRESH_SCRIPT = textwrap.dedent("""
    import json, os, sys, traceback
    import torch
    import monoquant
    from monoquant.modules import QuantModule

    root = sys.argv[1]
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    inputs = torch.load(os.path.join(root, "inputs.pt"))

    def parameter(model, dotted):
        obj = model
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj

    results = {}
    for mode in manifest["modes"]:
        try:
            model = monoquant.load(os.path.join(root, mode))
            with torch.no_grad():
                out = model(**inputs)
            results[mode] = {
                "outputs": {k: v for k, v in out.items() if isinstance(v, torch.Tensor)},
                "modules": {n: [type(m).__name__, m.source_type, m.scheme.format, m.scheme.mode,
                                m.scheme.group_size, m.act_scale, m.act_zero_point]
                            for n, m in model.named_modules() if isinstance(m, QuantModule)},
                "tied": [parameter(model, a) is parameter(model, b) for a, b in manifest["tied"]],
                "training": model.training,
                "class": type(model).__name__,
            }
        except Exception:
            results[mode] = {"error": traceback.format_exc()}
    torch.save(results, os.path.join(root, "fresh.pt"))
""")


@dataclass
class ModeRun:
    result: Any = None                 # the QuantizationResult
    error: Optional[BaseException] = None
    outputs: Dict[str, torch.Tensor] = field(default_factory=dict)
    modules: Dict[str, list] = field(default_factory=dict)
    tied: List[bool] = field(default_factory=list)
    saved: Optional[str] = None


@dataclass
class ModelRun:
    name: str
    spec: ModelSpec
    float_model: nn.Module
    inputs: Dict[str, torch.Tensor]
    float_outputs: Dict[str, torch.Tensor]
    state_before: Dict[str, torch.Tensor]
    modes: Dict[str, ModeRun]
    fresh: Dict[str, dict]
    fresh_stderr: str

    def mode(self, key: str) -> ModeRun:
        run = self.modes[key]
        if run.error is not None:
            raise run.error
        return run


@pytest.fixture(scope="module", params=list(MODELS))
def model_run(request, tmp_path_factory) -> ModelRun:
    """Quantize one model in every mode, run, save, and load all modes in one fresh process."""
    name = request.param
    spec = MODELS[name]
    root = tmp_path_factory.mktemp("architectures") / name
    root.mkdir()
    torch.manual_seed(0)
    model = spec.build().eval()
    state_before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    inputs = spec.inputs(torch.Generator().manual_seed(1234), 2)
    torch.save(inputs, root / "inputs.pt")
    with torch.no_grad():
        float_outputs = tensor_outputs(model(**inputs))
    g = torch.Generator().manual_seed(99)  # calibration batches differ from the test inputs
    calibration = [spec.calibration_batch(g) for _ in range(CALIBRATION_BATCHES)]

    modes: Dict[str, ModeRun] = {}
    for key, mode in MODES.items():
        run = ModeRun()
        modes[key] = run
        kwargs = dict(mode.kwargs)
        if mode.static:
            kwargs["calibration_data"] = calibration
        if mode.format == "int4" and spec.skip_int4:
            kwargs["skip"] = spec.skip_int4
        try:
            run.result = monoquant.quantize(model, **kwargs)
            with torch.no_grad():
                run.outputs = tensor_outputs(run.result.model(**inputs))
            run.modules = describe(run.result.model)
            run.tied = [parameter(run.result.model, a) is parameter(run.result.model, b) for a, b in spec.tied]
            run.saved = str(root / key)
            run.result.save(run.saved)
        except Exception as e:  # re-raised by the tests of this mode (ModelRun.mode)
            run.error = e

    saved = [k for k, r in modes.items() if r.saved is not None and r.error is None]
    (root / "manifest.json").write_text(json.dumps({"modes": saved, "tied": spec.tied}))
    script = root / "fresh_load.py"
    script.write_text(_FRESH_SCRIPT)
    env = dict(os.environ, MONOQUANT_NO_PROGRESS="1")
    proc = subprocess.run([sys.executable, str(script), str(root)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"fresh-process load of {name} failed:\n{proc.stderr[-4000:]}"
    fresh = torch.load(root / "fresh.pt")
    return ModelRun(name, spec, model, inputs, float_outputs, state_before, modes, fresh, proc.stderr)


mode_params = pytest.mark.parametrize("mode_key", list(MODES))


# ---------------------------------------------------------------- the tests

@mode_params
def test_quantized_output_close_to_float_but_changed(model_run, mode_key):
    run = model_run.mode(mode_key)
    key = model_run.spec.output
    f, q = model_run.float_outputs[key], run.outputs[key]
    assert q.shape == f.shape and q.dtype == f.dtype
    assert bool(torch.isfinite(q).all())
    err = rel_error(q, f)
    bound = REL_ERROR_BOUND[MODES[mode_key].family]
    assert err < bound, f"{model_run.name} {mode_key}: relative output error {err:.4g} >= {bound}"
    # Really quantized: not the float computation passed through.
    assert not torch.equal(q, f) and err > 0
    # Every other output (pooler, hidden states) came out finite and of the float model's shape too.
    assert set(run.outputs) == set(model_run.float_outputs)
    for k, t in run.outputs.items():
        assert t.shape == model_run.float_outputs[k].shape and bool(torch.isfinite(t).all()), k


@mode_params
def test_report_and_modules_name_the_expected_layers(model_run, mode_key):
    run = model_run.mode(mode_key)
    mode = MODES[mode_key]
    want = expected_quantized(model_run.float_model, model_run.spec, mode)
    assert want, "the model has no layers to quantize: the test would prove nothing"
    report = run.result.report
    assert {l.name for l in report.quantized} == set(want)
    assert report.totals()["layers_quantized"] == len(want)
    qmodel = run.result.model
    for layer in report.quantized:
        m = qmodel.get_submodule(layer.name)
        float_type = want[layer.name]
        assert layer.type == float_type
        # GPT-2's Conv1D (weight [in, out]) runs as a QuantLinear that remembers where it came from.
        assert isinstance(m, QuantConv2d if float_type == "Conv2d" else QuantLinear), (layer.name, type(m))
        assert m.source_type == float_type
        assert (m.scheme.format, m.scheme.mode, m.scheme.group_size) == (mode.format, mode.mode, mode.group_size)
        assert layer.scheme == m.scheme.label
        if mode.static:
            assert 0 < m.act_scale < float("inf"), layer.name
        # The report's "after" is the quantized module's bytes, fewer than the float weight's.
        assert layer.bytes_after == m.weight_nbytes < layer.bytes_before
    # What was kept: the output head always, the layers with a ragged K at 4 bits, nothing else
    # of the candidate types; all with a reason.
    kept = {l.name: l for l in report.skipped}
    for name, m in model_run.float_model.named_modules():
        if isinstance(m, _float_layer_types()) and name not in want:
            assert name in kept and kept[name].reason, name
            assert not isinstance(qmodel.get_submodule(name), QuantModule)
    if "lm_head" in kept:
        assert "output head" in kept["lm_head"].reason
    for name in model_run.spec.skip_int4 if mode.format == "int4" else []:
        assert "skip" in kept[name].reason


@mode_params
def test_fresh_process_load_is_bit_identical(model_run, mode_key):
    run = model_run.mode(mode_key)
    assert {"config.json", "model.safetensors"} <= set(os.listdir(run.saved))
    fresh = model_run.fresh.get(mode_key)
    assert fresh is not None, f"{mode_key} was not loaded in the fresh process"
    assert "error" not in fresh, f"monoquant.load({run.saved!r}) failed in a fresh process:\n{fresh.get('error')}"
    # The same quantized modules (type, scheme, static activation parameters) ...
    assert fresh["modules"] == run.modules
    assert not fresh["training"]
    assert fresh["class"] == type(model_run.float_model).__name__  # the saved architecture, not AutoModel's
    # ... and the same outputs, bit for bit.
    assert set(fresh["outputs"]) == set(run.outputs)
    for k, want in run.outputs.items():
        got = fresh["outputs"][k]
        assert got.dtype == want.dtype and got.shape == want.shape, k
        assert torch.equal(got, want), f"{model_run.name} {mode_key} {k}: max |diff| {(got - want).abs().max()}"


@pytest.mark.parametrize("model_run", [n for n, s in MODELS.items() if s.tied], indirect=True)
@mode_params
def test_tied_weights_stay_tied(model_run, mode_key):
    run = model_run.mode(mode_key)
    for a, b in model_run.spec.tied:  # tied in the float model to begin with
        assert parameter(model_run.float_model, a) is parameter(model_run.float_model, b)
    assert run.tied == [True] * len(model_run.spec.tied), "tie broken by quantize"
    fresh = model_run.fresh[mode_key]
    assert "error" not in fresh, fresh.get("error")
    assert fresh["tied"] == [True] * len(model_run.spec.tied), "tie broken by save + monoquant.load"
    if model_run.name == "gpt2":  # the head stays a float Linear sharing wte's parameter
        q = run.result.model
        assert type(q.lm_head) is nn.Linear
        assert q.lm_head.weight is q.transformer.wte.weight


def test_input_model_untouched(model_run):
    # Every mode has run on this model by now (the fixture quantized it eight times).
    model = model_run.float_model
    after = model.state_dict()
    assert set(after) == set(model_run.state_before)
    for k, v in model_run.state_before.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    assert not any(isinstance(m, QuantModule) for m in model.modules())
    for key, run in model_run.modes.items():
        if run.result is not None:
            assert run.result.model is not model, key


def test_error_bound_rejects_garbage_weights(model_run):
    """The negative control of REL_ERROR_BOUND: with every quantizable layer's weight replaced by random
    values of the same standard deviation, the output error is far above even the 4-bit bound, so the
    bounds do tell a quantized model from a broken one."""
    garbage = copy.deepcopy(model_run.float_model)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, m in garbage.named_modules():
            if isinstance(m, _float_layer_types()) and name not in HEADS:
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * m.weight.std())
        out = garbage(**model_run.inputs)[model_run.spec.output]
    key = model_run.spec.output
    assert rel_error(out, model_run.float_outputs[key]) > 2 * REL_ERROR_BOUND["4"]


# With the default group size (128) no ResNet conv here has a K it divides: quantize says so, rightly.
@pytest.mark.filterwarnings("ignore:no layer was selected")
def test_explicit_group_size_names_the_ragged_stem_conv():
    """An explicit group_size that does not divide a layer's K is an error naming the layer (nothing is
    quantized); the default group size keeps such a layer in float with the reason in the report."""
    torch.manual_seed(0)
    model = _resnet().eval()
    stem = MODELS["resnet"].skip_int4[0]
    assert _float_conv_k(model.get_submodule(stem)) % GROUP  # the premise: K = 147
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidArgumentError, match=stem.replace(".", r"\.")):
        monoquant.quantize(model, bits=4, weight_only=True, group_size=GROUP)
    r = monoquant.quantize(model, bits=4, weight_only=True)
    kept = {l.name: l.reason for l in r.report.skipped}
    assert stem in kept and "group_size" in kept[stem]
    assert not isinstance(r.model.get_submodule(stem), QuantModule)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def _float_conv_k(conv: nn.Conv2d) -> int:
    return int(conv.weight[0].numel())
