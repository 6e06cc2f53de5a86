"""The `monoquant` binary end to end: every subcommand and flag of the checkpoint pipeline.

What is driven (always as a subprocess, with MONOQUANT_NO_PROGRESS=1 and CI=1 so that
progress, when on, is one plain line per tensor on stderr):

1. ``quantize``: every mode (W8A8 dynamic, static with a calibration file, W4A16, W4A8,
   FP16/BF16), every plan rule (--skip, --only, --override, --min-params,
   --quantize-embeddings), output kinds (--format, sharding), --threads, --json, --quiet,
   --dry-run, --strict, --force.
2. Bad inputs: the exact exit code of src/cli/exit_codes.hpp (2 usage, 3 invalid input,
   4 malformed file, 5 I/O, 6 unsupported, 7 validation failed, 8 --strict warnings) and
   the message that tells the user what to do.
3. The outputs load elsewhere: ``monoquant.load``, the ``safetensors`` package,
   ``torch.load(weights_only=True)``, transformers' ``AutoModel.from_pretrained``
   (compressed-tensors); their codes are bit-identical to the Python API's; and
   ``dequantize``, ``inspect --json``, ``validate`` and ``compare`` agree with values
   computed here in Python.
4. Atomicity: SIGINT / SIGTERM / SIGKILL during a large write and a full disk
   (``ulimit -f``) leave no output and no temporary file.

Models: a 2-layer BERT (transformers.BertConfig, seeded, saved with save_pretrained plus a
fake tokenizer) and small synthetic state dicts; a ~512 MiB float32 checkpoint for the
signal and disk-full cases, written once per module.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

# Required dependencies of the test suite: imported, never skipped.
import compressed_tensors  # noqa: F401  (transformers' compressed-tensors quantizer needs it)
import safetensors
import safetensors.torch
import transformers

import monoquant

# Exit codes (src/cli/exit_codes.hpp)
OK, USAGE, INVALID, FORMAT, IO, UNSUPPORTED, VALIDATION, STRICT = 0, 2, 3, 4, 5, 6, 7, 8

CONFIG = dict(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)

# Tolerances for last_hidden_state of the BERT (entries O(1), after a LayerNorm).
# TIGHT: both sides run the very same stored integers and scales with float activations
# (weight-only), so only fp32 summation order can differ.
TIGHT = 1e-5
# DYNAMIC: W8A8 dynamic quantizes activations per token at run time, monoquant with
# absmax/127 into [-127, 127], compressed-tensors with absmax/127.5 into [-128, 127]; the
# roundings differ by about one activation quantization step (measured 1.3e-3 to 1.5e-3 for
# this model in test_api_transformers_interop.py), so 4e-3 bounds that, while the weights
# themselves are compared bit for bit.
DYNAMIC = 4e-3


# TIGHT is a float32 bound: weight-only layers stay off the bf16 kernels (AMX-BF16 tiles, AVX-512 BF16) here (conftest.py).
pytestmark = pytest.mark.usefixtures("float32_weight_only")


# ---------------------------------------------------------------- running the binary

def cli_env(extra=None):
    env = dict(os.environ)
    env.pop("MONOQUANT_ISA", None)
    env.pop("MONOQUANT_NUM_THREADS", None)
    env.update({"MONOQUANT_NO_PROGRESS": "1", "CI": "1"})
    env.update(extra or {})
    return env


def run(cli, *args, env_extra=None, timeout=120):
    return subprocess.run([cli, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(env_extra))


def ok(cli, *args):
    r = run(cli, *args)
    assert r.returncode == OK, (args, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r


def report(cli, *args):
    """`monoquant quantize ARGS --json`: the parsed report (stdout is only the JSON)."""
    r = ok(cli, "quantize", *args, "--json")
    return json.loads(r.stdout)


def schemes(rep):
    return {t["name"]: t["scheme"] for t in rep["tensors"]}


def reasons(rep):
    return {t["name"]: t["reason"] for t in rep["tensors"]}


def load_st(path):
    return safetensors.torch.load_file(str(path))


def st_metadata(path):
    with safetensors.safe_open(str(path), "pt") as f:
        return f.metadata()


def nbytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors.values())


def listing(directory):
    return sorted(os.listdir(directory))


def fresh_bert():
    """A float BERT skeleton for monoquant.load(path, model=...) (its weights are replaced)."""
    return transformers.BertModel(transformers.BertConfig(**CONFIG)).eval()


def hidden(model, inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def sqnr_db(ref, approx):
    ref, approx = ref.double(), approx.double()
    return float(10 * torch.log10((ref * ref).sum() / ((ref - approx) ** 2).sum()))


# ---------------------------------------------------------------- models and files

@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """save_pretrained of a seeded 2-layer BERT, plus tokenizer files a quantized copy must carry."""
    d = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**CONFIG)).eval().save_pretrained(d)
    (d / "tokenizer_config.json").write_text('{"model_max_length": 512, "do_lower_case": true}\n')
    (d / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n")
    return d


@pytest.fixture(scope="module")
def float_sd(bert_dir):
    return load_st(bert_dir / "model.safetensors")


@pytest.fixture(scope="module")
def float_model(bert_dir):
    return transformers.BertModel.from_pretrained(bert_dir).eval()


@pytest.fixture(scope="module")
def linears(float_model):
    """Module names of the model's nn.Linear layers: what the default plan quantizes."""
    names = {n for n, m in float_model.named_modules() if isinstance(m, nn.Linear)}
    assert len(names) == 13  # 6 per layer and the pooler: the fixture is the model it claims to be
    return names


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, CONFIG["vocab_size"], (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row
    return {"input_ids": ids, "attention_mask": mask}


def calibration_batches():
    """8 batches of 4 = 32 samples (monoquant's minimum before it warns about too few)."""
    g = torch.Generator().manual_seed(2)
    return [{"input_ids": torch.randint(0, CONFIG["vocab_size"], (4, 12), generator=g),
             "attention_mask": torch.ones(4, 12, dtype=torch.long)} for _ in range(8)]


@pytest.fixture(scope="module")
def calib_file(float_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "stats.mqcal"
    stats = monoquant.calibrate(float_model, calibration_batches(), show_progress=False)
    monoquant.save_calibration(path, stats)
    return path


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64)).eval()


@pytest.fixture(scope="module")
def mlp_pt(mlp, tmp_path_factory):
    path = tmp_path_factory.mktemp("mlp") / "model.pt"
    torch.save(mlp.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def spiky(tmp_path_factory):
    """A heavy-tailed weight: per group of 128 one outlier at 30 sigma. INT4 cannot hold both:
    absmax rounds the bulk to zero, clipping ruins the outlier, so weight SQNR is far under 20 dB."""
    path = tmp_path_factory.mktemp("spiky") / "spiky.safetensors"
    g = torch.Generator().manual_seed(4)
    w = torch.randn(256, 512, generator=g)
    w.view(256, 4, 128)[:, :, 0] = 30.0
    safetensors.torch.save_file({"proj.weight": w, "proj.bias": torch.zeros(256)}, str(path),
                                metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory):
    """512 MiB of float32 (128 tensors of 1024 x 1024): long enough a write to interrupt."""
    d = tmp_path_factory.mktemp("big")
    path = d / "big.safetensors"
    g = torch.Generator().manual_seed(5)
    tensors = {f"layers.{i}.weight": torch.randn(1024, 1024, generator=g) for i in range(128)}
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})
    del tensors
    yield path
    shutil.rmtree(d, ignore_errors=True)  # do not keep 512 MiB per pytest run in /tmp


# ---------------------------------------------------------------- 1. quantize: modes

