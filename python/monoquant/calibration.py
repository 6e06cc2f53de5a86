"""Calibration: run data through a model and let observers watch what the
selected modules see.

    stats = monoquant.calibrate(model, batches, observer="histogram", max_samples=512)
    scale, zero_point = stats["encoder.layer.0.attention.self.query"]["input"].calculate_qparams(8)
    monoquant.save_calibration("calib.json", stats)   # the CLI can quantize from this file

The model runs in eval mode under ``torch.no_grad()``; forward (pre-)hooks hand
each selected module's input (and output, with ``outputs=True``) to a C++ observer
and keep nothing else, so calibration data is streamed batch by batch. The
statistics file is JSON, written by the C++ core (docs/FORMAT.md,
"Calibration statistics").
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Callable, Dict, Iterable, Iterator, Optional, Union

import torch
from torch import nn

from . import _core
from .errors import InvalidArgumentError
from .observers import Observer, create_observer, resolve_observer_name
from .progress import progress
from .shared_inputs import SharedInputObservers

# Modules calibrated when none are named: the ones monoquant quantizes.
DEFAULT_MODULE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)

ModuleSelector = Union[None, Iterable[str], Callable[[str, nn.Module], bool]]


class CalibrationStats(Mapping):
    """Module name -> {"input": Observer, "output": Observer} (output only when
    observed), plus ``samples`` / ``batches`` seen and free-form ``metadata``."""

    def __init__(self, modules: Optional[Dict[str, Dict[str, Observer]]] = None, samples: int = 0,
                 batches: int = 0, metadata: Optional[Dict[str, str]] = None):
        self.modules: Dict[str, Dict[str, Observer]] = modules if modules is not None else {}
        self.samples = samples
        self.batches = batches
        self.metadata: Dict[str, str] = dict(metadata or {})

    def __getitem__(self, name: str) -> Dict[str, Observer]:
        return self.modules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)

    def save(self, path: Union[str, os.PathLike]) -> None:
        save_calibration(path, self)

    def __repr__(self) -> str:
        return f"CalibrationStats({len(self.modules)} modules, {self.samples} samples)"


# ---------------------------------------------------------------- batches

def _first_tensor(obj) -> Optional[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for item in obj:
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def _batch_size(batch) -> int:
    t = _first_tensor(batch)
    if t is None:
        raise InvalidArgumentError(
            f"a calibration batch must hold a tensor (a tensor, a tuple/list of them or a dict such as a "
            f"tokenizer's BatchEncoding), got {type(batch).__name__}")
    return int(t.shape[0]) if t.dim() > 0 else 1


def _take(batch, n: int, size: int):
    """The first n samples of a batch whose tensors have `size` rows."""
    if isinstance(batch, torch.Tensor):
        return batch[:n] if batch.dim() > 0 and batch.shape[0] == size else batch
    if isinstance(batch, Mapping):
        items = {k: _take(v, n, size) for k, v in batch.items()}
        try:
            return type(batch)(items)
        except Exception:  # a mapping type that cannot be rebuilt from a dict
            return items
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_take(v, n, size) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_take(v, n, size) for v in batch)
    return batch


def _run(model: nn.Module, batch):
    """``model(batch)``: a mapping as keyword arguments, a tuple/list as positional ones."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (list, tuple)):
        return model(*batch)
    return model(batch)


# ---------------------------------------------------------------- module selection

def _select(model: nn.Module, modules: ModuleSelector) -> Dict[str, nn.Module]:
    named = dict(model.named_modules())
    if modules is None:
        chosen = {n: m for n, m in named.items() if isinstance(m, DEFAULT_MODULE_TYPES)}
    elif callable(modules):
        chosen = {n: m for n, m in named.items() if modules(n, m)}
    else:
        if isinstance(modules, str):
            modules = [modules]
        chosen = {}
        for n in modules:
            if n not in named:
                close = [k for k in named if k.endswith(n)][:3]
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise InvalidArgumentError(f"the model has no module named {n!r}{hint}")
            chosen[n] = named[n]
    if not chosen:
        raise InvalidArgumentError("no module was selected for calibration (by default: nn.Linear, nn.Conv1d "
                                   "and nn.Conv2d); pass modules= names or a predicate")
    return chosen


def _observer_factory(observer, granularity: str, axis: int, kwargs) -> Callable[[], Observer]:
    if isinstance(observer, Observer):
        template = observer
        return template.copy
    if isinstance(observer, str):
        kind = resolve_observer_name(observer, granularity)
        opts = dict(kwargs)
        if granularity != "per_tensor":
            opts.update(granularity=granularity, axis=axis)
        create_observer(kind, **opts)  # fail now, not inside a hook
        return lambda: create_observer(kind, **opts)
    if callable(observer):
        return observer
    raise InvalidArgumentError(f"observer must be a name, an Observer or a factory, got {type(observer).__name__}")


# ---------------------------------------------------------------- calibrate

