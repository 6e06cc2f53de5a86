"""Whole-checkpoint quantization: `monoquant quantize` vs reading the input, the Python API and llm-compressor.

  .venv/bin/python bench/cli_bench.py [--workdir DIR] [--skip-llmcompressor] [--small] [--reps 3]

One run measures, side by side, on one synthetic sharded LLaMA-style checkpoint:

  * the baseline: `cat SHARDS > /dev/null` with the page cache warm (the input is read
    once untimed first), i.e. the cost of just reading the bytes;
  * `monoquant quantize DIR -o OUT --bits 8` (W8A8 dynamic) and `--bits 4` (W4A16 g128,
    mse scales, and `--scale-method absmax`), `--threads 2 --max-shard-size 1GB --json`;
  * the Python API in a fresh interpreter: `monoquant.quantize(DIR, bits=8).save(OUT)`
    (builds the transformers model from config.json first, so it holds the whole model)
    and `monoquant.quantize(monoquant.load_state_dict(DIR), bits=8).save(OUT)`;
  * llm-compressor's `oneshot` with W8A8 and W4A16 QuantizationModifier recipes, in a
    virtual environment of its own that this script creates (WORKDIR/llmc-venv).

Every job is a child process run under /usr/bin/time -v (wall time, peak RSS); the
script also collects the child's rusage with os.wait4 and, for the CLI, its own --json
report. Each job runs --reps times (default 3), round-robin (repetition i runs every job
once, so that load from other processes hits all of them alike); the table shows medians.
Outputs are deleted before every run; those of the last repetition are checked
(`monoquant validate`, weight_scale present, int8/int4 codes compared across tools) and
then deleted too.

The checkpoint (TinyLlama-1.1B's shape: 22 layers, hidden 2048, intermediate 5632,
32 heads / 4 KV heads, vocab 32000, untied lm_head, bfloat16, N(0, 0.02) weights,
RMSNorm weights 1, ~2.2 GB in 5 shards) is generated once into WORKDIR/model-full and
reused; --small makes a ~220 MB one (4 layers, hidden 1024) for trying the script out.

Before measuring, the script waits (up to --wait-minutes, polling every 30 s) until the
1-minute load average is below --max-load, since the machine is shared. The table is
printed and written to bench/results/cli_bench.md.

The driver itself never imports torch before the timed runs: a child's ru_maxrss starts
from its parent's high-water mark at exec (Linux keeps the old address space's peak in
the process's maxrss), so a fat driver would inflate every wait4 figure.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import cpu_model

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
MONOQUANT = VENV_BIN / "monoquant"
PYTHON = VENV_BIN / "python"
RESULTS = REPO / "bench" / "results" / "cli_bench.md"
TIME_BIN = "/usr/bin/time"
SHM = Path("/dev/shm")
FIXED_MMAP_THRESHOLD = 131072  # glibc's initial value, pinned (setting it turns the dynamic adjustment off)
JOB_ENV = {"mq_int8_mmap": {"MALLOC_MMAP_THRESHOLD_": str(FIXED_MMAP_THRESHOLD)},
           "mq_int4_mmap": {"MALLOC_MMAP_THRESHOLD_": str(FIXED_MMAP_THRESHOLD)}}
MiB = 1 << 20

# The llm-compressor environment: torch pinned first (a CPU wheel; anything unpinned pulls a
# multi-GB CUDA build), and kept by a constraints file while llmcompressor resolves the rest.
TORCH_PIN = "torch==2.13.0"

# Model shapes. "full" is TinyLlama-1.1B's architecture: a real model's tensors, sizes and names.
SPECS = {
    "full": dict(hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4, vocab=32000,
                 shard_bytes=480 * MiB),
    "small": dict(hidden=1024, intermediate=2816, layers=4, heads=16, kv_heads=4, vocab=32000,
                  shard_bytes=48 * MiB),
}
DTYPE = "bfloat16"
DTYPE_BYTES = 2
STD = 0.02
COMPARE_LAYER = "model.layers.0.mlp.down_proj"  # the layer whose codes are compared across tools

# Targets (from the issue): wall time vs cat, and peak RSS vs the largest tensor.
WALL_TARGET = {"mq_int8": 1.5, "mq_int4": 2.0, "mq_int4_absmax": 2.0}
RSS_SLACK = 64 * MiB


# ----------------------------------------------------------------------------- the checkpoint

def tensor_list(spec):
    """(name, shape) in the order a transformers LLaMA checkpoint stores them."""
    h, i, v = spec["hidden"], spec["intermediate"], spec["vocab"]
    kv = h // spec["heads"] * spec["kv_heads"]
    out = [("model.embed_tokens.weight", (v, h))]
    for n in range(spec["layers"]):
        p = f"model.layers.{n}."
        out += [(p + "input_layernorm.weight", (h,)),
                (p + "self_attn.q_proj.weight", (h, h)),
                (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)),
                (p + "self_attn.o_proj.weight", (h, h)),
                (p + "post_attention_layernorm.weight", (h,)),
                (p + "mlp.gate_proj.weight", (i, h)),
                (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i))]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def plan_shards(spec):
    """Split the tensors, in order, into shards of at most spec['shard_bytes'] (as transformers does)."""
    shards, cur, cur_bytes = [], [], 0
    for name, shape in tensor_list(spec):
        b = numel(shape) * DTYPE_BYTES
        if cur and cur_bytes + b > spec["shard_bytes"]:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape))
        cur_bytes += b
    shards.append(cur)
    return shards


def config_json(spec):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": spec["hidden"], "intermediate_size": spec["intermediate"],
        "num_hidden_layers": spec["layers"], "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"], "vocab_size": spec["vocab"],
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
        "tie_word_embeddings": False, "initializer_range": STD, "bos_token_id": 1, "eos_token_id": 2,
        "pretraining_tp": 1, "use_cache": True, "torch_dtype": DTYPE,
    }


def generate(model_dir, size):
    """Write the checkpoint shard by shard: only one shard's tensors are alive at a time."""
    import torch  # only in the generator's own process (see the module docstring)
    from safetensors.torch import save_file

    spec = SPECS[size]
    shards = plan_shards(spec)
    tmp = Path(str(model_dir) + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, shape in shard:
            if len(shape) == 1:  # RMSNorm weights: ones, as initialised
                t = torch.ones(shape, dtype=torch.bfloat16)
            else:
                t = (torch.randn(shape, generator=gen) * STD).to(torch.bfloat16)
            tensors[name] = t
            weight_map[name] = fname
            total += t.numel() * t.element_size()
        save_file(tensors, str(tmp / fname), metadata={"format": "pt"})
        del tensors
        print(f"  wrote {fname}", flush=True)
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (tmp / "config.json").write_text(json.dumps(config_json(spec), indent=2))
    (tmp / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    (tmp / "bench_spec.json").write_text(json.dumps({"size": size, "spec": spec, "dtype": DTYPE, "std": STD}))
    os.rename(tmp, model_dir)  # complete or absent: a killed run never leaves half a model to reuse


def ensure_model(workdir, size):
    model_dir = workdir / f"model-{size}"
    marker = model_dir / "bench_spec.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == SPECS[size]:
        print(f"model: reusing {model_dir}")
        return model_dir, None
    shutil.rmtree(model_dir, ignore_errors=True)
    print(f"model: generating {model_dir} ...", flush=True)
    # In a child, to keep torch out of the driver, and measured: the generator must stay bounded.
    run = run_measured([str(PYTHON), __file__, "--_generate", str(model_dir), "--size", size], quiet=False)
    if run["rc"] != 0:
        sys.exit(f"generating the model failed (exit {run['rc']}):\n{run['stderr']}")
    return model_dir, run


def shard_files(model_dir):
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    return [model_dir / f for f in sorted(set(index["weight_map"].values()))]


# ----------------------------------------------------------------------------- running a child

def parse_time_v(text):
    """Wall seconds and peak RSS bytes from GNU time -v's report."""
    wall, rss = None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            parts = line.rsplit(" ", 1)[1].split(":")
            wall = sum(float(p) * 60 ** k for k, p in enumerate(reversed(parts)))
        elif line.startswith("Maximum resident set size (kbytes)"):
            rss = int(line.rsplit(":", 1)[1]) * 1024
    return wall, rss


def run_measured(cmd, env=None, quiet=True):
    """Run cmd as a child; wall time (perf_counter), and peak RSS from /usr/bin/time -v and wait4.

    /usr/bin/time measures exactly its child; wait4's ru_maxrss of our direct child also
    counts the driver's own high-water mark carried across exec, which is why both are kept
    (and why the driver stays small)."""
    time_file = None
    full = list(cmd)
    if os.path.exists(TIME_BIN):
        fd, time_file = tempfile.mkstemp(prefix="cli_bench_time_")
        os.close(fd)
        full = [TIME_BIN, "-v", "-o", time_file] + full
    t0 = time.perf_counter()
    p = subprocess.Popen(full, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE if quiet else None, text=True)
    # Read the pipes in threads so that a chatty child cannot block on a full pipe.
    out, err = [], []
    readers = [threading.Thread(target=lambda: out.append(p.stdout.read()))]
    if quiet:
        readers.append(threading.Thread(target=lambda: err.append(p.stderr.read())))
    for r in readers:
        r.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    for r in readers:
        r.join()
    res = {"cmd": cmd, "rc": p.returncode, "wall_s": wall, "wait4_maxrss": ru.ru_maxrss * 1024,
           "stdout": out[0] if out else "", "stderr": err[0] if err else ""}
    if time_file:
        text = Path(time_file).read_text()
        os.unlink(time_file)
        res["time_wall_s"], res["time_maxrss"] = parse_time_v(text)
        if res["rc"] == 0 and "Command exited with non-zero status" in text:
            res["rc"] = 1
    # Peak RSS of the job: GNU time's figure when we have it, else wait4's.
    res["peak_rss"] = res.get("time_maxrss") or res["wait4_maxrss"]
    return res


def last_json(text):
    """The last line of a child's stdout that parses as a JSON object (or a whole-text JSON)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            v = json.loads(line)
            if isinstance(v, dict):
                return v
        except ValueError:
            continue
    return None


# ----------------------------------------------------------------------------- the jobs

PY_API = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, monoquant as mq
torch.set_num_threads({threads}); mq.set_num_threads({threads})
t1 = time.perf_counter()
src = {source}
t2 = time.perf_counter()
r = mq.quantize(src, bits=8, show_progress=False)
t3 = time.perf_counter()
r.save({out!r}, max_shard_size=1 << 30)
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "quantize_s": t3 - t2, "save_s": t4 - t3}}))
"""

LLMC = r"""
import json, time
t0 = time.perf_counter()
import torch
torch.set_num_threads({threads})
from transformers import AutoModelForCausalLM
from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import QuantizationModifier
t1 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained({model!r}, torch_dtype=torch.bfloat16, device_map="cpu")
t2 = time.perf_counter()
recipe = QuantizationModifier(targets="Linear", scheme={scheme!r}, ignore=["lm_head"])
oneshot(model=model, recipe=recipe)
t3 = time.perf_counter()
model.save_pretrained({out!r}, save_compressed=True, max_shard_size="1GB")
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "oneshot_s": t3 - t2, "save_s": t4 - t3}}))
"""


def make_jobs(model_dir, outdir, threads, llmc_python):
    """name -> (label, command, output dir). Commands are plain argv lists."""
    shards = [str(s) for s in shard_files(model_dir)]
    cli = [str(MONOQUANT), "quantize", str(model_dir), "--threads", str(threads),
           "--max-shard-size", "1GB", "--json"]
    jobs = {
        "cat": ("cat shards > /dev/null (warm)", ["sh", "-c", 'cat "$@" > /dev/null', "cat"] + shards, None),
        "mq_int8": ("monoquant quantize --bits 8", cli + ["--bits", "8"], outdir / "mq_int8"),
        "mq_int4": ("monoquant quantize --bits 4 (mse)", cli + ["--bits", "4"], outdir / "mq_int4"),
        "mq_int4_absmax": ("monoquant quantize --bits 4 --scale-method absmax",
                           cli + ["--bits", "4", "--scale-method", "absmax"], outdir / "mq_int4_absmax"),
    }
    # Not a target: the same INT8 job writing to tmpfs, to tell the disk's part (monoquant fsyncs) from the rest.
    if SHM.is_dir():
        jobs["mq_int8_shm"] = ("monoquant quantize --bits 8, -o on /dev/shm (info: no disk)", cli + ["--bits", "8"],
                               SHM / "monoquant-cli-bench-out" / "mq_int8")
    # Not targets either: glibc's dynamic mmap threshold keeps freed per-tensor buffers in the heap, so RSS
    # creeps up tensor after tensor; a fixed threshold shows how much of the peak that is.
    for name, bits in (("mq_int8_mmap", "8"), ("mq_int4_mmap", "4")):
        jobs[name] = (f"monoquant quantize --bits {bits}, MALLOC_MMAP_THRESHOLD_={FIXED_MMAP_THRESHOLD} (info)",
                      cli + ["--bits", bits], outdir / name)
    for name, label, source in [
            ("py_dir", "python: mq.quantize(DIR, bits=8).save", repr(str(model_dir))),
            ("py_sd", "python: mq.quantize(mq.load_state_dict(DIR), bits=8).save",
             f"mq.load_state_dict({str(model_dir)!r})")]:
        out = outdir / name
        code = PY_API.format(threads=threads, source=source, out=str(out))
        jobs[name] = (label, [str(PYTHON), "-c", code], out)
    if llmc_python:
        for name, scheme in [("llmc_w8a8", "W8A8"), ("llmc_w4a16", "W4A16")]:
            out = outdir / name
            code = LLMC.format(threads=threads, model=str(model_dir), scheme=scheme, out=str(out))
            jobs[name] = (f"llm-compressor oneshot {scheme}", [llmc_python, "-c", code], out)
    # The command line the output dir goes into (for the CLI jobs).
    for name in [n for n in jobs if n.startswith("mq_")]:
        label, cmd, out = jobs[name]
        jobs[name] = (label, cmd + ["-o", str(out)], out)
    return jobs


def child_env(threads):
    env = dict(os.environ)
    env["MONOQUANT_NO_PROGRESS"] = "1"
    env["OMP_NUM_THREADS"] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["HF_HUB_OFFLINE"] = "1"  # nothing may come from a hub; the model is local
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


# ----------------------------------------------------------------------------- llm-compressor's venv

def pip(python, *args, log):
    cmd = [python, "-m", "pip", "install", "--progress-bar", "off", *args]
    log.append("$ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True)
    log.append((p.stdout + p.stderr)[-4000:])
    return p.returncode == 0, p.stdout + p.stderr


def pip_versions(python, package):
    p = subprocess.run([python, "-m", "pip", "index", "versions", package], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",")]
    return []


def ensure_llmc_venv(workdir, log):
    """WORKDIR/llmc-venv with torch==2.13.0 (CPU) and llmcompressor; its python, or None.

    Tries `llmcompressor` unpinned, then the newest releases one by one; every failure is
    kept in `log` (and in WORKDIR/llmc-install.log) for the report."""
    venv = workdir / "llmc-venv"
    py = venv / "bin" / "python"
    ok_marker = venv / "bench_ok.json"
    if ok_marker.exists():
        info = json.loads(ok_marker.read_text())
        log.append(f"reusing {venv}: llmcompressor {info.get('llmcompressor')}, torch {info.get('torch')}")
        return str(py), info
    shutil.rmtree(venv, ignore_errors=True)
    # The base interpreter (not our venv's), same minor version: the local torch wheel is cp311.
    base = os.path.join(sys.base_prefix, "bin", "python3")
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    constraints = workdir / "llmc-constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")
    ok, _ = pip(str(py), TORCH_PIN, log=log)
    if not ok:
        log.append(f"FAILED: pip install {TORCH_PIN}")
        return None, None
    candidates = ["llmcompressor"] + [f"llmcompressor=={v}" for v in pip_versions(str(py), "llmcompressor")[:6]]
    for req in candidates:
        ok, text = pip(str(py), "-c", str(constraints), req, log=log)
        if ok:
            break
        tail = [ln for ln in text.splitlines() if "ERROR" in ln or "conflict" in ln.lower()]
        log.append(f"FAILED: {req}: " + " | ".join(tail[-4:]))
    else:
        return None, None
    probe = subprocess.run([str(py), "-c", "import json, torch, transformers, llmcompressor, compressed_tensors;"
                            "print(json.dumps({'torch': torch.__version__, 'transformers': transformers.__version__,"
                            "'llmcompressor': llmcompressor.__version__,"
                            "'compressed_tensors': compressed_tensors.__version__}))"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        log.append("FAILED: import llmcompressor: " + probe.stderr[-2000:])
        return None, None
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    info["requirement"] = req
    ok_marker.write_text(json.dumps(info))
    log.append("installed: " + json.dumps(info))
    return str(py), info


# ----------------------------------------------------------------------------- checks

CHECK = r"""
import json, sys
from pathlib import Path
from safetensors import safe_open

def tensors(d):
    d = Path(d)
    idx = d / "model.safetensors.index.json"
    files = sorted(set(json.loads(idx.read_text())["weight_map"].values())) if idx.exists() else \
        [p.name for p in d.glob("*.safetensors")]
    out = {}
    for f in files:
        with safe_open(str(d / f), "pt") as h:
            for k in h.keys():
                out[k] = (str(d / f), h.get_slice(k).get_dtype(), h.get_slice(k).get_shape())
    return out

def load(d, name):
    info = tensors(d)[name]
    with safe_open(info[0], "pt") as h:
        return h.get_tensor(name)

def unpack_int4(packed, cols):
    # compressed-tensors pack-quantized: 8 nibbles per int32, lowest first, value + 8.
    import torch
    p = packed.to(torch.int64) & 0xFFFFFFFF
    nib = torch.stack([(p >> (4 * i)) & 0xF for i in range(8)], dim=-1).reshape(p.shape[0], -1)
    return (nib[:, :cols] - 8).to(torch.int8)

def codes(d, layer):
    import torch
    t = tensors(d)
    if layer + ".weight_packed" in t:
        shape = load(d, layer + ".weight_shape").tolist() if layer + ".weight_shape" in t else None
        packed = load(d, layer + ".weight_packed")
        return unpack_int4(packed, int(shape[1]) if shape else packed.shape[1] * 8), "int4"
    w = load(d, layer + ".weight")
    return (w, "int8") if w.dtype == torch.int8 else (None, str(w.dtype))

cmd = sys.argv[1]
if cmd == "summary":
    t = tensors(sys.argv[2])
    cfg = json.loads((Path(sys.argv[2]) / "config.json").read_text()) if (Path(sys.argv[2]) / "config.json").exists() else {}
    q = cfg.get("quantization_config") or {}
    print(json.dumps({"tensors": len(t), "weight_scale": sum(k.endswith(".weight_scale") for k in t),
                      "int8": sum(v[1] == "I8" for v in t.values()),
                      "packed": sum(k.endswith(".weight_packed") for k in t),
                      "bytes": sum(Path(f).stat().st_size for f in {v[0] for v in t.values()}),
                      "quant_method": q.get("quant_method"), "format": q.get("format")}))
elif cmd == "compare":
    a, ka = codes(sys.argv[2], sys.argv[4])
    b, kb = codes(sys.argv[3], sys.argv[4])
    if a is None or b is None or ka != kb or a.shape != b.shape:
        print(json.dumps({"comparable": False, "why": f"{ka} {tuple(a.shape) if a is not None else None} vs "
                                                      f"{kb} {tuple(b.shape) if b is not None else None}"}))
    else:
        diff = (a.to(int) - b.to(int)).abs()
        print(json.dumps({"comparable": True, "kind": ka, "n": a.numel(),
                          "equal": float((diff == 0).float().mean()), "max_abs_diff": int(diff.max()),
                          "off_by_one": float((diff == 1).float().mean()),
                          "a_min": int(a.min()), "a_max": int(a.max()), "b_min": int(b.min()), "b_max": int(b.max())}))
"""


def check_outputs(jobs, outs):
    """Untimed: does every peer's output hold what it should? Returns {job: text}, compare rows."""
    checks, compares = {}, []
    for name, out in outs.items():
        if out is None or not out.exists():
            continue
        summ = subprocess.run([str(PYTHON), "-c", CHECK, "summary", str(out)], capture_output=True, text=True)
        s = last_json(summ.stdout) or {"error": summ.stderr[-500:]}
        v = subprocess.run([str(MONOQUANT), "validate", str(out), "--json"], capture_output=True, text=True)
        vj = last_json(v.stdout)
        valid = vj.get("ok") if isinstance(vj, dict) else None
        if name.startswith("llmc"):
            ok = s.get("weight_scale", 0) > 0
            text = (f"{s.get('weight_scale')} weight_scale tensors, quant_method {s.get('quant_method')}, "
                    f"format {s.get('format')}; monoquant validate: exit {v.returncode}, ok={valid}")
        else:
            ok = v.returncode == 0 and valid is True
            text = (f"monoquant validate: exit {v.returncode}, ok={valid}; {s.get('weight_scale')} weight_scale "
                    f"tensors, format {s.get('format')}")
        if not ok and v.returncode != 0:
            text += " | " + (v.stdout + v.stderr).strip().replace("\n", " ")[-300:]
        checks[name] = ("OK" if ok else "FAILED") + ": " + text + f"; {s.get('bytes', 0) / MiB:.0f} MiB on disk"
    pairs = [("mq_int8", "llmc_w8a8"), ("py_dir", "mq_int8"), ("py_sd", "mq_int8"),
             ("mq_int4_absmax", "llmc_w4a16"), ("mq_int4", "llmc_w4a16")]
    for a, b in pairs:
        if a in outs and b in outs and outs[a] and outs[b] and outs[a].exists() and outs[b].exists():
            c = subprocess.run([str(PYTHON), "-c", CHECK, "compare", str(outs[a]), str(outs[b]), COMPARE_LAYER],
                               capture_output=True, text=True)
            compares.append((a, b, last_json(c.stdout) or {"comparable": False, "why": c.stderr[-300:]}))
    return checks, compares


# ----------------------------------------------------------------------------- reporting


def wait_for_quiet(max_load, minutes):
    """Poll the 1-minute load average every 30 s until it is below max_load (or give up)."""
    deadline = time.time() + minutes * 60
    while True:
        load = os.getloadavg()[0]
        if load < max_load:
            print(f"load average {load:.2f} < {max_load}: measuring")
            return load, True
        if time.time() >= deadline:
            print(f"load average still {load:.2f} after {minutes} min: measuring anyway (noted in the report)")
            return load, False
        print(f"load average {load:.2f} >= {max_load}: waiting 30 s", flush=True)
        time.sleep(30)


def build_stamp():
    """The installed monoquant (binary and extension): mtime and size, to notice a reinstall mid-run.

    Other engineers rebuild on this machine; a run that straddles a reinstall mixes two builds."""
    import glob
    files = [MONOQUANT] + [Path(p) for p in glob.glob(str(REPO / ".venv/lib/python*/site-packages/monoquant/_core*.so"))]
    return {str(f): (f.stat().st_mtime, f.stat().st_size) for f in files if f.exists()}


def fmt_met(flag):
    return "-" if flag is None else ("yes" if flag else "**NO**")


def build_report(ctx, jobs, runs, cli_reports, checks, compares, llmc_log):
    med = {n: statistics.median(r["wall_s"] for r in rs) for n, rs in runs.items() if rs}
    rss = {n: statistics.median(r["peak_rss"] for r in rs) for n, rs in runs.items() if rs}
    largest = ctx["largest_bytes"]
    cat = med.get("cat")
    lines = []
    add = lines.append
    add(f"CPU: {ctx['cpu']}; {ctx['nproc']} cores online; --threads {ctx['threads']}")
    add(f"model: {ctx['model_dir']} ({ctx['size']}: {ctx['arch']}), {ctx['model_bytes'] / 1e9:.2f} GB "
        f"({ctx['model_bytes'] / MiB:.0f} MiB) of {DTYPE} in {ctx['shards']} shards, {ctx['ntensors']} tensors; "
        f"largest tensor {ctx['largest_name']} {ctx['largest_shape']} = {largest / MiB:.1f} MiB; "
        f"largest quantized tensor {ctx['largest_q_name']} = {ctx['largest_q_bytes'] / MiB:.1f} MiB")
    add(f"load average (1 min): {ctx['load_start']:.2f} at start, {ctx['load_end']:.2f} at end, "
        f"max {ctx['load_max']:.2f} between runs; waited for < {ctx['max_load']}: "
        f"{'yes' if ctx['quiet_ok'] else 'gave up, measured anyway'}")
    add(f"monoquant: {ctx['version']}, binary built {ctx['built']}"
        + ("" if ctx["same_build"] else f"; **the installed build changed during the run ({ctx['changed_at']}): "
                                         "rerun**"))
    add(f"repetitions: {ctx['reps']} per job, round-robin, medians; peak RSS from "
        f"{'/usr/bin/time -v' if os.path.exists(TIME_BIN) else 'os.wait4 ru_maxrss'}")
    add("")
    add("| job | wall s (median) | vs cat | peak RSS MiB | vs largest tensor | target | met? |")
    add("|---|---|---|---|---|---|---|")
    for name, (label, _, _) in jobs.items():
        if name not in med:
            continue
        w, r = med[name], rss[name]
        vs_cat = f"{w / cat:.2f}x" if cat else "-"
        vs_big = f"{r / largest:.2f}x (+{(r - largest) / MiB:.0f} MiB)"
        if name in WALL_TARGET:
            t_wall = WALL_TARGET[name]
            wall_ok = cat is not None and w <= t_wall * cat
            rss_ok = r <= largest + RSS_SLACK
            target = f"<= {t_wall}x cat; RSS <= largest + 64 MiB"
            met = f"wall {fmt_met(wall_ok)}, RSS {fmt_met(rss_ok)}"
        elif name == "cat":
            target, met, vs_big = "baseline", "-", "-"
        else:
            target, met = ("none (info)" if "(info" in label else "none (reference)"), "-"
        bad = [x for x in runs[name] if x["rc"] != 0]
        if bad:  # a failed run's time means nothing: say so instead of a verdict
            met = f"**FAILED** (exit {bad[0]['rc']} in {len(bad)} of {len(runs[name])} runs)"
        add(f"| {label} | {w:.2f} | {vs_cat} | {r / MiB:.0f} | {vs_big} | {target} | {met} |")
    if "write_ceiling" in ctx:
        add("")
        add(f"For scale: writing {ctx['write_ceiling']['bytes'] / MiB:.0f} MiB (the INT8 output's size) with "
            f"`dd ... conv=fsync` took {ctx['write_ceiling']['wall_s']:.2f} s (median); the CLI's writer fsyncs "
            f"its output, `cat` only reads.")
    if cli_reports:
        add("")
        add("The CLI's own --json report (medians over the runs):")
        add("")
        add("| job | seconds | sum of per-tensor s | peak_rss MiB | wait4 maxrss MiB | ratio | bits/weight | "
            "min SQNR dB | quantized |")
        add("|---|---|---|---|---|---|---|---|---|")
        for name, reps in cli_reports.items():
            if not reps:
                continue
            tot = [r.get("totals", {}) for r in reps]
            def m(key):
                vals = [t[key] for t in tot if isinstance(t.get(key), (int, float))]
                return statistics.median(vals) if vals else float("nan")
            w4 = statistics.median(x["wait4_maxrss"] for x in runs[name])
            per = statistics.median(sum(t.get("seconds", 0) for t in r.get("tensors", [])) for r in reps)
            add(f"| {jobs[name][0]} | {m('seconds'):.2f} | {per:.2f} | {m('peak_rss_bytes') / MiB:.0f} | {w4 / MiB:.0f} | "
                f"{m('compression_ratio'):.2f} | {m('bits_per_weight'):.2f} | {m('min_sqnr_db'):.1f} | "
                f"{tot[-1].get('tensors_quantized', '?')} |")
    inner = {n: [last_json(x["stdout"]) for x in rs] for n, rs in runs.items() if n.startswith(("py_", "llmc_"))}
    if inner:
        add("")
        add("Inside the Python jobs (medians, seconds):")
        add("")
        add("| job | import | load | quantize / oneshot | save |")
        add("|---|---|---|---|---|")
        for name, reps in inner.items():
            reps = [r for r in reps if r]
            if not reps:
                continue
            def m(key):
                vals = [r[key] for r in reps if key in r]
                return f"{statistics.median(vals):.2f}" if vals else "-"
            add(f"| {jobs[name][0]} | {m('import_s')} | {m('load_s')} | "
                f"{m('quantize_s') if 'quantize_s' in reps[0] else m('oneshot_s')} | {m('save_s')} |")
    add("")
    add("Checks on the last repetition's outputs:")
    add("")
    for name, text in checks.items():
        add(f"- {jobs[name][0]}: {text}")
    for a, b, c in compares:
        if c.get("comparable"):
            add(f"- codes of {COMPARE_LAYER}, {jobs[a][0]} vs {jobs[b][0]} ({c['kind']}): {c['equal'] * 100:.3f}% "
                f"equal, {c['off_by_one'] * 100:.3f}% off by one, max |diff| {c['max_abs_diff']}; ranges "
                f"[{c['a_min']}, {c['a_max']}] vs [{c['b_min']}, {c['b_max']}]")
        else:
            add(f"- codes of {COMPARE_LAYER}, {jobs[a][0]} vs {jobs[b][0]}: not comparable ({c.get('why')})")
    failures = [(n, x) for n, rs in runs.items() for x in rs if x["rc"] != 0]
    if failures:
        add("")
        add("Failed runs (last lines of stderr):")
        for n, x in failures[:6]:
            tail = (x["stderr"] or x["stdout"]).strip().splitlines()[-3:]
            add(f"- {jobs[n][0]}: exit {x['rc']}: " + " / ".join(tail))
    if ctx.get("gen_run"):
        g = ctx["gen_run"]
        add("")
        add(f"Generating the model took {g['wall_s']:.0f} s, peak RSS {g['peak_rss'] / MiB:.0f} MiB (shard by shard).")
    add("")
    add("llm-compressor: " + ctx["llmc_status"])
    if llmc_log:
        add("")
        add("<details><summary>llm-compressor install log (tail)</summary>")
        add("")
        add("```")
        add("\n".join(llmc_log)[-6000:])
        add("```")
        add("</details>")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main

def model_facts(model_dir, size):
    spec = SPECS[size]
    ts = tensor_list(spec)
    sizes = {n: numel(s) * DTYPE_BYTES for n, s in ts}
    big = max(ts, key=lambda x: numel(x[1]))
    quantizable = [(n, s) for n, s in ts if len(s) == 2 and "embed" not in n and "lm_head" not in n]
    bigq = max(quantizable, key=lambda x: numel(x[1]))
    return {
        "model_bytes": sum(sizes.values()), "ntensors": len(ts), "shards": len(shard_files(model_dir)),
        "largest_name": big[0], "largest_shape": "x".join(map(str, big[1])), "largest_bytes": sizes[big[0]],
        "largest_q_name": bigq[0], "largest_q_bytes": sizes[bigq[0]],
        "arch": (f"LlamaForCausalLM, {spec['layers']} layers, hidden {spec['hidden']}, intermediate "
                 f"{spec['intermediate']}, {spec['heads']} heads / {spec['kv_heads']} KV heads, vocab {spec['vocab']}"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/monoquant-cli-bench"))
    ap.add_argument("--small", action="store_true", help="a ~220 MB model, to try the script out")
    ap.add_argument("--skip-llmcompressor", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-load", type=float, default=1.0)
    ap.add_argument("--wait-minutes", type=float, default=20.0)
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    ap.add_argument("--only", nargs="*", help="run only these jobs (cat is always run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--size", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--_generate", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._generate:  # the generator's own process
        generate(args._generate, args.size)
        return
    size = "small" if args.small else "full"
    args.workdir.mkdir(parents=True, exist_ok=True)
    outdir = args.workdir / "out"
    outdir.mkdir(exist_ok=True)  # monoquant creates OUT itself, not its parents
    (SHM / "monoquant-cli-bench-out").mkdir(exist_ok=True)

    model_dir, gen_run = ensure_model(args.workdir, size)
    llmc_log, llmc_python, llmc_status = [], None, "skipped (--skip-llmcompressor)"
    if not args.skip_llmcompressor:
        print("llm-compressor: preparing its virtual environment ...", flush=True)
        llmc_python, info = ensure_llmc_venv(args.workdir, llmc_log)
        (args.workdir / "llmc-install.log").write_text("\n".join(llmc_log))
        llmc_status = (f"installed in {args.workdir / 'llmc-venv'}: " + json.dumps(info) if llmc_python
                       else "could not be installed (log below)")
        print("llm-compressor:", llmc_status)

    jobs = make_jobs(model_dir, outdir, args.threads, llmc_python)
    if args.only:
        jobs = {n: j for n, j in jobs.items() if n == "cat" or n in args.only}
    env = child_env(args.threads)
    shards = shard_files(model_dir)
    # The baseline reads a warm page cache: read everything once, untimed.
    subprocess.run(["sh", "-c", 'cat "$@" > /dev/null', "cat"] + [str(s) for s in shards], check=True)

    load_start, quiet_ok = (os.getloadavg()[0], True) if args.no_wait else wait_for_quiet(args.max_load,
                                                                                          args.wait_minutes)
    subprocess.run(["sh", "-c", 'cat "$@" > /dev/null', "cat"] + [str(s) for s in shards], check=True)
    loads = [load_start]
    stamp = build_stamp()
    changed_at = []  # where a reinstall of monoquant was first noticed, if any
    runs = {n: [] for n in jobs}
    cli_reports = {n: [] for n in jobs if n.startswith("mq_")}
    for rep in range(args.reps):
        for name, (label, cmd, out) in jobs.items():
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)
            r = run_measured(cmd, env=dict(env, **JOB_ENV.get(name, {})))
            if build_stamp() != stamp and not changed_at:
                changed_at.append(f"during or before repetition {rep + 1}, {label}")
            runs[name].append(r)
            loads.append(os.getloadavg()[0])
            if name in cli_reports and r["rc"] == 0:
                rep_json = last_json(r["stdout"])
                if rep_json:
                    cli_reports[name].append(rep_json)
            print(f"  [{rep + 1}/{args.reps}] {label}: {r['wall_s']:.2f} s, peak RSS {r['peak_rss'] / MiB:.0f} MiB"
                  + ("" if r["rc"] == 0 else f", EXIT {r['rc']}: {r['stderr'].strip()[-300:]}"), flush=True)
            # Outputs of the last repetition stay for the checks; earlier ones go at once.
            if out is not None and rep < args.reps - 1:
                shutil.rmtree(out, ignore_errors=True)

    # A write ceiling for scale: the INT8 output's bytes through dd with fsync (not a target).
    ctx_extra = {}
    if "mq_int8" in jobs and (outdir / "mq_int8").exists():
        nbytes = sum(f.stat().st_size for f in (outdir / "mq_int8").glob("*.safetensors"))
        tgt = args.workdir / "dd.bin"
        ws = []
        for _ in range(args.reps):
            ws.append(run_measured(["dd", "if=/dev/zero", f"of={tgt}", "bs=16M",
                                    f"count={max(1, nbytes // (16 * MiB))}", "conv=fsync"])["wall_s"])
            tgt.unlink(missing_ok=True)
        ctx_extra["write_ceiling"] = {"bytes": nbytes, "wall_s": statistics.median(ws)}
    load_end = os.getloadavg()[0]
    same_build = not changed_at and build_stamp() == stamp
    version = subprocess.run([str(MONOQUANT), "--version"], capture_output=True, text=True).stdout.strip()
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(MONOQUANT.stat().st_mtime))
    head = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %cd", "--date=format:%Y-%m-%d %H:%M"],
                          capture_output=True, text=True).stdout.strip()
    built += f" (repository HEAD then: {head or 'unknown'})"

    outs = {n: out for n, (_, _, out) in jobs.items() if out is not None}
    checks, compares = check_outputs(jobs, outs)
    for out in outs.values():
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(SHM / "monoquant-cli-bench-out", ignore_errors=True)

    ctx = dict(cpu=cpu_model(), nproc=os.cpu_count(), threads=args.threads, model_dir=model_dir, size=size,
               reps=args.reps, load_start=load_start, load_end=load_end, load_max=max(loads),
               max_load=args.max_load, quiet_ok=quiet_ok, version=version, built=built, same_build=same_build,
               changed_at=changed_at[0] if changed_at else "after the last run", llmc_status=llmc_status, gen_run=gen_run,
               **model_facts(model_dir, size), **ctx_extra)
    report = build_report(ctx, jobs, runs, cli_reports, checks, compares,
                          llmc_log if not llmc_python else [])
    print()
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# cli_bench ({time.strftime('%Y-%m-%d %H:%M:%S')})\n\n" + report)
    raw = args.out.with_suffix(".json")
    raw.write_text(json.dumps({"ctx": {k: str(v) for k, v in ctx.items()},
                               "runs": {n: [{k: v for k, v in x.items() if k not in ("stdout",)} for x in rs]
                                        for n, rs in runs.items()},
                               "cli_reports": cli_reports, "checks": checks,
                               "compares": [list(c) for c in compares]}, indent=1, default=str))
    print(f"written: {args.out} (raw samples: {raw})")


if __name__ == "__main__":
    main()
