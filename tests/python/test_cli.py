"""The `monoquant` command-line binary installed next to this Python."""

import os
import re
import subprocess

import pytest

import monoquant
from monoquant import _core

# Exit codes documented in src/cli/exit_codes.hpp
OK, USAGE, UNSUPPORTED = 0, 2, 6
SUBCOMMANDS = ["quantize", "dequantize", "validate", "compare"]


def run(cli, *args, env_extra=None):
    env = dict(os.environ)
    env.pop("MONOQUANT_ISA", None)
    env.pop("MONOQUANT_NUM_THREADS", None)
    env.update(env_extra or {})
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=60, env=env)


def test_version(cli):
    r = run(cli, "--version")
    assert r.returncode == OK, r.stderr
    assert r.stdout.strip() == f"monoquant {monoquant.__version__}"
    assert monoquant.__version__ == "0.1.0"


def test_help_lists_subcommands(cli):
    for flag in ("--help", "-h"):
        r = run(cli, flag)
        assert r.returncode == OK, r.stderr
        for sub in SUBCOMMANDS + ["info", "inspect"]:
            assert re.search(rf"^\s+{sub}\s", r.stdout, re.M), (sub, r.stdout)
        assert "--threads" in r.stdout


def test_no_arguments_prints_help(cli):
    r = run(cli)
    assert r.returncode == OK
    assert "Subcommands" in r.stdout and "quantize" in r.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["--threads"], ["--threads", "0"], ["--threads", "x"],
                                  ["frobnicate"], ["info", "extra"]])
def test_usage_errors_exit_2(cli, args):
    r = run(cli, *args)
    assert r.returncode == USAGE, (args, r.returncode, r.stdout, r.stderr)
    assert r.stderr.strip(), "a usage error should say something on stderr"


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_subcommands_without_arguments_are_usage_errors(cli, sub):
    r = run(cli, sub)
    assert r.returncode in (USAGE, 3), (sub, r.returncode, r.stderr)
    assert r.stderr.strip() and r.stdout == ""


def test_subcommand_help_is_fine(cli):
    r = run(cli, "quantize", "--help")
    assert r.returncode == OK
    for flag in ("--bits", "--dynamic", "--weight-only", "--static", "--calibration", "--group-size", "--skip",
                 "--override", "--max-shard-size", "--dry-run", "--strict", "--force", "--json"):
        assert flag in r.stdout, flag


def _info(cli, *args, env_extra=None):
    r = run(cli, *args, "info", env_extra=env_extra)
    assert r.returncode == OK, r.stderr
    fields = dict(re.findall(r"^(\w+): (.+)$", r.stdout, re.M))
    return r.stdout, fields


def test_info_reports_version_kernels_threads_features(cli):
    out, fields = _info(cli)
    assert out.splitlines()[0] == f"monoquant {monoquant.__version__}"
    f = _core.cpu_features()
    expected_isa = "avx2" if (f["avx2"] and f["fma"] and f["f16c"]) else "scalar"
    assert fields["kernels"] == expected_isa
    # default: hardware concurrency (the online CPUs, as os.cpu_count() counts them)
    assert int(fields["threads"]) == os.cpu_count()
    flags = dict(re.findall(r"(\w+)=(\d)", out))
    assert flags["avx2"] == str(int(f["avx2"])) and flags["f16c"] == str(int(f["f16c"]))
    assert flags["fma"] == str(int(f["fma"]))
    # the linear kernel set in use, the one the Python extension runs, and why
    assert fields["linear_kernels"] == _core.linear_kernel_name()
    assert fields["linear_kernels_why"] == _core.linear_kernel_reason()
    if fields["linear_kernels"] == "avx512_vnni":
        assert "AVX-512 VNNI" in fields["linear_kernels_why"]
    _, off = _info(cli, env_extra={"MONOQUANT_AVX512": "0"})
    assert off["linear_kernels"] != "avx512_vnni"
    if f["avx512vnni"]:
        assert "MONOQUANT_AVX512=0" in off["linear_kernels_why"]
    # the bf16 float part's kernels: what compute_dtype=torch.bfloat16 switches to here
    assert fields["bf16_attention"].startswith("monoquant_amx" if _core.attention_bf16_kernel() else "torch's sdpa")
    assert fields["bf16_layer_norm"].startswith("monoquant" if _core.layer_norm_bf16_available() else "torch's")
    # what --bits 7 buys: the narrow-code kernel exists on the avx2 set only
    assert fields["w7a8"].startswith("narrow-code" if fields["linear_kernels"] == "avx2" else "the W8A8 kernels")
    _, plain = _info(cli, env_extra={"MONOQUANT_AVX512": "0", "MONOQUANT_VNNI": "0"})
    if f["avx2"] and f["fma"] and f["f16c"]:
        assert plain["linear_kernels"] == "avx2" and plain["w7a8"].startswith("narrow-code kernel")


def test_info_respects_threads_and_environment(cli):
    assert _info(cli, "--threads", "3")[1]["threads"] == "3"
    assert _info(cli, env_extra={"MONOQUANT_NUM_THREADS": "5"})[1]["threads"] == "5"
    assert _info(cli, env_extra={"MONOQUANT_ISA": "scalar"})[1]["kernels"] == "scalar"


def test_inspect_lists_tensors_and_metadata(cli, tmp_path):
    import torch
    from monoquant import io as mqio
    path = tmp_path / "m.safetensors"
    mqio.save_state_dict({"layer.weight": torch.zeros(3, 4, dtype=torch.bfloat16), "b": torch.zeros(2)}, path)
    r = run(cli, "inspect", str(path))
    assert r.returncode == OK, r.stderr
    assert "2 tensors" in r.stdout and "metadata format = pt" in r.stdout
    assert re.search(r"^layer\.weight\s+bfloat16\s+\[3, 4\]\s+24$", r.stdout, re.M), r.stdout
    pt = tmp_path / "m.pt"
    torch.save({"w": torch.arange(12.0).reshape(3, 4)[:, ::2]}, pt)
    r = run(cli, "inspect", str(pt))
    assert r.returncode == OK and "torch.save archive" in r.stdout and "strided view" in r.stdout


def test_inspect_bad_inputs_exit_codes(cli, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    r = run(cli, "inspect", str(bad))
    assert r.returncode == 4 and "bad.safetensors" in r.stderr, r.stderr  # format error
    r = run(cli, "inspect", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 5, r.stderr  # io error
    r = run(cli, "inspect")
    assert r.returncode == USAGE
