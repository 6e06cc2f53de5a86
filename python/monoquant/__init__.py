"""monoquant: quantize PyTorch models to int8, int4, float16 and bfloat16.

The numerics live in the C++ core (``monoquant._core``); this package is the
thin layer that takes torch tensors and modules to it.
"""

from . import _core
from .errors import (FormatError, InvalidArgumentError, MonoquantError, MonoquantIOError,
                     UnsupportedError)
from .metrics import ErrorMetrics, error_metrics, sqnr
from .tensor import QuantizedTensor, QuantSpec, quantize_tensor
from .tensor import dequantize as _dequantize_tensor
from .observers import (HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver, Observer,
                        PercentileObserver, create_observer, load_observer)
from .calibration import CalibrationStats, calibrate, load_calibration, save_calibration
from .tokenized_data import tokenized_batches
from . import ops
from .modules import QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear, QuantModule
from . import io
from .io import load_checkpoint, load_quantized, load_state_dict, save_quantized, save_state_dict
from .schemes import LayerScheme
from .report import LayerReport, QuantizationReport
from .result import QuantizationResult, ValidationReport
from .model_files import load, dequantize_model
from .api import quantize
from .sensitivity import SensitivityReport, sensitivity
from .auto_recipe import AutoRecipe, auto_recipe

__version__ = _core.__version__


def _share_torch_threads() -> None:
    # Run the core's parallel loops on torch's OpenMP workers (thread_pool.hpp says why);
    # MONOQUANT_POOL=own keeps the core's own pool, for comparison.
    import os

    import torch  # noqa: F401  (loads torch's OpenMP runtime)

    if os.environ.get("MONOQUANT_POOL", "") != "own":
        _core.share_openmp_runtime()


_share_torch_threads()


def dequantize(obj):
    """Back to float: a ``QuantizedTensor`` gives a float32 tensor; a quantized model (or a
    ``QuantizationResult``) gives a plain float copy with every quantized module replaced by its float kind."""
    if isinstance(obj, QuantizedTensor):
        return _dequantize_tensor(obj)
    if isinstance(obj, QuantizationResult):
        obj = obj.model
    import torch

    if isinstance(obj, torch.nn.Module):
        return dequantize_model(obj)
    raise InvalidArgumentError(f"dequantize takes a QuantizedTensor, a quantized nn.Module or a QuantizationResult, "
                               f"got {type(obj).__name__}")


def get_num_threads() -> int:
    """Threads the C++ core uses. Its loops run on torch's own OpenMP threads, so by default
    this follows ``torch.get_num_threads()`` (or MONOQUANT_NUM_THREADS when set)."""
    return _core.num_threads()


def set_num_threads(n: int) -> None:
    """Fix the C++ core's thread count (it then stops following ``torch.set_num_threads``)."""
    _core.set_num_threads(int(n))


__all__ = [
    "quantize", "load", "dequantize", "sensitivity", "SensitivityReport", "auto_recipe", "AutoRecipe", "QuantizationResult", "QuantizationReport", "LayerReport", "ValidationReport",
    "LayerScheme", "QuantModule", "QuantLinear", "QuantConv1d", "QuantConv2d", "QuantEmbedding",
    "QuantizedTensor", "QuantSpec", "quantize_tensor", "dequantize",
    "ErrorMetrics", "error_metrics", "sqnr",
    "get_num_threads", "set_num_threads",
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "PercentileObserver",
    "create_observer", "load_observer", "calibrate", "CalibrationStats", "save_calibration", "load_calibration",
    "tokenized_batches",
    "io", "load_state_dict", "load_checkpoint", "save_state_dict", "save_quantized", "load_quantized",
    "MonoquantError", "InvalidArgumentError", "FormatError", "MonoquantIOError", "UnsupportedError",
]