def test_default_bits8_dynamic_directory_output(cli, bert_dir, float_sd, linears, tmp_path):
    out = tmp_path / "q8"
    r = ok(cli, "quantize", bert_dir, "-o", out, "--bits", "8")
    # The human table ends with the totals, counted here from the model.
    assert f"{len(linears)} tensors quantized, {len(float_sd) - len(linears)} kept" in r.stdout
    # Progress: one line per input tensor on stderr (CI set, stderr not a terminal).
    assert r.stderr.count("\n") == len(float_sd) and f"[{len(float_sd)}/{len(float_sd)}]" in r.stderr
    # A transformers directory: weights, config.json with quantization_config, the tokenizer files.
    assert (out / "model.safetensors").is_file()
    for name in ("tokenizer_config.json", "vocab.txt"):
        assert (out / name).read_bytes() == (bert_dir / name).read_bytes(), name
    cfg = json.loads((out / "config.json").read_text())
    src = json.loads((bert_dir / "config.json").read_text())
    assert cfg["architectures"] == src["architectures"] and cfg["hidden_size"] == src["hidden_size"]
    qcfg = cfg["quantization_config"]
    assert qcfg["quant_method"] == "compressed-tensors"
    (group,) = qcfg["config_groups"].values()
    assert set(group["targets"]) == linears
    assert group["weights"]["num_bits"] == 8 and group["input_activations"]["dynamic"] is True
    # Default for --bits 8 is dynamic: int8 weights, one scale per output channel, no input scale.
    t = load_st(out / "model.safetensors")
    for m in linears:
        w = float_sd[m + ".weight"]
        assert t[m + ".weight"].dtype == torch.int8 and t[m + ".weight"].shape == w.shape
        assert t[m + ".weight_scale"].shape == (w.shape[0], 1)
        assert m + ".input_scale" not in t
    # Kept tensors are copied bit for bit.
    for k in ("embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight", "pooler.dense.bias"):
        assert torch.equal(t[k], float_sd[k]), k
    # A directory with config.json loads without model=.
    loaded = monoquant.load(out)
    assert isinstance(loaded.pooler.dense, monoquant.QuantLinear)
    assert loaded.pooler.dense.scheme.mode == "dynamic"


def test_model_flag_pt_input(cli, mlp, mlp_pt, tmp_path):
    out = tmp_path / "out.safetensors"
    ok(cli, "quantize", "--model", mlp_pt, "--bits", "8", "--dynamic", "-o", out)
    t = load_st(out)
    assert t["0.weight"].dtype == torch.int8 and t["2.weight"].dtype == torch.int8
    # The same codes as the Python API on the nn.Module, so the same outputs from the same kernels.
    mine = monoquant.load(out, model=nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64)))
    assert isinstance(mine[0], monoquant.QuantLinear)
    api = monoquant.quantize(mlp, bits=8, dynamic=True, show_progress=False)
    for k, v in api.model.state_dict().items():
        assert torch.equal(t[k], v), k
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(mine(x), api.model(x))  # same integers, same deterministic kernels
        assert not torch.equal(mine(x), mlp(x))  # and it is not the float model