def calibrate(
    model: nn.Module,
    data,
    modules: ModuleSelector = None,
    observer: Union[str, Observer, Callable[[], Observer]] = "histogram",
    max_samples: Optional[int] = None,
    *,
    outputs: bool = False,
    granularity: str = "per_tensor",
    axis: int = -1,
    show_progress: bool = True,
    **observer_options,
) -> CalibrationStats:
    """Observe the inputs (and with ``outputs=True`` the outputs) of modules.

    data: an iterable of batches, consumed once and lazily: tensors, tuples or
        lists (passed positionally), dicts or transformers' BatchEncoding
        (passed as keyword arguments), or a DataLoader yielding those.
    modules: None (every nn.Linear / nn.Conv1d / nn.Conv2d), a list of module
        names, or a predicate ``f(name, module) -> bool``.
    observer: a kind name (see ``monoquant.observers``; extra keyword
        arguments are its options), an Observer to copy per tensor, or a
        zero-argument factory.
    max_samples: stop after this many samples (rows of the batches' first
        tensor); the last batch is cut to fit.
    granularity / axis: "per_channel" observes each index of ``axis``
        (default -1, the hidden size) separately.

    A module's input is its first floating-point tensor argument (positional
    or keyword). The model is put in eval mode and restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"calibrate expects a torch.nn.Module, got {type(model).__name__}")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise InvalidArgumentError(f"max_samples must be a positive integer, got {max_samples!r}")
    if isinstance(data, (torch.Tensor, Mapping)):
        data = [data]  # one batch
    if not isinstance(data, Iterable):
        raise InvalidArgumentError(f"calibration data must be an iterable of batches, got {type(data).__name__}")
    chosen = _select(model, modules)
    make = _observer_factory(observer, granularity, axis, observer_options)
    stats: Dict[str, Dict[str, Observer]] = {}
    for name in chosen:
        stats[name] = {"input": make()}
        if outputs:
            stats[name]["output"] = make()

    # Inputs are observed in a pre-hook, before the module runs, so the
    # observer sees exactly what the module receives, whatever the module then
    # does to its input in place; outputs (when asked) in a forward hook.
    def input_hook_for(name):
        def hook(module, args, kwargs):
            # The common case first: the hooks run between every layer, where
            # each line of Python costs cache misses after the layer's own work.
            if args and type(args[0]) is torch.Tensor and args[0].is_floating_point():
                shared.add(name, args[0])
                return
            x = next((a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), None)
            if x is None:
                x = next((a for a in kwargs.values() if isinstance(a, torch.Tensor) and a.is_floating_point()),
                         None)
            if x is not None:
                shared.add(name, x)
        return hook

    def output_hook_for(name):
        def hook(module, args, output):
            y = _first_tensor(output)
            if y is not None and y.is_floating_point():
                stats[name]["output"].observe(y)
        return hook

    # Modules fed the same tensor (query / key / value) observe it once; results are unchanged.
    shared = SharedInputObservers({n: d["input"] for n, d in stats.items()})
    handles = [m.register_forward_pre_hook(input_hook_for(n), with_kwargs=True) for n, m in chosen.items()]
    if outputs:
        handles += [m.register_forward_hook(output_hook_for(n)) for n, m in chosen.items()]
    was_training = model.training
    samples = batches = 0
    total = len(data) if hasattr(data, "__len__") else None
    try:
        model.eval()
        with torch.no_grad():
            for batch in progress(data, total=total, desc="calibrating") if show_progress else data:
                size = _batch_size(batch)
                if max_samples is not None and samples + size > max_samples:
                    batch = _take(batch, max_samples - samples, size)
                    size = max_samples - samples
                _run(model, batch)
                shared.resolve()
                samples += size
                batches += 1
                if max_samples is not None and samples >= max_samples:
                    break
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for n, obs in shared.finish().items():
        stats[n]["input"] = obs

    bad = [f"{n}.{t}" for n, d in stats.items() for t, o in d.items() if o.nonfinite_count]
    if bad:
        warnings.warn(f"NaN/Inf values were ignored while calibrating {', '.join(bad[:5])}"
                      f"{' and others' if len(bad) > 5 else ''}", RuntimeWarning, stacklevel=2)
    unseen = [n for n, d in stats.items() if d["input"].count == 0]
    if unseen and len(unseen) == len(stats):
        warnings.warn("no selected module saw any data during calibration", RuntimeWarning, stacklevel=2)
    meta = {"samples": str(samples), "batches": str(batches), "torch_version": torch.__version__,
            "monoquant_version": _core.__version__}
    return CalibrationStats(stats, samples=samples, batches=batches, metadata=meta)


# ---------------------------------------------------------------- files

def save_calibration(path: Union[str, os.PathLike], stats, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write observers to a calibration statistics file (atomically).

    stats: a CalibrationStats, or a mapping module name -> Observer (its
    input) or -> {tensor name: Observer}.
    """
    entries = []
    for module, item in stats.items():
        tensors = {"input": item} if isinstance(item, Observer) else item
        if not isinstance(tensors, Mapping):
            raise InvalidArgumentError(f"stats[{module!r}] must be an Observer or a dict of them")
        for tensor, obs in tensors.items():
            if not isinstance(obs, Observer):
                raise InvalidArgumentError(f"stats[{module!r}][{tensor!r}] is not an Observer")
            entries.append((str(module), str(tensor), obs._impl))
    meta = dict(getattr(stats, "metadata", {}) or {})
    meta.update(metadata or {})
    _core.save_calibration(os.fspath(path), entries, {str(k): str(v) for k, v in meta.items()})


def load_calibration(path: Union[str, os.PathLike]) -> CalibrationStats:
    """Read a calibration statistics file written by save_calibration (or the CLI)."""
    entries, meta = _core.load_calibration(os.fspath(path))
    modules: Dict[str, Dict[str, Observer]] = {}
    for module, tensor, impl in entries:
        modules.setdefault(module, {})[tensor] = Observer._wrap(impl)
    samples = int(meta.get("samples", 0)) if str(meta.get("samples", "0")).isdigit() else 0
    batches = int(meta.get("batches", 0)) if str(meta.get("batches", "0")).isdigit() else 0
    return CalibrationStats(modules, samples=samples, batches=batches, metadata=meta)


__all__ = ["calibrate", "save_calibration", "load_calibration", "CalibrationStats", "DEFAULT_MODULE_TYPES"]
