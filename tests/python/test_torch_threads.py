"""The core's parallel loops run on torch's own OpenMP threads inside Python (one pool, not two
spinning for the same cores). Each check runs in a fresh interpreter: the thread count follows
torch.set_num_threads only until someone fixes it with monoquant.set_num_threads."""

import os
import subprocess
import sys
import textwrap

import torch


def _run(code: str, **env) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_torch_wheel_runs_openmp():
    # The premise: this torch parallelises with OpenMP, so there is a runtime to share.
    assert "OpenMP" in torch.__config__.parallel_info()


def test_shares_torch_openmp_and_follows_its_thread_count():
    out = _run("""
        import torch, monoquant
        from monoquant import _core
        print(_core.parallel_runtime())
        torch.set_num_threads(1); a = monoquant.get_num_threads()
        torch.set_num_threads(2); b = monoquant.get_num_threads()
        monoquant.set_num_threads(1); torch.set_num_threads(2); c = monoquant.get_num_threads()
        print(a, b, c)
    """)
    runtime, counts = out.splitlines()
    assert runtime == "openmp (shared with torch)"
    assert counts == "1 2 1"


def test_own_pool_on_request_gives_the_same_bits():
    code = """
        import torch, monoquant
        from monoquant import _core
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
        res = monoquant.quantize(model, bits=8, dynamic=True, show_progress=False)
        x = torch.randn(4, 64, 384)
        torch.set_num_threads(2)
        with torch.no_grad():
            y = res.model(x)
        print(_core.parallel_runtime())
        print(torch.sum(y.double() * torch.arange(y.numel(), dtype=torch.float64).reshape(y.shape)).item())
        print(y.view(torch.int32).to(torch.int64).sum().item())
    """
    shared = _run(code).splitlines()
    own = _run(code, MONOQUANT_POOL="own").splitlines()
    assert shared[0] == "openmp (shared with torch)" and own[0] == "monoquant pool"
    assert shared[1:] == own[1:]
