"""Observers: running statistics of tensors, from which static quantization
parameters (scale, zero point) are chosen.

The statistics live in C++ (``monoquant._core``); these classes only check
arguments and move tensors across without copying them. Every observer can

- ``observe(x)`` a batch (any float dtype, any strides; NaN and +-Inf are
  ignored and counted in ``nonfinite_count``),
- ``merge(other)`` another observer of the same kind and options (as if it had
  observed the other's batches too),
- ``calculate_qparams(bits, scheme)`` for 8 or 4 bits, "symmetric" or
  "asymmetric", following monoquant's conventions (see ``quantize_tensor``),
- ``state()`` / ``load_observer(state)`` its full state as versioned JSON.

Kinds (``create_observer`` names):

================================  =============================================
``minmax``                        running min and max
``moving_average_minmax``         moving average of each batch's min and max
                                  (``averaging_constant`` 0.01, as torch.ao)
``histogram``                     histogram (``bins`` 2048) searched for the
                                  range of least L2 quantization error
``percentile``                    the ``percentile`` (99.99) of the data
``auto``                          ``histogram`` per tensor, ``minmax`` per
                                  channel
================================  =============================================
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _core
from .errors import InvalidArgumentError

KINDS = ("minmax", "moving_average_minmax", "histogram", "percentile")
_ALIASES = {"min_max": "minmax", "moving_average": "moving_average_minmax", "hist": "histogram"}
_GRANULARITIES = {"per_tensor": "per_tensor", "tensor": "per_tensor", "per_channel": "per_channel",
                  "channel": "per_channel"}
_SCHEMES = ("symmetric", "asymmetric", "sym", "asym")


def _as_observable(x, what: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidArgumentError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InvalidArgumentError(f"{what} must be a floating-point tensor, got {x.dtype}")
    x = x.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    return x


class Observer:
    """Base class; build observers with the subclasses or ``create_observer``."""

    kind: str = ""

    def __init__(self, *, granularity: str = "per_tensor", axis: int = 0, **options):
        if granularity not in _GRANULARITIES:
            raise InvalidArgumentError(
                f"observer granularity must be 'per_tensor' or 'per_channel', got {granularity!r}")
        self._impl = _core.create_observer(self.kind, _GRANULARITIES[granularity], int(axis), **options)

    @classmethod
    def _wrap(cls, impl) -> "Observer":
        kind_cls = _CLASSES.get(impl.kind, Observer)
        obj = kind_cls.__new__(kind_cls)
        obj._impl = impl
        return obj

    # ------------------------------------------------------------- observing
    def observe(self, x: torch.Tensor) -> None:
        """Add a batch. Tensors on other devices are copied to the CPU first."""
        if type(x) is torch.Tensor and x.is_cpu and not x.requires_grad and x.is_floating_point():
            self._impl.observe(x)  # what _as_observable would pass on, without its checks (calibration's hot path)
            return
        self._impl.observe(_as_observable(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Observe ``x`` and return it unchanged (usable as a forward hook body)."""
        self.observe(x)
        return x

    def merge(self, other: "Observer") -> "Observer":
        """Add ``other``'s statistics to this observer; returns self."""
        if not isinstance(other, Observer):
            raise InvalidArgumentError(f"merge expects an Observer, got {type(other).__name__}")
        self._impl.merge(other._impl)
        return self

    def reset(self) -> None:
        self._impl.reset()

    # ------------------------------------------------------------- results
    def calculate_qparams(self, bits: int = 8, scheme: str = "asymmetric"
                          ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(scale, zero_point): float32 and int32 tensors of shape [] per tensor
        or [C] per channel; zero_point is None for the symmetric scheme."""
        if scheme not in _SCHEMES:
            raise InvalidArgumentError(f"scheme must be 'symmetric' or 'asymmetric', got {scheme!r}")
        q = self._impl.calculate_qparams(int(bits), scheme)
        return q["scales"], q["zero_points"]

    def ranges(self, bits: int = 8, scheme: str = "asymmetric") -> Tuple[torch.Tensor, torch.Tensor]:
        """The clipping range (lo, hi) per channel the qparams are derived from."""
        return self._impl.ranges(int(bits), scheme)

    def quantize(self, x: torch.Tensor, bits: int = 8, scheme: str = "asymmetric"):
        """Quantize ``x`` with this observer's parameters (a QuantizedTensor)."""
        from .tensor import QuantizedTensor, QuantSpec, _as_cpu_tensor
        x = _as_cpu_tensor(x, "x")
        scale, zero_point = self.calculate_qparams(bits, scheme)
        gran = self.options["granularity"]
        axis = int(self.options["axis"])
        out = _core.quantize_with_qparams(x, int(bits), scheme, gran, axis, 128, scale, zero_point)
        scheme = "symmetric" if scheme in ("symmetric", "sym") else "asymmetric"
        spec = QuantSpec(format=f"int{int(bits)}", bits=int(bits), scheme=scheme, granularity=gran, axis=axis)
        return QuantizedTensor(out["codes"], out["scales"], out["zero_points"], spec, x.shape)

    # ------------------------------------------------------------- facts
    @property
    def options(self) -> dict:
        return self._impl.options

    @property
    def count(self) -> int:
        """Finite elements observed."""
        return self._impl.count

    @property
    def nonfinite_count(self) -> int:
        """NaN and +-Inf elements seen and ignored."""
        return self._impl.nonfinite_count

    @property
    def channels(self) -> int:
        return self._impl.channels

    @property
    def min_val(self) -> torch.Tensor:
        """Running min per channel ([1] per tensor; NaN where nothing finite was seen)."""
        return self._impl.min_values()

    @property
    def max_val(self) -> torch.Tensor:
        return self._impl.max_values()

    # ------------------------------------------------------------- state
    def state(self) -> str:
        """Kind, options and statistics as JSON text (docs/FORMAT.md)."""
        return self._impl.save_state()

    def copy(self) -> "Observer":
        return Observer._wrap(self._impl.clone())

    def __getstate__(self):
        return {"state": self.state()}

    def __setstate__(self, d):
        self._impl = _core.load_observer(d["state"])

    def __repr__(self) -> str:
        opts = self.options
        extra = ""
        if opts["granularity"] == "per_channel":
            extra = f", axis={opts['axis']}, channels={self.channels}"
        return f"{type(self).__name__}({opts['granularity']}{extra}, count={self.count})"


class MinMaxObserver(Observer):
    """Running min and max."""

    kind = "minmax"

    def __init__(self, granularity: str = "per_tensor", axis: int = 0):
        super().__init__(granularity=granularity, axis=axis)


class MovingAverageMinMaxObserver(Observer):
    """torch.ao's moving average: the first batch sets the range, every later
    one moves it by ``averaging_constant * (batch_min - min)`` (and for max)."""

    kind = "moving_average_minmax"

    def __init__(self, averaging_constant: float = 0.01, granularity: str = "per_tensor", axis: int = 0):
        super().__init__(granularity=granularity, axis=axis, averaging_constant=float(averaging_constant))


class HistogramObserver(Observer):
    """A histogram of at least ``bins`` bins across the observed range, exactly
    mergeable; the range is chosen by torch.ao's L2 search and, with
    ``refine``, improved against monoquant's own quantization grid."""

    kind = "histogram"

    def __init__(self, bins: int = 2048, refine: bool = True, granularity: str = "per_tensor", axis: int = 0):
        super().__init__(granularity=granularity, axis=axis, bins=int(bins), refine=bool(refine))


class PercentileObserver(Observer):
    """The ``percentile`` of the data: [q(100 - p), q(p)] for asymmetric
    schemes, [-a, a] with a the p-th percentile of |x| for symmetric ones."""

    kind = "percentile"

    def __init__(self, percentile: float = 99.99, bins: int = 2048, granularity: str = "per_tensor",
                 axis: int = 0):
        super().__init__(granularity=granularity, axis=axis, percentile=float(percentile), bins=int(bins))


_CLASSES = {
    "minmax": MinMaxObserver,
    "moving_average_minmax": MovingAverageMinMaxObserver,
    "histogram": HistogramObserver,
    "percentile": PercentileObserver,
}


def resolve_observer_name(name: str, granularity: str = "per_tensor") -> str:
    """The kind ``name`` stands for. ``auto`` is ``histogram`` per tensor (its
    L2 search clips the outliers that would stretch one range for a whole
    tensor) and ``minmax`` per channel (each channel's range is local already,
    and a histogram per channel costs 16 * bins bytes per channel)."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"observer name must be a string, got {type(name).__name__}")
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key == "auto":
        if granularity not in _GRANULARITIES:
            raise InvalidArgumentError(f"unknown granularity {granularity!r}")
        return _core.resolve_auto_observer(_GRANULARITIES[granularity])
    if key not in _CLASSES:
        raise InvalidArgumentError(f"unknown observer {name!r}; expected one of {', '.join(KINDS)} or 'auto'")
    return key


def create_observer(name: str = "auto", **kwargs) -> Observer:
    """An observer by name with its options as keyword arguments, e.g.
    ``create_observer("histogram", bins=4096)`` or
    ``create_observer("minmax", granularity="per_channel", axis=-1)``."""
    kind = resolve_observer_name(name, kwargs.get("granularity", "per_tensor"))
    cls = _CLASSES[kind]
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise InvalidArgumentError(f"bad options for the {kind} observer: {e}") from None


def load_observer(state: str) -> Observer:
    """Rebuild an observer from ``Observer.state()``."""
    if not isinstance(state, str):
        raise InvalidArgumentError(f"observer state must be a JSON string, got {type(state).__name__}")
    return Observer._wrap(_core.load_observer(state))


__all__ = [
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "PercentileObserver",
    "create_observer", "load_observer", "resolve_observer_name", "KINDS",
]
