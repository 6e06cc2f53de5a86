"""Automatic mixed precision: ``monoquant.auto_recipe(model, calibration_data, target=...)``.

1. The sensitivity report (``sensitivity.py``) gives, per layer and candidate scheme, the effect of
   quantizing that layer alone (1 - output cosine) and the bytes it saves; keeping the layer float
   is one more option (no damage, no saving).
2. Per layer, the options on the lower convex hull of (bytes, damage) give upgrade steps (int4 ->
   int8 -> float); all steps, steepest damage reduction per byte first, make one path of recipes
   from the smallest model to the float one. Damages are treated as additive, which is the
   path's only assumption; every answer is then measured.
3. ``{"min_cosine": X}``: bisection along the path, each probe quantizing the mix and measuring
   the model's output cosine on the evaluation batches; the smallest recipe measured at X or more
   wins. ``{"max_bits_per_weight": B}`` / ``{"max_bytes": N}``: the last recipe on the path within
   the budget (the path's best predicted accuracy for that size), measured.
4. ``time_budget_s``: checked before each measured pass; when it runs out the best recipe found so
   far is returned (and ``stopped_by_budget`` set) -- a measured one when there is one, else the
   prediction, and where even the sensitivity pass was cut short the uniform recipe of the
   candidate that fits the target best. Never nothing.

Bits per weight here count every considered layer's weight bytes (scales and zero points
included, float layers at their own size) over its parameters.
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from .errors import InvalidArgumentError
from .gptq import materialize
from .progress import progress_enabled
from .sensitivity import BUDGET_NOTE, SensitivityReport, _compare, _outputs, sensitivity

#: the recipe entry each candidate means (settings a recipe takes)
_RECIPE_SPECS = {
    "int8": {"bits": 8, "mode": "dynamic"},
    "w8a16": {"bits": 8, "mode": "weight_only"},
    "int4": {"bits": 4, "mode": "weight_only"},
    "w4a8": {"bits": 4, "mode": "dynamic"},
}


@dataclass
class RecipePoint:
    """One recipe tried (or predicted) on the way."""
    bits_per_weight: float
    bytes: int                        # the whole model's tensor bytes with this recipe
    predicted_cosine: float           # 1 - the sum of the layers' measured damages
    measured_cosine: Optional[float]  # on the evaluation batches, when measured
    counts: Dict[str, int]            # layers per option ("int4": 30, "int8": 6, "float": 1)
    recipe: Dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass
class AutoRecipe:
    recipe: Dict[str, Any]            # what quantize(model, recipe=...) and --recipe take
    target: Dict[str, float]
    cosine: Optional[float]           # measured output cosine of .recipe (None: budget ran out first)
    bits_per_weight: float
    bytes: int
    met: bool                         # the target is met by the measured cosine (min_cosine) or the size
    stopped_by_budget: bool
    elapsed_s: float
    method: str                       # how the measured recipes were quantized (quantize's method=)
    points: List[RecipePoint]         # every recipe measured, and the predicted path
    path: List[RecipePoint] = field(repr=False, default_factory=list)
    sensitivity: Optional[SensitivityReport] = field(repr=False, default=None)

    def save(self, path: os.PathLike) -> None:
        """The recipe as JSON: ``monoquant quantize MODEL -o OUT --recipe PATH`` takes it."""
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(self.recipe, f, indent=2)
            f.write("\n")

    def to_dict(self) -> Dict[str, Any]:
        return {"recipe": self.recipe, "target": dict(self.target), "cosine": self.cosine,
                "bits_per_weight": self.bits_per_weight, "bytes": self.bytes, "met": self.met,
                "stopped_by_budget": self.stopped_by_budget, "elapsed_s": self.elapsed_s, "method": self.method,
                "points": [{k: v for k, v in asdict(p).items() if k != "recipe"} for p in self.points]}

    def __str__(self) -> str:
        cos = "not measured" if self.cosine is None else f"{self.cosine:.5f}"
        return (f"auto_recipe {self.target}: cosine {cos}, {self.bits_per_weight:.2f} bits per weight, "
                f"{self.bytes} bytes{'' if self.met else ' (target not met)'}"
                f"{' (stopped by the time budget)' if self.stopped_by_budget else ''}")


class _Options:
    """Per layer: its options (name, bytes, damage), the convex-hull steps between them."""

    def __init__(self, name: str, params: int, float_bytes: int):
        self.name, self.params = name, params
        self.options = {"float": (float_bytes, 0.0)}  # measured options: (bytes, damage)
        self.sizes = {"float": float_bytes}             # bytes of every option that applies

    def hull(self) -> List[str]:
        """Options from the fewest bytes up, keeping those on the lower convex hull of (bytes, damage)."""
        pts = sorted(self.options.items(), key=lambda kv: (kv[1][0], kv[1][1]))
        hull: List[tuple] = []
        for name, (b, d) in pts:
            if hull and d >= hull[-1][2]:
                continue  # more bytes and no less damage: never worth it
            while len(hull) >= 2:
                (_, b1, d1), (_, b2, d2) = hull[-2], hull[-1]
                if (d2 - d1) * (b - b1) >= (d - d1) * (b2 - b1):  # hull[-1] lies above the chord
                    hull.pop()
                else:
                    break
            hull.append((name, b, d))
        return [h[0] for h in hull]


def _path(layers: List[_Options]) -> List[Dict[str, str]]:
    """Assignments (layer -> option) from the smallest model to the float one."""
    current = {}
    steps = []
    for l in layers:
        h = l.hull()
        current[l.name] = h[0]
        for a, b in zip(h, h[1:]):
            (ba, da), (bb, db) = l.options[a], l.options[b]
            steps.append(((da - db) / max(bb - ba, 1), l.name, b))
    steps.sort(key=lambda s: -s[0])
    out = [dict(current)]
    for _, name, opt in steps:
        current[name] = opt
        out.append(dict(current))
    return out


def _point(assign: Dict[str, str], layers: Dict[str, _Options], other_bytes: int, specs: Dict[str, Dict[str, Any]]
           ) -> RecipePoint:
    nbytes = sum(layers[n].sizes[o] for n, o in assign.items())
    params = sum(layers[n].params for n in assign)
    # an option the budget left unmeasured predicts nothing (nan)
    damage = sum(layers[n].options[o][1] if o in layers[n].options else float("nan") for n, o in assign.items())
    counts: Dict[str, int] = {}
    for o in assign.values():
        counts[o] = counts.get(o, 0) + 1
    recipe = {n: ("float" if o == "float" else dict(specs[o])) for n, o in assign.items()}
    return RecipePoint(8.0 * nbytes / max(params, 1), nbytes + other_bytes, 1.0 - damage, None, counts, recipe)


def auto_recipe(model: nn.Module, calibration_data, target: Dict[str, float], *,
                candidates: Sequence[str] = ("int4", "int8"), group_size: int = 128,
                evaluation_data=None, time_budget_s: Optional[float] = None, report: Optional[SensitivityReport] = None,
                method: str = "rtn", quantize_options: Optional[Dict[str, Any]] = None,
                layer_types=None, skip=None, include=None,
                num_calibration_samples: Optional[int] = None, show_progress: Optional[bool] = None) -> AutoRecipe:
    """The smallest recipe whose measured output cosine is at least ``target["min_cosine"]``, or the most
    accurate within ``target["max_bits_per_weight"]`` / ``target["max_bytes"]`` (see the module docstring).

    ``evaluation_data`` (default: the calibration batches) is what the cosine is measured on; ``report``
    reuses a sensitivity report of the same model and candidates. ``method="gptq"`` (or "awq") measures each
    probed recipe as quantize(..., method=method) builds it from the calibration data: the ranking stays the
    round-to-nearest sensitivity, the bisection finds where the better method meets the goal. The result's
    recipe then wants the same method: ``quantize(model, recipe=r.recipe, method=r.method, calibration_data=...)``;
    ``quantize_options`` (e.g. ``{"act_order": True}``) go to every such quantize call.
    The model is not changed."""
    t0 = time.monotonic()
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"auto_recipe takes an nn.Module, got {type(model).__name__}")
    if not isinstance(target, dict) or len(target) != 1 or \
            next(iter(target)) not in ("min_cosine", "max_bits_per_weight", "max_bytes"):
        raise InvalidArgumentError(f"target must be one of {{'min_cosine': X}}, {{'max_bits_per_weight': B}}, "
                                   f"{{'max_bytes': N}}, got {target!r}")
    kind, goal = next(iter(target.items()))
    if not isinstance(goal, (int, float)) or isinstance(goal, bool) or not goal > 0 or \
            (kind == "min_cosine" and goal > 1):
        raise InvalidArgumentError(f"target {kind} must be a number > 0{' and <= 1' if kind == 'min_cosine' else ''}, "
                                   f"got {goal!r}")
    options = dict(quantize_options or {})
    for k in ("bits", "weight_only", "group_size", "recipe", "method", "calibration_data", "show_progress"):
        if k in options:
            raise InvalidArgumentError(f"quantize_options[{k!r}]: auto_recipe sets {k} itself")
    if method not in ("rtn", "gptq", "awq"):
        raise InvalidArgumentError(f"method must be 'rtn', 'gptq' or 'awq', got {method!r}")
    if time_budget_s is not None and not (isinstance(time_budget_s, (int, float)) and time_budget_s >= 0):
        raise InvalidArgumentError(f"time_budget_s must be a number >= 0, got {time_budget_s!r}")
    candidates = [candidates] if isinstance(candidates, str) else list(candidates)
    for c in candidates:
        if c not in _RECIPE_SPECS:
            raise InvalidArgumentError(f"unknown candidate {c!r}; expected some of {sorted(_RECIPE_SPECS)}")
    specs = {c: dict(_RECIPE_SPECS[c], **({"group_size": group_size} if _RECIPE_SPECS[c]["bits"] == 4 else {}))
             for c in candidates}
    if show_progress is None:
        show_progress = progress_enabled()
    deadline = None if time_budget_s is None else t0 + float(time_budget_s)

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    data = [calibration_data] if isinstance(calibration_data, (torch.Tensor, dict)) else calibration_data
    batches, _ = materialize(data, num_calibration_samples)
    if evaluation_data is None:
        eval_batches = batches
    else:
        eval_batches, _ = materialize([evaluation_data] if isinstance(evaluation_data, (torch.Tensor, dict))
                                      else evaluation_data, None)
    total_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if report is None:
        report = sensitivity(model, batches, candidates, group_size=group_size, layer_types=layer_types, skip=skip,
                             include=include, show_progress=show_progress, _deadline=deadline)
    modules = dict(model.named_modules())
    layers: Dict[str, _Options] = {}
    for row in report.layers:
        m = modules.get(row.name)
        if m is None:
            raise InvalidArgumentError(f"the sensitivity report names {row.name!r}, which the model does not have")
        w = m.weight
        opt = layers.setdefault(row.name, _Options(row.name, w.numel(), w.numel() * w.element_size()))
        if row.candidate in specs and (row.output_cosine is not None or row.note == BUDGET_NOTE):
            opt.sizes[row.candidate] = opt.sizes["float"] - row.bytes_saved
        if row.candidate in specs and row.output_cosine is not None:
            opt.options[row.candidate] = (opt.sizes[row.candidate], max(0.0, 1.0 - row.output_cosine))
    other_bytes = total_bytes - sum(l.options["float"][0] for l in layers.values())
    incomplete = any(row.note == BUDGET_NOTE for row in report.layers)

    reference = None
    measured: List[RecipePoint] = []

    def measure(p: RecipePoint) -> Optional[float]:
        nonlocal reference
        if out_of_time():
            return None
        from .api import quantize  # the same quantize the user runs with the recipe
        if reference is None:
            reference = _outputs(model, eval_batches)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a probe's SQNR warnings are the report's business, not the user's
            res = quantize(model, bits=4, weight_only=True, group_size=group_size, recipe=p.recipe,
                           show_progress=False, method=method,
                           calibration_data=None if method == "rtn" else batches, **options)
        p.measured_cosine = _compare(reference, _outputs(res.model, eval_batches))[0]
        measured.append(p)
        return p.measured_cosine

    if incomplete:
        # The budget ran out inside the sensitivity pass: the uniform candidate that fits best.
        best = _uniform_fallback(layers, other_bytes, specs, kind, goal)
        return _finish(best, target, kind, goal, True, t0, [best], [], report, method)

    path = [_point(a, layers, other_bytes, specs) for a in _path(list(layers.values()))]
    path[-1].measured_cosine = 1.0  # every layer float: the float model itself
    stopped = False
    if kind == "min_cosine":
        # Bisection on measured cosines, first probing where the prediction crosses the goal. The
        # answer stays in [lo, hi]; path[hi] is measured at the goal or more (or is the float end).
        lo, hi = 0, len(path) - 1
        probe = next((i for i, p in enumerate(path) if p.predicted_cosine >= goal), hi)
        guess = probe
        while lo < hi:
            c = measure(path[probe])
            if c is None:
                stopped = True
                break
            if c >= goal:
                hi = probe
            else:
                lo = probe + 1
            probe = (lo + hi) // 2
        chosen = path[hi]
        if stopped and hi == len(path) - 1:
            # out of time before any measured success: the best measured recipe, else the prediction
            meas = [p for p in measured if p.measured_cosine is not None]
            chosen = max(meas, key=lambda p: p.measured_cosine) if meas else path[guess]
    else:
        size = (lambda p: p.bits_per_weight) if kind == "max_bits_per_weight" else (lambda p: p.bytes)
        fits = [i for i, p in enumerate(path) if size(p) <= goal]
        if not fits:
            raise InvalidArgumentError(f"no recipe fits {kind} = {goal}: the smallest on the path has "
                                       f"{path[0].bits_per_weight:.2f} bits per weight and {path[0].bytes} bytes")
        chosen = path[fits[-1]]
        if chosen.measured_cosine is None:
            stopped = measure(chosen) is None
    return _finish(chosen, target, kind, goal, stopped, t0, measured, path, report, method)


def _uniform_fallback(layers, other_bytes, specs, kind, goal) -> RecipePoint:
    options = sorted(specs, key=lambda c: specs[c]["bits"])
    pts = []
    for c in options:
        assign = {n: (c if c in l.sizes else "float") for n, l in layers.items()}
        pts.append(_point(assign, layers, other_bytes, specs))
    if kind == "min_cosine":
        return pts[-1]  # the most accurate candidate everywhere: the safest guess
    size = (lambda p: p.bits_per_weight) if kind == "max_bits_per_weight" else (lambda p: p.bytes)
    fitting = [p for p in pts if size(p) <= goal]
    return fitting[-1] if fitting else pts[0]


def _finish(p: RecipePoint, target, kind, goal, stopped, t0, measured, path, report, method) -> AutoRecipe:
    if kind == "min_cosine":
        met = p.measured_cosine is not None and p.measured_cosine >= goal
    else:
        met = (p.bits_per_weight if kind == "max_bits_per_weight" else p.bytes) <= goal
    return AutoRecipe(p.recipe, dict(target), p.measured_cosine, p.bits_per_weight, p.bytes, met, bool(stopped),
                      time.monotonic() - t0, method, list(measured), list(path), report)


def random_recipe(report: SensitivityReport, n_upgraded: int, base: str = "int4", upgrade: str = "int8",
                  group_size: int = 128, seed: int = 0) -> Dict[str, Any]:
    """A baseline: ``n_upgraded`` layers drawn at random get ``upgrade``, the others ``base``."""
    names = list(dict.fromkeys(l.name for l in report.layers))
    rng = random.Random(seed)
    up = set(rng.sample(names, min(n_upgraded, len(names))))
    spec = {c: dict(_RECIPE_SPECS[c], **({"group_size": group_size} if _RECIPE_SPECS[c]["bits"] == 4 else {}))
            for c in (base, upgrade)}
    return {n: dict(spec[upgrade if n in up else base]) for n in names}


__all__ = ["auto_recipe", "AutoRecipe", "RecipePoint", "random_recipe"]
