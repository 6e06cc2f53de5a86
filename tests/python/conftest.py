import os
import shutil
import sys

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def cli():
    """The monoquant binary installed next to this Python (scripts/setup.sh puts it there)."""
    bindir = os.path.dirname(sys.executable)
    path = bindir + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("monoquant", path=path)
    if exe is None:
        pytest.fail(f"monoquant binary not found on {path!r} (is the package installed into this venv?)")
    return exe


@pytest.fixture
def float32_weight_only():
    """Weight-only layers off the bf16 kernels (AMX-BF16 tiles, AVX-512 BF16) (bf16-rounded activations, tested against their own
    tolerance in test_ops_linear.py), for tests whose bounds are float32 ones."""
    import monoquant

    monoquant._core.set_bf16_weight_only_enabled(False)
    yield
    monoquant._core.set_bf16_weight_only_enabled(True)
