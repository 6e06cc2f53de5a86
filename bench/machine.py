"""The machine a benchmark ran on, for the line every result starts with."""

import platform
import subprocess


def cpu_model() -> str:
    """lscpu's "Model name" (the CPU every figure must name), else what platform knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration):  # no lscpu, or no Model name line
        return platform.processor() or "unknown"