def test_int4_weight_only_group32(cli, bert_dir, float_sd, linears, tmp_path):
    out = tmp_path / "w4.safetensors"
    rep = report(cli, bert_dir, "-o", out, "--bits", "4", "--weight-only", "--group-size", "32")
    assert {k for k, s in schemes(rep).items() if s != "float"} == {m + ".weight" for m in linears}
    assert set(schemes(rep).values()) == {"float", "W4A16-g32"}
    t = load_st(out)
    for m in linears:
        n, k = float_sd[m + ".weight"].shape
        assert t[m + ".weight_packed"].dtype == torch.int32 and t[m + ".weight_packed"].shape == (n, k // 8)
        assert t[m + ".weight_scale"].shape == (n, k // 32)
        assert t[m + ".weight_shape"].tolist() == [n, k]
        assert m + ".weight" not in t


@pytest.mark.parametrize("bits", ["4", "8"])
def test_asymmetric_weight_only_matches_python_api(cli, bert_dir, float_sd, linears, tmp_path, bits):
    """--weight-only --scheme asymmetric: a zero point per group (int4) / channel (int8), packed as
    compressed-tensors packs them, the same bytes as the Python API writes; embeddings stay symmetric."""
    out = tmp_path / "asym.safetensors"
    rep = report(cli, bert_dir, "-o", out, "--bits", bits, "--weight-only", "--scheme", "asymmetric",
                 "--group-size", "32", "--quantize-embeddings") if bits == "4" else \
        report(cli, bert_dir, "-o", out, "--bits", bits, "--weight-only", "--scheme", "asymmetric",
               "--quantize-embeddings")
    label = "W4A16-g32-asym" if bits == "4" else "W8A16-asym"
    assert {k for k, s in schemes(rep).items() if s == label} == {m + ".weight" for m in linears}
    assert schemes(rep)["embeddings.word_embeddings.weight"] == ("W4A16-g32" if bits == "4" else "W8A16")
    t = load_st(out)
    per = 32 // int(bits)
    for m in linears:
        n, k = float_sd[m + ".weight"].shape
        groups = k // 32 if bits == "4" else 1
        assert t[m + ".weight_zero_point"].dtype == torch.int32
        assert t[m + ".weight_zero_point"].shape == ((n + per - 1) // per, groups)
    assert "embeddings.word_embeddings.weight_zero_point" not in t
    api = monoquant.quantize(dict(float_sd), bits=int(bits), weight_only=True, scheme="asymmetric",
                             layer_types=(nn.Linear, nn.Embedding), show_progress=False,
                             **(dict(group_size=32) if bits == "4" else {})).model
    assert set(t) == set(api)
    for key in t:
        assert torch.equal(t[key], api[key]), key
    # Loaded back: the layers carry the zero points and run them.
    loaded = monoquant.load(out, model=fresh_bert())
    q = loaded.get_submodule(sorted(linears)[0])
    assert isinstance(q, monoquant.QuantLinear) and q.scheme.weight_symmetric is False
    # validate reads the zero points, dequantize writes (q - z) s: the loaded layers' own weights.
    r = run(cli, "validate", out, "--original", bert_dir / "model.safetensors")
    assert r.returncode == OK and "valid" in r.stdout, r.stderr
    deq = tmp_path / "deq.safetensors"
    ok(cli, "dequantize", out, "-o", deq)
    d = load_st(deq)
    for m in linears:
        assert torch.equal(d[m + ".weight"], loaded.get_submodule(m).dequantized_weight()), m


def test_int4_dynamic(cli, bert_dir, float_sd, linears, tmp_path):
    out = tmp_path / "w4a8.safetensors"
    rep = report(cli, bert_dir, "-o", out, "--bits", "4", "--dynamic", "--group-size", "32")
    assert {s for k, s in schemes(rep).items() if k in {m + ".weight" for m in linears}} == {"W4A8-dynamic-g32"}
    (group,) = json.loads(st_metadata(out)["quantization_config"])["config_groups"].values()
    assert group["weights"]["num_bits"] == 4 and group["input_activations"]["dynamic"] is True
    # The Python API on the same state dict gives the same tensors.
    api = monoquant.quantize(dict(float_sd), bits=4, dynamic=True, group_size=32, show_progress=False).model
    t = load_st(out)
    assert set(t) == set(api)
    for k in t:
        assert torch.equal(t[k], api[k]), k
    m = monoquant.load(out, model=fresh_bert())
    assert m.pooler.dense.scheme.mode == "dynamic" and m.pooler.dense.scheme.format == "int4"


@pytest.mark.parametrize("dtype_flag,dtype", [(None, torch.float16), ("bf16", torch.bfloat16)])
def test_bits16(cli, bert_dir, float_sd, linears, tmp_path, dtype_flag, dtype):
    out = tmp_path / "h.safetensors"
    args = ["--bits", "16"] + (["--dtype", dtype_flag] if dtype_flag else [])
    rep = report(cli, bert_dir, "-o", out, *args)
    label = "FP16" if dtype == torch.float16 else "BF16"
    assert {s for k, s in schemes(rep).items() if k.endswith(".weight") and k[:-7] in linears} == {label}
    t = load_st(out)
    for m in linears:
        # A plain round-to-nearest cast, the one torch does.
        assert t[m + ".weight"].dtype == dtype and torch.equal(t[m + ".weight"], float_sd[m + ".weight"].to(dtype))
        assert t[m + ".bias"].dtype == torch.float32  # biases stay in the model's dtype
    assert t["embeddings.word_embeddings.weight"].dtype == torch.float32
    loaded = monoquant.load(out, model=fresh_bert())
    assert loaded.pooler.dense.scheme.format == ("float16" if dtype == torch.float16 else "bfloat16")


def test_static_with_calibration_file(cli, bert_dir, float_model, calib_file, linears, tmp_path):
    out = tmp_path / "static.safetensors"
    ok(cli, "quantize", bert_dir, "-o", out, "--bits", "8", "--static", "--calibration", calib_file)
    t = load_st(out)
    stats = monoquant.load_calibration(calib_file)
    for m in linears:
        # CLI default for static INT8: asymmetric activations; the scale is rounded up to the
        # scale dtype, float32 here, so it is the observer's scale unchanged.
        scale, zp = stats[m]["input"].calculate_qparams(8, "asymmetric")
        assert t[m + ".input_scale"].dtype == torch.float32 and t[m + ".input_scale"].shape == (1,)
        assert torch.equal(t[m + ".input_scale"], scale.reshape(1).to(torch.float32)), m
        assert t[m + ".input_zero_point"].dtype == torch.int8
        assert int(t[m + ".input_zero_point"]) == int(zp), m
    # The Python API calibrating the same model on the same batches with the same (default)
    # observer writes the very same tensors.
    api = monoquant.quantize(float_model, bits=8, calibration_data=calibration_batches(), show_progress=False)
    sd = api.model.state_dict()
    assert set(t) == set(sd)
    for k in t:
        assert torch.equal(t[k], sd[k]), k
    layers = json.loads(ok(cli, "inspect", out, "--json").stdout)["quantized_layers"]
    assert {layer["activations"] for layer in layers} == {"static"}
    assert {layer["scheme"] for layer in layers} == {"W8A8-static"}


def test_static_symmetric_scheme(cli, bert_dir, calib_file, linears, tmp_path):
    out = tmp_path / "static_sym.safetensors"
    ok(cli, "quantize", bert_dir, "-o", out, "--bits", "8", "--static", "--calibration", calib_file,
       "--scheme", "symmetric")
    t = load_st(out)
    stats = monoquant.load_calibration(calib_file)
    for m in linears:
        scale, _ = stats[m]["input"].calculate_qparams(8, "symmetric")
        assert torch.equal(t[m + ".input_scale"], scale.reshape(1).to(torch.float32)), m
        assert m + ".input_zero_point" not in t  # symmetric: no zero point
    loaded = monoquant.load(out, model=fresh_bert())
    q = loaded.encoder.layer[0].attention.self.query
    assert q.scheme.mode == "static" and q.scheme.act_symmetric and q.act_zero_point == 0


@pytest.mark.filterwarnings("ignore:.*SQNR under 20 dB:RuntimeWarning")  # int4 absmax on a layer near 20 dB
@pytest.mark.parametrize("method", ["absmax", "mse", "hqq"])
def test_scale_method_matches_python_api(cli, bert_dir, float_sd, tmp_path, method):
    out = tmp_path / f"{method}.safetensors"
    ok(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--group-size", "32", "--scale-method", method)
    t = load_st(out)
    api = monoquant.quantize(dict(float_sd), bits=4, group_size=32, scale_method=method, show_progress=False).model
    assert set(t) == set(api)
    for k in t:
        assert torch.equal(t[k], api[k]), k
    meta = json.loads(st_metadata(out)["monoquant"])
    assert {r["scheme"]["scale_method"] for r in meta["modules"].values()} == {method}


def test_scale_methods_differ(cli, bert_dir, tmp_path):
    a, m = tmp_path / "a.safetensors", tmp_path / "m.safetensors"
    ra = report(cli, bert_dir, "-o", a, "--bits", "4", "--group-size", "32", "--scale-method", "absmax")
    rm = report(cli, bert_dir, "-o", m, "--bits", "4", "--group-size", "32", "--scale-method", "mse")
    ta, tm = load_st(a), load_st(m)
    k = "pooler.dense.weight_scale"
    assert not torch.equal(ta[k], tm[k])  # the flag does reach the quantizer
    # The MSE search starts at the absmax range (r = 1, docs/FORMAT.md) and keeps the smallest
    # error per group, so no tensor's SQNR can be lower than with absmax.
    sa = {t["name"]: t["sqnr_db"] for t in ra["tensors"] if t["quantized"]}
    sm = {t["name"]: t["sqnr_db"] for t in rm["tensors"] if t["quantized"]}
    assert set(sa) == set(sm) and all(sm[k] >= sa[k] - 1e-9 for k in sa)


# ---------------------------------------------------------------- 1. quantize: plan rules

def test_skip_name(cli, bert_dir, float_sd, linears, tmp_path):
    out = tmp_path / "s.safetensors"
    rep = report(cli, bert_dir, "-o", out, "--skip", "pooler.dense")
    assert schemes(rep)["pooler.dense.weight"] == "float"
    assert "--skip" in reasons(rep)["pooler.dense.weight"]
    assert {k for k, s in schemes(rep).items() if s != "float"} == {m + ".weight" for m in linears - {"pooler.dense"}}
    t = load_st(out)
    assert "pooler.dense.weight_scale" not in t
    assert torch.equal(t["pooler.dense.weight"], float_sd["pooler.dense.weight"])


def test_skip_regex(cli, bert_dir, linears, tmp_path):
    rep = report(cli, bert_dir, "-o", tmp_path / "s.safetensors", "--skip", r"re:encoder\.layer\.1\.")
    quantized = {k[:-7] for k, s in schemes(rep).items() if s != "float"}
    assert quantized == {m for m in linears if not m.startswith("encoder.layer.1.")}
    assert "matches --skip" in reasons(rep)["encoder.layer.1.output.dense.weight"]
    # A pattern that matches nothing is a note, not an error.
    rep = report(cli, bert_dir, "-o", tmp_path / "s2.safetensors", "--skip", "re:nothing_like_this")
    assert any("matched nothing" in n for n in rep["notes"])
    assert len([s for s in schemes(rep).values() if s != "float"]) == len(linears)


def test_only_regex(cli, bert_dir, linears, tmp_path):
    rep = report(cli, bert_dir, "-o", tmp_path / "o.safetensors", "--only", r"re:.*attention\.self\.")
    quantized = {k[:-7] for k, s in schemes(rep).items() if s != "float"}
    assert quantized == {m for m in linears if ".attention.self." in m} and len(quantized) == 6
    assert reasons(rep)["pooler.dense.weight"] == "not matched by --only"


def test_override_bits(cli, bert_dir, float_sd, linears, tmp_path):
    out = tmp_path / "ov.safetensors"
    rep = report(cli, bert_dir, "-o", out, "--bits", "4", "--group-size", "32", "--override", "re:.*intermediate.*=8")
    s = schemes(rep)
    for m in linears:
        assert s[m + ".weight"] == ("W8A16" if "intermediate" in m else "W4A16-g32"), m
    t = load_st(out)
    n, k = float_sd["encoder.layer.0.intermediate.dense.weight"].shape
    # W8A16 is pack-quantized 8 bit: four codes per int32 word.
    assert t["encoder.layer.0.intermediate.dense.weight_packed"].shape == (n, k // 4)
    assert t["encoder.layer.0.intermediate.dense.weight_scale"].shape == (n, 1)
    loaded = monoquant.load(out, model=fresh_bert())
    assert loaded.encoder.layer[0].intermediate.dense.scheme.format == "int8"
    assert loaded.encoder.layer[0].output.dense.scheme.format == "int4"


def test_min_params(cli, bert_dir, float_sd, linears, tmp_path):
    rep = report(cli, bert_dir, "-o", tmp_path / "mp.safetensors", "--bits", "4", "--group-size", "32",
                 "--min-params", "5000")
    for m in linears:
        numel = float_sd[m + ".weight"].numel()
        scheme = schemes(rep)[m + ".weight"]
        if numel < 5000:
            assert scheme == "float" and "--min-params 5000" in reasons(rep)[m + ".weight"], m
        else:
            assert scheme == "W4A16-g32", m
    assert any(float_sd[m + ".weight"].numel() < 5000 for m in linears)  # the rule had something to do
    assert any(float_sd[m + ".weight"].numel() >= 5000 for m in linears)


def test_quantize_embeddings(cli, bert_dir, float_sd, tmp_path):
    out = tmp_path / "emb.safetensors"
    emb = ["embeddings.word_embeddings", "embeddings.position_embeddings", "embeddings.token_type_embeddings"]
    plain = report(cli, bert_dir, "-o", tmp_path / "plain.safetensors")
    assert all(schemes(plain)[e + ".weight"] == "float" for e in emb)
    assert "--quantize-embeddings" in reasons(plain)["embeddings.word_embeddings.weight"]
    rep = report(cli, bert_dir, "-o", out, "--quantize-embeddings")
    assert all(schemes(rep)[e + ".weight"] == "W8A16" for e in emb)  # looked up, never multiplied: weight-only
    api = monoquant.quantize(dict(float_sd), bits=8, layer_types=(nn.Linear, nn.Embedding), show_progress=False).model
    t = load_st(out)
    assert set(t) == set(api)
    for k in t:
        assert torch.equal(t[k], api[k]), k
    loaded = monoquant.load(out, model=fresh_bert())
    assert isinstance(loaded.embeddings.word_embeddings, monoquant.QuantEmbedding)


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "dir"])
def test_format_flag_overrides_the_path(cli, bert_dir, linears, tmp_path, fmt):
    out = tmp_path / "quantized.model"  # an extension that names no format
    ok(cli, "quantize", bert_dir, "-o", out, "--format", fmt)
    if fmt == "safetensors":
        t = load_st(out)
    elif fmt == "pt":
        t = torch.load(out, weights_only=True)
        assert isinstance(t.pop("__metadata__"), dict)
    else:
        assert out.is_dir() and (out / "config.json").is_file()
        t = load_st(out / "model.safetensors")
    assert {k[: -len(".weight_scale")] for k in t if k.endswith(".weight_scale")} == linears
    assert all(t[m + ".weight"].dtype == torch.int8 for m in linears)


def test_sharded_directory(cli, bert_dir, inputs, tmp_path):
    out = tmp_path / "sharded"
    rep = report(cli, bert_dir, "-o", out, "--max-shard-size", "100KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and not (out / "model.safetensors").exists()
    assert set(index["weight_map"].values()) == set(shards)
    seen = {}
    for name in shards:
        part = load_st(out / name)
        # Greedy shards: under the limit, unless one tensor alone is bigger.
        assert nbytes(part) <= 100_000 or len(part) == 1, name
        for k in part:
            assert index["weight_map"][k] == name
        seen.update(part)
    assert set(seen) == set(index["weight_map"])
    assert index["metadata"]["total_size"] == nbytes(seen) == rep["totals"]["bytes_after"]
    # Same tensors as the unsharded file.
    single = tmp_path / "single.safetensors"
    ok(cli, "quantize", bert_dir, "-o", single)
    one = load_st(single)
    assert set(one) == set(seen) and all(torch.equal(one[k], seen[k]) for k in one)
    sharded_model = monoquant.load(out)
    assert torch.equal(hidden(sharded_model, inputs), hidden(monoquant.load(single, model=fresh_bert()), inputs))
    # transformers reads the sharded directory too.
    tf = transformers.AutoModel.from_pretrained(out)
    assert "weight_scale" in dict(tf.pooler.dense.named_parameters())


def test_threads_do_not_change_the_file(cli, bert_dir, tmp_path):
    outs = []
    for i, args in enumerate([[], ["--threads", "1"], ["--threads", "2"]]):
        out = tmp_path / f"t{i}.safetensors"
        ok(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--group-size", "32", *args)
        outs.append(out.read_bytes())
    r = run(cli, "--threads", "1", "quantize", bert_dir, "-o", tmp_path / "g.safetensors", "--bits", "4",
            "--group-size", "32")
    assert r.returncode == OK, r.stderr
    outs.append((tmp_path / "g.safetensors").read_bytes())
    assert all(o == outs[0] for o in outs)
    assert run(cli, "quantize", bert_dir, "-o", tmp_path / "x.safetensors", "--threads", "0").returncode == USAGE


def test_json_report(cli, bert_dir, float_sd, linears, tmp_path):
    out = tmp_path / "j.safetensors"
    r = ok(cli, "quantize", bert_dir, "-o", out, "--json")
    assert r.stderr == ""  # --json: no progress either
    rep = json.loads(r.stdout)
    rows = {t["name"]: t for t in rep["tensors"]}
    assert list(rows) == list(float_sd)  # one row per input tensor, in input order
    written = load_st(out)
    deq = monoquant.io.load_quantized(out)
    totals = rep["totals"]
    assert totals["tensors_quantized"] == len(linears)
    assert totals["tensors_kept"] == len(float_sd) - len(linears)
    assert totals["bytes_before"] == nbytes(float_sd)
    assert totals["bytes_after"] == nbytes(written)
    assert totals["compression_ratio"] == pytest.approx(totals["bytes_before"] / totals["bytes_after"], rel=1e-12)
    assert totals["compression_ratio"] > 1
    for name, row in rows.items():
        t = float_sd[name]
        assert row["shape"] == list(t.shape) and row["bytes_before"] == t.numel() * 4
        if row["quantized"]:
            m = name[:-7]
            assert row["bytes_after"] == written[m + ".weight"].numel() + written[m + ".weight_scale"].numel() * 4
            # The report's SQNR is the one computed here from the file's dequantized weight.
            assert row["sqnr_db"] == pytest.approx(sqnr_db(t, deq[name]), rel=1e-4), name
        else:
            assert row["sqnr_db"] is None and row["bytes_after"] == row["bytes_before"] and row["reason"]
    sq = [row["sqnr_db"] for row in rows.values() if row["quantized"]]
    assert totals["min_sqnr_db"] == pytest.approx(min(sq))
    assert totals["mean_sqnr_db"] == pytest.approx(sum(sq) / len(sq))
    assert rep["warnings"] == []


def test_quiet(cli, bert_dir, spiky, tmp_path):
    out = tmp_path / "q.safetensors"
    r = ok(cli, "quantize", bert_dir, "-o", out, "--quiet")
    assert r.stdout == "" and r.stderr == "" and out.is_file()
    # Warnings still reach stderr under --quiet.
    r = ok(cli, "quantize", spiky, "-o", tmp_path / "sp.safetensors", "--bits", "4", "--quiet")
    assert r.stdout == "" and "warning:" in r.stderr and "SQNR" in r.stderr


def test_dry_run_text(cli, bert_dir, float_sd, tmp_path):
    out = tmp_path / "never.safetensors"
    before = listing(tmp_path)
    r = ok(cli, "quantize", bert_dir, "-o", out, "--dry-run")
    assert not out.exists() and listing(tmp_path) == before and r.stderr == ""
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line and line.split()[0] in float_sd}
    assert set(lines) == set(float_sd)  # one line per tensor, with its scheme and reason
    assert "norm (stays float)" in lines["embeddings.LayerNorm.weight"]
    assert "W8A8-dynamic" in lines["encoder.layer.0.attention.self.query.weight"]
    assert "--quantize-embeddings" in lines["embeddings.word_embeddings.weight"]
    # The byte forecast: the input's tensor bytes, and what the real run then writes.
    after = report(cli, bert_dir, "-o", tmp_path / "real.safetensors")["totals"]["bytes_after"]
    assert f"dry run: {nbytes(float_sd)} -> {after} bytes of tensor data; nothing was written" in r.stdout
    # -o is optional with --dry-run
    assert "nothing was written" in ok(cli, "quantize", bert_dir, "--dry-run").stdout


def test_dry_run_json(cli, bert_dir, float_sd, linears, tmp_path):
    before = listing(tmp_path)
    r = ok(cli, "quantize", bert_dir, "-o", tmp_path / "never", "--dry-run", "--json", "--bits", "4",
           "--group-size", "32")
    assert listing(tmp_path) == before
    plan = json.loads(r.stdout)
    rows = {p["tensor"]: p for p in plan["plan"]}
    assert list(rows) == list(float_sd)
    assert {k for k, p in rows.items() if p["quantize"]} == {m + ".weight" for m in linears}
    assert all(p["reason"] for p in rows.values())
    assert rows["pooler.dense.weight"]["scheme"] == "W4A16-g32"
    assert rows["pooler.dense.weight"]["role"] == "linear weight"
    assert rows["embeddings.LayerNorm.weight"]["role"] == "norm"


def test_strict_sqnr_warning_writes_nothing(cli, spiky, tmp_path):
    out = tmp_path / "strict.safetensors"
    # Without --strict: written, with a warning about the SQNR.
    rep = report(cli, spiky, "-o", tmp_path / "loose.safetensors", "--bits", "4")
    assert rep["totals"]["min_sqnr_db"] < 20 and any("SQNR" in w for w in rep["warnings"])
    before = listing(tmp_path)
    r = run(cli, "quantize", spiky, "-o", out, "--bits", "4", "--strict")
    assert r.returncode == STRICT, (r.returncode, r.stderr)
    assert "--strict" in r.stderr and "nothing was written" in r.stderr and "proj.weight" in r.stderr
    assert not out.exists() and listing(tmp_path) == before


def test_strict_plan_warning(cli, bert_dir, tmp_path):
    out = tmp_path / "strict.safetensors"
    # An embedding quantized on request (through --only) is a plan warning.
    r = run(cli, "quantize", bert_dir, "-o", out, "--only", "re:.*word_embeddings.*", "--strict")
    assert r.returncode == STRICT and "sensitive tensor" in r.stderr and not out.exists()
    r = run(cli, "quantize", bert_dir, "--dry-run", "--only", "re:.*word_embeddings.*", "--strict")
    assert r.returncode == STRICT and "warning: sensitive tensor" in r.stdout
    # No warnings: --strict changes nothing.
    ok(cli, "quantize", bert_dir, "-o", out, "--strict")
    assert out.is_file()


def test_force_requantize(cli, bert_dir, tmp_path):
    first = tmp_path / "first.safetensors"
    ok(cli, "quantize", bert_dir, "-o", first)
    r = run(cli, "quantize", first, "-o", tmp_path / "again.safetensors")
    assert r.returncode == INVALID and "already quantized" in r.stderr and "--force" in r.stderr
    assert not (tmp_path / "again.safetensors").exists()
    qdir = tmp_path / "qdir"
    ok(cli, "quantize", bert_dir, "-o", qdir)
    r = run(cli, "quantize", qdir, "-o", tmp_path / "again2.safetensors")
    assert r.returncode == INVALID and "config.json has a quantization_config" in r.stderr
    # --force lets it through.
    ok(cli, "quantize", first, "-o", tmp_path / "again.safetensors", "--force")
    assert (tmp_path / "again.safetensors").is_file()


@pytest.mark.parametrize("first_args", [[], ["--skip", "pooler.dense"]], ids=["all_quantized", "one_float_left"])
def test_force_output_is_still_a_quantized_checkpoint(cli, bert_dir, linears, inputs, tmp_path, first_args):
    """Re-quantizing with --force ("quantize its float tensors again") must keep the layers that
    already were quantized described in quantization_config / the monoquant metadata: the output
    is a checkpoint that inspect, validate and monoquant.load understand, not int8 codes that a
    reader takes for float weights."""
    first = tmp_path / "first.safetensors"
    ok(cli, "quantize", bert_dir, "-o", first, *first_args)
    again = tmp_path / "again.safetensors"
    ok(cli, "quantize", first, "-o", again, "--force")
    r = run(cli, "inspect", again, "--json")
    assert r.returncode == OK, f"inspect of the --force output fails: {r.stderr.strip()}"
    assert {layer["module"] for layer in json.loads(r.stdout)["quantized_layers"]} == linears
    r = run(cli, "validate", again)
    assert r.returncode == OK, r.stdout + r.stderr
    described = json.loads(st_metadata(again)["monoquant"])["modules"]
    assert set(described) == linears, f"the monoquant metadata describes only {sorted(described)}"
    loaded = monoquant.load(again, model=fresh_bert())
    assert {n for n, m in loaded.named_modules() if isinstance(m, monoquant.QuantLinear)} == linears
    # The encoder layers keep their codes, and last_hidden_state does not pass through the pooler
    # (the one layer that may have been quantized only now): the same outputs, exactly.
    assert torch.equal(hidden(loaded, inputs), hidden(monoquant.load(first, model=fresh_bert()), inputs))


# ---------------------------------------------------------------- 2. bad inputs

def test_missing_input_is_io_error(cli, tmp_path):
    r = run(cli, "quantize", tmp_path / "nope.safetensors", "-o", tmp_path / "o.safetensors")
    assert r.returncode == IO and "nope.safetensors" in r.stderr and "no such file" in r.stderr
    r = run(cli, "quantize", tmp_path / "nope.safetensors", "--dry-run")
    assert r.returncode == IO


def test_hostile_pickle_executes_nothing(cli, tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"layer.weight": torch.randn(64, 64), "payload": Evil()}, path, pickle_protocol=2)
    for args in (["quantize", path, "-o", tmp_path / "e.safetensors"], ["inspect", path]):
        r = run(cli, *args)
        assert r.returncode == FORMAT, (args, r.returncode, r.stderr)
        assert "system" in r.stderr and "nothing was executed" in r.stderr
        assert not marker.exists()
    assert not (tmp_path / "e.safetensors").exists()
    # The file is really hostile: an ordinary unpickler does run the payload.
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"],
                   capture_output=True, timeout=120)
    assert marker.exists()


def test_truncated_and_garbage_safetensors(cli, bert_dir, tmp_path):
    data = (bert_dir / "model.safetensors").read_bytes()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    r = run(cli, "quantize", trunc, "-o", tmp_path / "o.safetensors")
    assert r.returncode == FORMAT and "trunc.safetensors" in r.stderr and "truncated" in r.stderr
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    r = run(cli, "quantize", garbage, "-o", tmp_path / "o.safetensors")
    assert r.returncode == FORMAT and "garbage.safetensors" in r.stderr
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("args,needle", [
    (["--bogus"], "--bogus"),
    (["--bits", "5"], "--bits"),
    (["--dynamic", "--weight-only"], "excludes"),
    (["--weight-only", "--static"], "excludes"),
    (["--scheme", "sideways"], "--scheme"),
    (["--scale-method", "guess"], "--scale-method"),
    (["--format", "zip"], "--format"),
    (["--dtype", "f8"], "--dtype"),
    (["--bits", "4", "--group-size", "0"], "--group-size"),
    (["--min-params", "-1"], "--min-params"),
])
def test_usage_errors(cli, bert_dir, tmp_path, args, needle):
    out = tmp_path / "o.safetensors"
    r = run(cli, "quantize", bert_dir, "-o", out, *args)
    assert r.returncode == USAGE, (args, r.returncode, r.stderr)
    assert needle in r.stderr and r.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("args,needles", [
    (["--bits", "4", "--group-size", "48"],
     ["tensor 'encoder.layer.0.attention.output.dense.weight'", "K = 64", "group size 48", "try --group-size 32"]),
    (["--static"], ["--static needs --calibration"]),
    (["--calibration", "CALIB"], ["--calibration is only used with --static"]),
    (["--bits", "8", "--group-size", "32"], ["--group-size applies to --bits 4"]),
    (["--bits", "7", "--weight-only"], ["--bits 7 is for int8 activations"]),
    (["--bits", "16", "--dynamic"], ["--bits 16"]),
    (["--bits", "16", "--scale-method", "mse"], ["--scale-method"]),
    (["--dtype", "bf16"], ["--dtype applies to --bits 16"]),
    (["--skip", "pooler"], ["no module or tensor named 'pooler'", "did you mean", "pooler.dense"]),
    (["--only", "nosuchlayer"], ["--only", "nosuchlayer"]),
    (["--skip", "re:("], ["not a valid regular expression"]),
    (["--override", "justtext"], ["PATTERN=BITS"]),
    (["--override", "re:.*=5"], ["bits must be 4, 8 or 16"]),
    (["--max-shard-size", "1MB"], ["--max-shard-size applies to directory output"]),
    (["--format", "dir", "--max-shard-size", "10XB"], ["unknown unit"]),
])
def test_invalid_input(cli, bert_dir, calib_file, tmp_path, args, needles):
    out = tmp_path / "o.safetensors"
    args = [str(calib_file) if a == "CALIB" else a for a in args]
    r = run(cli, "quantize", bert_dir, "-o", out, *args)
    assert r.returncode == INVALID, (args, r.returncode, r.stderr)
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    assert not out.exists()


def test_output_is_the_input(cli, bert_dir, tmp_path):
    src = tmp_path / "m.safetensors"
    shutil.copy(bert_dir / "model.safetensors", src)
    original = src.read_bytes()
    link = tmp_path / "link.safetensors"
    link.symlink_to(src)
    for inp, out, needle in [(src, src, "is the input"), (src, link, "is the input"),
                             (bert_dir, bert_dir, "is the input"),
                             (bert_dir, bert_dir / "model.safetensors", "is a file of the input"),
                             (bert_dir, bert_dir / "config.json", "is a file of the input")]:
        r = run(cli, "quantize", inp, "-o", out)
        assert r.returncode == INVALID and needle in r.stderr, (inp, out, r.returncode, r.stderr)
    assert src.read_bytes() == original


def test_input_given_twice_and_no_output(cli, bert_dir, mlp_pt, tmp_path):
    r = run(cli, "quantize", bert_dir, "--model", mlp_pt, "-o", tmp_path / "o.safetensors")
    assert r.returncode == INVALID and "give the input once" in r.stderr
    r = run(cli, "quantize", bert_dir)
    assert r.returncode == INVALID and "no output" in r.stderr


def test_unsupported_asymmetric_dynamic(cli, bert_dir, tmp_path):
    r = run(cli, "quantize", bert_dir, "-o", tmp_path / "o.safetensors", "--scheme", "asymmetric")
    assert r.returncode == UNSUPPORTED and "dynamic activations are symmetric" in r.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_calibration_file_problems(cli, bert_dir, tmp_path):
    r = run(cli, "quantize", bert_dir, "-o", tmp_path / "o.safetensors", "--static", "--calibration",
            tmp_path / "missing.mqcal")
    assert r.returncode == IO and "missing.mqcal" in r.stderr
    bad = tmp_path / "bad.mqcal"
    bad.write_text("not a calibration file")
    r = run(cli, "quantize", bert_dir, "-o", tmp_path / "o.safetensors", "--static", "--calibration", bad)
    assert r.returncode == FORMAT and "bad.mqcal" in r.stderr


def test_output_directory_missing(cli, bert_dir, tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "o.safetensors"
    r = run(cli, "quantize", bert_dir, "-o", out)
    assert r.returncode == IO and "o.safetensors" in r.stderr


# ---------------------------------------------------------------- 3. the outputs load elsewhere

@pytest.mark.parametrize("bits_args,api_kwargs", [
    (["--bits", "8"], dict(bits=8)),
    (["--bits", "7"], dict(bits=7)),
    (["--bits", "4", "--group-size", "32"], dict(bits=4, group_size=32)),
])
def test_codes_bit_identical_to_python_api(cli, bert_dir, float_sd, linears, tmp_path, bits_args, api_kwargs):
    out = tmp_path / "cli.safetensors"
    ok(cli, "quantize", bert_dir, "-o", out, *bits_args)
    cli_t = load_st(out)
    # A directory with config.json: the Python API builds the transformers model and quantizes it.
    sd = monoquant.quantize(str(bert_dir), show_progress=False, **api_kwargs).model.state_dict()
    common = [k for k in cli_t if k in sd]
    scales = {k for k in cli_t if k.endswith(".weight_scale")}
    assert {k[: -len(".weight_scale")] for k in scales} == linears
    assert scales <= set(common)  # the quantized tensors are among those compared
    for k in common:
        assert cli_t[k].dtype == sd[k].dtype and torch.equal(cli_t[k], sd[k]), k
    # And through the state-dict path (the checkpoint pipeline the CLI uses) every tensor.
    api_sd = monoquant.quantize(dict(float_sd), show_progress=False, **api_kwargs).model
    assert set(api_sd) == set(cli_t)
    for k in cli_t:
        assert torch.equal(cli_t[k], api_sd[k]), k


def test_outputs_load_with_monoquant_safetensors_and_torch(cli, bert_dir, inputs, linears, tmp_path):
    st_out, pt_out, dir_out = tmp_path / "q.safetensors", tmp_path / "q.pt", tmp_path / "qdir"
    for out in (st_out, pt_out, dir_out):
        ok(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--group-size", "32")
    from_st = load_st(st_out)
    from_pt = torch.load(pt_out, weights_only=True)  # safe unpickling of our .pt works
    meta = from_pt.pop("__metadata__")
    assert json.loads(meta["quantization_config"])["quant_method"] == "compressed-tensors"
    from_dir = load_st(dir_out / "model.safetensors")
    assert set(from_st) == set(from_pt) == set(from_dir)
    for k in from_st:
        assert torch.equal(from_st[k], from_pt[k]) and torch.equal(from_st[k], from_dir[k]), k
    # monoquant.load: non-directory outputs need the float architecture, a directory does not.
    models = [monoquant.load(st_out, model=fresh_bert()), monoquant.load(pt_out, model=fresh_bert()),
              monoquant.load(dir_out)]
    for m in models:
        assert {n for n, mod in m.named_modules() if isinstance(mod, monoquant.QuantLinear)} == linears
    ref = hidden(models[0], inputs)
    for m in models[1:]:
        assert torch.equal(hidden(m, inputs), ref)


@pytest.mark.parametrize("case", ["w4a16_g32", "w8a8_dynamic", "w7a8_dynamic"])
def test_transformers_loads_cli_directory(cli, bert_dir, float_model, inputs, linears, tmp_path, case):
    out = tmp_path / case
    args = {"w4a16_g32": ["--bits", "4", "--group-size", "32"], "w8a8_dynamic": ["--bits", "8", "--dynamic"],
            "w7a8_dynamic": ["--bits", "7", "--dynamic"]}[case]
    ok(cli, "quantize", bert_dir, "-o", out, *args)
    tf = transformers.AutoModel.from_pretrained(out).eval()
    assert type(tf) is transformers.BertModel
    for m in linears:  # compressed-tensors modules, still compressed before the first forward
        params = dict(tf.get_submodule(m).named_parameters())
        assert "weight_scale" in params, m
        assert ("weight_packed" in params) == (case == "w4a16_g32"), m
        weights = tf.get_submodule(m).quantization_scheme.weights
        assert weights.num_bits == {"w4a16_g32": 4, "w8a8_dynamic": 8, "w7a8_dynamic": 7}[case], m
        if case == "w7a8_dynamic":
            assert int(params["weight"].abs().max()) == 63, m
    ours = monoquant.load(out)
    got, want = hidden(tf, inputs), hidden(ours, inputs)
    for m in linears:  # transformers decompresses to monoquant's dequantized weights, bit for bit
        assert torch.equal(tf.get_submodule(m).weight, ours.get_submodule(m).dequantized_weight()), m
    floats = hidden(float_model, inputs)
    if case == "w4a16_g32":
        assert float((got - want).abs().max()) <= TIGHT
        assert float((floats - want).abs().max()) > TIGHT  # a float load would fail the line above
    else:
        assert float((got - want).abs().max()) <= DYNAMIC


@pytest.mark.parametrize("dtype_flag,dtype", [(None, torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)])
def test_dequantize(cli, bert_dir, linears, tmp_path, dtype_flag, dtype):
    q = tmp_path / "q.safetensors"
    ok(cli, "quantize", bert_dir, "-o", q, "--bits", "4", "--group-size", "32")
    out = tmp_path / "f.safetensors"
    r = ok(cli, "dequantize", q, "-o", out, *(["--dtype", dtype_flag] if dtype_flag else []))
    assert f"{len(linears)} quantized layers dequantized" in r.stdout
    f = load_st(out)
    ref = monoquant.io.load_quantized(q)  # monoquant's dequantize of the file, float32
    model_deq = monoquant.dequantize(monoquant.load(q, model=fresh_bert())).state_dict()
    assert set(f) == set(model_deq)  # the float model's tensors again, no codes or scales
    for m in linears:
        w = f[m + ".weight"]
        assert w.dtype == dtype
        assert torch.equal(w, ref[m + ".weight"].to(dtype)), m
        assert torch.equal(w, model_deq[m + ".weight"].to(dtype)), m
    assert torch.equal(f["embeddings.word_embeddings.weight"], model_deq["embeddings.word_embeddings.weight"])
    # The result is a plain float checkpoint: dequantizing it again is refused.
    assert run(cli, "dequantize", out, "-o", tmp_path / "again.safetensors").returncode == INVALID


def test_dequantize_directory_and_errors(cli, bert_dir, tmp_path):
    qdir, fdir = tmp_path / "q", tmp_path / "f"
    ok(cli, "quantize", bert_dir, "-o", qdir)
    ok(cli, "dequantize", qdir, "-o", fdir)
    cfg = json.loads((fdir / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["architectures"] == ["BertModel"]
    assert (fdir / "vocab.txt").read_bytes() == (bert_dir / "vocab.txt").read_bytes()
    tf = transformers.AutoModel.from_pretrained(fdir)
    assert type(tf.pooler.dense) is nn.Linear
    assert torch.equal(tf.pooler.dense.weight, monoquant.load(qdir).pooler.dense.dequantized_weight())
    r = run(cli, "dequantize", bert_dir, "-o", tmp_path / "x.safetensors")
    assert r.returncode == INVALID and "is not quantized" in r.stderr
    r = run(cli, "dequantize", tmp_path / "missing.safetensors", "-o", tmp_path / "x.safetensors")
    assert r.returncode == IO
    r = run(cli, "dequantize", qdir, "-o", qdir)
    assert r.returncode == INVALID and "is the input" in r.stderr
    assert run(cli, "dequantize", qdir, "-o", tmp_path / "y.safetensors", "--dtype", "f8").returncode == USAGE


def test_inspect_json_lists_quantized_layers(cli, bert_dir, float_sd, linears, tmp_path):
    q4, q8 = tmp_path / "q4.safetensors", tmp_path / "q8.pt"
    ok(cli, "quantize", bert_dir, "-o", q4, "--bits", "4", "--group-size", "32")
    ok(cli, "quantize", bert_dir, "-o", q8)
    j = json.loads(ok(cli, "inspect", q4, "--json").stdout)
    assert j["kind"] == "safetensors" and j["quantization_config"]["quant_method"] == "compressed-tensors"
    layers = {layer["module"]: layer for layer in j["quantized_layers"]}
    assert set(layers) == linears
    t = load_st(q4)
    for m, layer in layers.items():
        assert layer["scheme"] == "W4A16-g32" and layer["bits"] == 4 and layer["group_size"] == 32
        assert layer["format"] == "pack-quantized" and layer["activations"] == "none"
        assert layer["shape"] == list(float_sd[m + ".weight"].shape)
        # Every tensor of the module as stored: packed codes, scales, shape and the float bias.
        own = [k for k in t if k.startswith(m + ".") and "." not in k[len(m) + 1:]]
        assert sorted(own) == sorted(m + s for s in (".bias", ".weight_packed", ".weight_scale", ".weight_shape"))
        assert layer["bytes"] == sum(t[k].numel() * t[k].element_size() for k in own)
    assert {x["name"] for x in j["tensors"]} == set(t)
    j = json.loads(ok(cli, "inspect", q8, "--json").stdout)
    assert j["kind"] == "torch.save archive"
    assert {(x["scheme"], x["activations"]) for x in j["quantized_layers"]} == {("W8A8-dynamic", "dynamic")}
    j = json.loads(ok(cli, "inspect", bert_dir, "--json").stdout)
    assert j["quantized_layers"] == [] and j["quantization_config"] is None
    assert "13 quantized layers" in ok(cli, "inspect", q4, "--summary").stdout


def test_validate(cli, bert_dir, float_sd, linears, spiky, tmp_path):
    q = tmp_path / "q.safetensors"
    rep = report(cli, bert_dir, "-o", q)
    r = ok(cli, "validate", q)
    assert f"{len(linears)} quantized layers, valid" in r.stdout
    j = json.loads(ok(cli, "validate", q, "--original", bert_dir, "--json").stdout)
    assert j["ok"] is True and j["quantized_layers"] == len(linears) and j["problems"] == []
    layers = {layer["module"]: layer for layer in j["layers"]}
    assert set(layers) == linears
    deq = monoquant.io.load_quantized(q)
    qrows = {t["name"]: t for t in rep["tensors"]}
    for m, layer in layers.items():
        expect = sqnr_db(float_sd[m + ".weight"], deq[m + ".weight"])
        assert layer["sqnr_db"] == pytest.approx(expect, rel=1e-4), m
        assert layer["sqnr_db"] == pytest.approx(qrows[m + ".weight"]["sqnr_db"], rel=1e-6), m
        assert layer["scheme"] == "W8A8-dynamic" and 0.99 < layer["cosine"] <= 1.0
    # A float checkpoint is not a valid quantized one.
    r = run(cli, "validate", bert_dir)
    assert r.returncode == VALIDATION and "no quantized layer" in r.stdout
    # --strict: SQNR under 20 dB against the original is an error.
    sq = tmp_path / "spiky4.safetensors"
    ok(cli, "quantize", spiky, "-o", sq, "--bits", "4")
    assert run(cli, "validate", sq, "--original", spiky).returncode == OK
    r = run(cli, "validate", sq, "--original", spiky, "--strict", "--json")
    assert r.returncode == STRICT and json.loads(r.stdout)["warnings"]


@pytest.mark.parametrize("damage", ["nan", "zero", "negative"])
def test_validate_corrupted_scale(cli, bert_dir, tmp_path, damage):
    q = tmp_path / "q.safetensors"
    ok(cli, "quantize", bert_dir, "-o", q)
    t, meta = load_st(q), st_metadata(q)
    key = "encoder.layer.0.attention.self.query.weight_scale"
    s = t[key].clone()
    s[3] = {"nan": float("nan"), "zero": 0.0, "negative": -s[3].item()}[damage]
    t[key] = s
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(t, str(bad), metadata=meta)
    r = run(cli, "validate", bad)
    assert r.returncode == VALIDATION, (r.returncode, r.stdout, r.stderr)
    assert "encoder.layer.0.attention.self.query" in r.stdout and "INVALID" in r.stdout
    j = json.loads(run(cli, "validate", bad, "--json").stdout)
    assert j["ok"] is False and len(j["problems"]) == 1 and "weight_scale" in j["problems"][0]


def test_validate_7bit_codes(cli, bert_dir, linears, tmp_path):
    # --bits 7 writes num_bits 7 with int8 codes; a code outside [-64, 63] is a broken file.
    q = tmp_path / "q7.safetensors"
    ok(cli, "quantize", bert_dir, "-o", q, "--bits", "7")
    j = json.loads(ok(cli, "validate", q, "--original", bert_dir, "--json").stdout)
    assert j["ok"] is True and {layer["scheme"] for layer in j["layers"]} == {"W7A8-dynamic"}
    t, meta = load_st(q), st_metadata(q)
    key = "encoder.layer.0.attention.self.query.weight"
    assert int(t[key].abs().max()) == 63
    w = t[key].clone()
    w[0, 5] = 100
    t[key] = w
    bad = tmp_path / "bad7.safetensors"
    safetensors.torch.save_file(t, str(bad), metadata=meta)
    r = run(cli, "validate", bad, "--json")
    assert r.returncode == VALIDATION, (r.returncode, r.stdout, r.stderr)
    problems = json.loads(r.stdout)["problems"]
    assert len(problems) == 1 and "code 100" in problems[0] and "[-64, 63]" in problems[0], problems
    # and monoquant.load refuses the same file, naming the module
    with pytest.raises(monoquant.errors.FormatError, match="7-bit codes out of"):
        monoquant.load(bad, model=fresh_bert())
    # Embeddings are lookups: with --quantize-embeddings they take 8 bits (W8A16), the linears 7.
    emb = tmp_path / "q7e.safetensors"
    rep = report(cli, bert_dir, "-o", emb, "--bits", "7", "--quantize-embeddings")
    s = schemes(rep)
    assert s["embeddings.word_embeddings.weight"] == "W8A16", s
    assert s["encoder.layer.0.attention.self.query.weight"] == "W7A8-dynamic", s
    assert ok(cli, "validate", emb).returncode == OK


def test_compare(cli, bert_dir, float_sd, linears, tmp_path):
    q = tmp_path / "q.safetensors"
    ok(cli, "quantize", bert_dir, "-o", q)
    r = ok(cli, "compare", bert_dir, q, "--json")
    j = json.loads(r.stdout)
    rows = {row["tensor"]: row for row in j["tensors"]}
    assert set(rows) == set(float_sd) and j["only_in_a"] == [] and j["only_in_b"] == [] and j["shape_mismatch"] == []
    deq = monoquant.io.load_quantized(q)
    t = load_st(q)
    for name, row in rows.items():
        m = name[:-7]
        if m in linears:
            assert row["sqnr_db"] == pytest.approx(sqnr_db(float_sd[name], deq[name]), rel=1e-4), name
            assert row["bytes_a"] == float_sd[name].numel() * 4
            assert row["bytes_b"] == t[name].numel() + t[m + ".weight_scale"].numel() * 4  # int8 + fp32 scales
        else:
            assert row["sqnr_db"] == "inf" and row["max_abs_error"] == 0 and row["bytes_a"] == row["bytes_b"]
    assert isinstance(j["total_sqnr_db"], float)
    # A file against itself: nothing differs.
    j = json.loads(ok(cli, "compare", q, q, "--json").stdout)
    assert j["total_sqnr_db"] == "inf"
    assert "tensors compared" in ok(cli, "compare", bert_dir, q).stdout


# ---------------------------------------------------------------- 4. atomicity

def _quantize_then_signal(cli, big, out, sig):
    """Start `quantize big -o out --bits 8`, send `sig` once it is writing, return (rc, stderr).

    The first progress line on stderr is printed after the first tensor was quantized and
    written into the open output, and after the signal handlers were installed, so a signal
    sent then always lands mid-write (127 tensors still to go)."""
    p = subprocess.Popen([cli, "quantize", str(big), "-o", str(out), "--bits", "8"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=cli_env())
    first = p.stderr.readline()
    if first.startswith("[1/"):
        p.send_signal(sig)
    _, rest = p.communicate(timeout=120)
    return p.returncode, first + rest


def _remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _interrupt(cli, big, out, sig, reset=None):
    """_quantize_then_signal, once more if the run finished before the signal landed (it then
    wrote a complete output: `reset` puts back what was at `out` before, default nothing)."""
    rc, err = _quantize_then_signal(cli, big, out, sig)
    if rc == OK:
        _remove(out)
        if reset is not None:
            reset()
        rc, err = _quantize_then_signal(cli, big, out, sig)
    return rc, err


@pytest.mark.parametrize("kind", ["safetensors", "dir"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_signal_during_write_leaves_nothing(cli, big_checkpoint, tmp_path, sig, kind):
    outdir = tmp_path / "outputs"
    outdir.mkdir()
    out = outdir / ("out.safetensors" if kind == "safetensors" else "out")
    rc, err = _interrupt(cli, big_checkpoint, out, sig)
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL, (rc, err)
    else:
        assert rc == IO, (rc, err)
        assert f"interrupted by {sig.name}; nothing was written" in err
    assert not os.path.lexists(out), f"{out} exists after {sig.name}: {listing(out) if out.is_dir() else ''}"
    assert listing(outdir) == [], listing(outdir)  # and no temporary file beside it


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_signal_keeps_an_existing_output_directory(cli, bert_dir, big_checkpoint, tmp_path, sig):
    out = tmp_path / "existing"
    ok(cli, "quantize", bert_dir, "-o", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, err = _interrupt(cli, big_checkpoint, out, sig, reset=lambda: ok(cli, "quantize", bert_dir, "-o", out))
    assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else IO), (rc, err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old checkpoint, untouched
    assert listing(tmp_path) == ["existing"]


@pytest.mark.parametrize("name", ["out.safetensors", "out.pt", "outdir"])
def test_full_disk_is_io_error_and_leaves_nothing(cli, big_checkpoint, tmp_path, name):
    outdir = tmp_path / "outputs"
    outdir.mkdir()
    out = outdir / name
    # ulimit -f (KiB blocks in bash) only in the child: ~20 MB, far under the ~129 MB of int8 output.
    cmd = f"ulimit -f 20000; exec {cli!s} quantize {big_checkpoint!s} -o {out!s} --bits 8 --quiet"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300, env=cli_env())
    assert r.returncode == IO, (r.returncode, r.stderr)
    assert str(out) in r.stderr and "File too large" in r.stderr
    assert listing(outdir) == [], listing(outdir)


@pytest.mark.filterwarnings("ignore:.*SQNR under 20 dB:RuntimeWarning")
@pytest.mark.parametrize("int4_range", ["full", "restricted"])
def test_int4_range_cli_matches_python_api(cli, bert_dir, float_sd, tmp_path, int4_range):
    out = tmp_path / f"{int4_range}.safetensors"
    ok(cli, "quantize", bert_dir, "-o", out, "--bits", "4", "--group-size", "32", "--int4-range", int4_range)
    t = load_st(out)
    api = monoquant.quantize(dict(float_sd), bits=4, group_size=32, int4_range=int4_range,
                             show_progress=False).model
    assert set(t) == set(api)
    for k in t:
        assert torch.equal(t[k], api[k]), k


def test_int4_range_codes_and_scales(float_sd):
    """full: codes reach -8 and scale = absmax / 7.5 (compressed-tensors' rule); restricted: [-7, 7], absmax / 7."""
    from monoquant.weights import from_compressed
    key = next(k for k in float_sd if k.endswith("intermediate.dense.weight"))
    w = float_sd[key].float()
    prefix = key[: -len(".weight")]
    for rng, lo, levels in (("full", -8, 7.5), ("restricted", -7, 7.0)):
        sd = monoquant.quantize({key: w}, bits=4, group_size=32, scale_method="absmax", int4_range=rng,
                                show_progress=False).model
        qw = from_compressed(sd, prefix, {"num_bits": 4, "strategy": "group", "group_size": 32})
        expect = (w.reshape(w.shape[0], -1, 32).abs().amax(-1).double() / levels).float()
        assert torch.equal(qw.scales, expect)
        u = qw.codes
        codes = torch.stack([(u & 15).long() - 8, (u >> 4).long() - 8], -1).reshape(w.shape[0], -1)
        assert int(codes.min()) == lo and int(codes.max()) == 7
