"""``monoquant.quantize``: any nn.Module, state dict or checkpoint path to
INT8 / INT4 / FP16 / BF16 — dynamic, static or weight-only.

    quantize(model, bits=8, dynamic=True)              W8A8, activations per token at run time
    quantize(model, bits=8, calibration_data=data)     static W8A8 (observer "histogram" by default)
    quantize(model, bits=7, dynamic=True)              W7A8: int8 codes in [-63, 63] (faster without VNNI)
    quantize(model, bits=4, weight_only=True, group_size=128)   W4A16
    quantize(model, bits=8, weight_only=True)          W8A16
    quantize(model, bits=4, dynamic=True)              W4A8
    quantize(model, bits=4, calibration_data=data)     static W4A8 (int8 activations per tensor)
    quantize(model, bits=16)                           FP16 weights (dtype=torch.bfloat16 for BF16)

Flow: check every argument and every selected layer first (nothing is
changed when one is wrong) -> calibrate (static: forward hooks feed C++
observers on the float model) -> quantize each weight with the C++ core and
swap in the quantized module -> report.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import _core, awq, gptq, io, ops, smoothing
from . import compute_dtype as _compute_dtype
from .calibration import calibrate
from .errors import InvalidArgumentError, MonoquantError, UnsupportedError
from .metrics import error_metrics
from .model_files import fill_float_weights, model_from_directory, replace_module
from .modules import QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear, QuantModule
from .observers import resolve_observer_name
from .progress import progress, progress_enabled
from .report import LayerReport, QuantizationReport
from .result import QuantizationResult
from .schemes import LayerScheme
from .selection import LayerChoice, Rules, select_layers

#: Weight SQNR under these figures gives a warning / a critical warning.
SQNR_WARN_DB = 20.0
SQNR_CRITICAL_DB = 10.0
#: Static quantization with fewer calibration samples than this gives a warning.
MIN_CALIBRATION_SAMPLES = 32
#: Batches kept from the calibration data for validate().
KEPT_SAMPLE_BATCHES = 8


# ---------------------------------------------------------------- arguments

METHODS = ("rtn", "gptq", "awq")


def _resolve_method(method, bits, calibration_data) -> str:
    if method is None:
        return "rtn"
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if method != "rtn":
        if bits == 16:
            raise InvalidArgumentError(f"method={method!r} applies to bits=8 and bits=4 (integer weights)")
        if calibration_data is None:
            raise InvalidArgumentError(f"method={method!r} chooses the weights from calibration data: pass "
                                       f"calibration_data=<batches> (what model(...) takes)")
    return method


def _resolve_mode(bits, dynamic, weight_only, static, calibration_data, method: str = "rtn",
                  smoothquant=None) -> str:
    if smoothquant is not None and calibration_data is None:
        raise InvalidArgumentError("smoothquant chooses its factors from activations: pass calibration_data=<batches>")
    if smoothquant is not None and method == "rtn" and (dynamic or weight_only):
        calibration_data = None  # the data go to the smoothing; activations follow the flag
    if method != "rtn" and not static:
        # The data choose the weights; activations follow the flags (default: dynamic 8-bit, weight-only 4-bit).
        calibration_data = None
    if bits not in (4, 7, 8, 16) or isinstance(bits, bool):
        raise InvalidArgumentError(f"bits must be 4, 7, 8 or 16, got {bits!r} (8: int8, 7: int8 codes in [-63, 63] "
                                   f"for int8 activations, 4: int4 packed, 16: float16/bfloat16)")
    flags = {"dynamic": dynamic, "weight_only": weight_only, "static": static}
    on = [k for k, v in flags.items() if v]
    if len(on) > 1:
        raise InvalidArgumentError(f"choose one of dynamic=True, weight_only=True or static=True, got {on}")
    if bits == 16:
        if dynamic or static or calibration_data is not None:
            raise InvalidArgumentError("bits=16 stores float16/bfloat16 weights and runs float activations: it takes "
                                       "no dynamic, static or calibration_data")
        return "weight_only"
    if on == ["static"] or (not on and calibration_data is not None):
        if calibration_data is None:
            raise InvalidArgumentError("static quantization needs calibration_data=<batches> to choose the "
                                       "activation ranges; or pass dynamic=True (activations per token at run time)")
        return "static"
    if calibration_data is not None:
        raise InvalidArgumentError(f"calibration_data is only used by static quantization and by method='gptq'; "
                                   f"drop {on[0]}=True to quantize statically, pass method='gptq', or drop "
                                   f"calibration_data")
    if bits == 7 and on == ["weight_only"]:
        raise InvalidArgumentError("bits=7 is for int8 activations (dynamic=True or calibration_data=...): its "
                                   "narrow codes speed up the W8A8 kernels of CPUs without VNNI; weight-only "
                                   "quantization takes bits=8 or bits=4")
    if on:
        return on[0]
    return "dynamic" if bits in (7, 8) else "weight_only"


def _make_scheme(bits, mode, group_size, scale_method, scheme, dtype, int4_range="full",
                 act_group_size=None) -> LayerScheme:
    if act_group_size is not None:
        if bits not in (7, 8) or mode != "dynamic":
            raise InvalidArgumentError("act_group_size applies to bits=8 (or 7) with dynamic activations (W8A8: weights and "
                                       "activations quantized in groups along K)")
        if not isinstance(act_group_size, int) or isinstance(act_group_size, bool) or act_group_size <= 0 \
                or act_group_size % 8:
            raise InvalidArgumentError(f"act_group_size must be a positive multiple of 8 (32, 64, 128), got "
                                       f"{act_group_size!r}")
    if int4_range not in ("full", "restricted"):
        raise InvalidArgumentError(f"int4_range must be 'full' ([-8, 7], scale absmax / 7.5) or 'restricted' "
                                   f"([-7, 7], absmax / 7), got {int4_range!r}")
    if scheme not in (None, "symmetric", "asymmetric", "sym", "asym"):
        raise InvalidArgumentError(f"scheme must be 'symmetric' or 'asymmetric', got {scheme!r}")
    asym = scheme in ("asymmetric", "asym")
    if scheme is None:
        # Symmetric weights; static activations of W8A8 asymmetric (a zero point per tensor), as torch.ao's
        # default: post-GELU and attention activations are lopsided, and on MiniLM the zero point lifts
        # the embedding cosine from 0.987 to 0.994. The W4A8 kernels take symmetric activations only.
        asym = mode == "static" and bits in (7, 8)
        scheme = "asymmetric" if asym else "symmetric"
    if bits == 16:
        dtype = torch.float16 if dtype is None else dtype
        if dtype not in (torch.float16, torch.bfloat16):
            raise InvalidArgumentError(f"bits=16 takes dtype=torch.float16 or torch.bfloat16, got {dtype}")
        if scale_method not in (None, "absmax"):
            raise InvalidArgumentError("scale_method applies to bits=8 and bits=4 only")
        if asym:
            raise InvalidArgumentError("scheme applies to integer quantization (bits=8 or 4)")
        return LayerScheme(format="float16" if dtype == torch.float16 else "bfloat16")
    if dtype is not None:
        raise InvalidArgumentError("dtype applies to bits=16 only (torch.float16 or torch.bfloat16)")
    if asym and mode == "dynamic":
        raise UnsupportedError("scheme='asymmetric' applies to weight-only quantization (weights with a zero "
                               "point per group / channel) and to static activations (a zero point per tensor); "
                               "dynamic activations are symmetric per token and their kernels take symmetric "
                               "weights. Pass weight_only=True, or scheme='symmetric'")
    if scale_method is None:
        scale_method = "mse" if bits == 4 else "absmax"  # at 4 bits the clipping search lifts accuracy
    if not isinstance(group_size, int) or isinstance(group_size, bool):
        raise InvalidArgumentError(f"group_size must be an integer, got {group_size!r}")
    return LayerScheme(format="int4" if bits == 4 else "int8", mode=mode,
                       group_size=group_size if bits == 4 else (act_group_size or 0), scale_method=scale_method,
                       act_symmetric=not (asym and mode == "static"),
                       weight_symmetric=not (asym and mode == "weight_only"),
                       full_range=int4_range == "full", int8_bits=7 if bits == 7 else 8)


def _sqnr_warnings(layers: List[LayerReport]) -> List[str]:
    """One warning for the layers under SQNR_WARN_DB and one, critical, for those under SQNR_CRITICAL_DB."""
    out = []
    critical = [l for l in layers if l.sqnr_db is not None and l.sqnr_db < SQNR_CRITICAL_DB]
    low = [l for l in layers if l.sqnr_db is not None and SQNR_CRITICAL_DB <= l.sqnr_db < SQNR_WARN_DB]
    for group, text in ((critical, f"CRITICAL: weight SQNR under {SQNR_CRITICAL_DB:.0f} dB, the layer is badly "
                                   f"damaged"),
                        (low, f"weight SQNR under {SQNR_WARN_DB:.0f} dB, accuracy at risk")):
        if group:
            worst = min(group, key=lambda l: l.sqnr_db)
            names = ", ".join(f"{l.name!r} ({l.sqnr_db:.1f} dB)" for l in group[:4])
            more = f" and {len(group) - 4} more" if len(group) > 4 else ""
            int4 = any(l.scheme.startswith("W4") for l in group)
            tips = "skip=[...] for them" + (", a smaller group_size or bits=8" if int4 else ", or bits=16")
            out.append(f"{len(group)} layers with {text}: {names}{more}; worst {worst.name!r}. Consider {tips}")
    return out


def _layer_k(m: nn.Module) -> int:
    w = m.weight
    if type(m).__name__ == "Conv1D":
        return int(w.shape[0])
    return int(w[0].numel())


def _group_suggestion(k: int, g: int, name: str) -> str:
    cands = [d for d in range(8, min(k, g) + 1, 8) if k % d == 0]
    if cands:
        return f"try group_size={max(cands)}, or skip=[{name!r}]"
    return f"no group size (a multiple of 8) divides {k}: skip=[{name!r}]"


# ---------------------------------------------------------------- data

class _KeepFirst:
    """An iterable of batches that remembers the first few it hands out (for validate())."""

    def __init__(self, data, keep: int):
        self.data, self.keep, self.kept = data, keep, []

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        for b in self.data:
            if len(self.kept) < self.keep:
                self.kept.append(b)
            yield b


def _as_batches(data):
    if isinstance(data, (torch.Tensor, Mapping)):
        return [data]
    if not isinstance(data, Iterable):
        raise InvalidArgumentError(f"calibration_data must be an iterable of batches (each a tensor, a tuple of "
                                   f"positional arguments or a dict of keyword arguments), got {type(data).__name__}")
    return data


def _calibrate(model, names: List[str], data, observer, num_samples, show_progress, warns: List[str]):
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
        raise InvalidArgumentError(f"num_calibration_samples must be a positive integer, got {num_samples!r}")
    kept = _KeepFirst(_as_batches(data), KEPT_SAMPLE_BATCHES)
    try:
        resolve_observer_name(observer) if isinstance(observer, str) else None
    except MonoquantError as e:
        raise InvalidArgumentError(f"observer: {e}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # reported below, per layer
            stats = calibrate(model, kept, modules=names, observer=observer, max_samples=num_samples,
                              show_progress=show_progress)
    except MonoquantError:
        raise
    except Exception as e:  # the model refused a batch: wrong shape, dtype or keys
        n = len(kept.kept)
        raise InvalidArgumentError(
            f"calibration batch {max(n - 1, 0)} did not run through the model: {type(e).__name__}: {e}. Each batch "
            f"must be what model(...) takes: a tensor, a tuple of positional arguments or a dict of keyword "
            f"arguments (e.g. a tokenizer's output)") from e
    if stats.samples == 0:
        raise InvalidArgumentError("calibration_data held no batches")
    if stats.samples < MIN_CALIBRATION_SAMPLES:
        warns.append(f"only {stats.samples} calibration samples (fewer than {MIN_CALIBRATION_SAMPLES}): activation "
                     f"ranges may not represent real inputs")
    return stats, kept.kept


# ---------------------------------------------------------------- models

def _quantize_module(name: str, m: nn.Module, scheme: LayerScheme, act: Tuple[float, int]):
    if isinstance(m, nn.Embedding):
        return QuantEmbedding.from_float(m, scheme=scheme, name=name)
    if isinstance(m, nn.Conv1d):
        return QuantConv1d.from_float(m, act_scale=act[0], act_zero_point=act[1], scheme=scheme, name=name)
    if isinstance(m, nn.Conv2d):
        return QuantConv2d.from_float(m, act_scale=act[0], act_zero_point=act[1], scheme=scheme, name=name)
    return QuantLinear.from_float(m, act_scale=act[0], act_zero_point=act[1], scheme=scheme, name=name)


def _tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = (t.data_ptr(), t.numel(), t.dtype) if t.numel() else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def _check_layers(choices: List[LayerChoice], schemes: "_SchemeMap", explicit_group: bool) -> List[LayerChoice]:
    """Errors at once: NaN/Inf weights (named), group sizes that do not divide K."""
    out = []
    for c in choices:
        if not c.quantize:
            out.append(c)
            continue
        w = c.module.weight.detach()
        if not bool(torch.isfinite(w).all()):
            bad = int((~torch.isfinite(w)).reshape(-1).nonzero()[0])
            raise InvalidArgumentError(f"layer {c.name!r} ({type(c.module).__name__}) has a non-finite weight "
                                       f"(NaN or Inf at flat index {bad}); fix the model or skip=[{c.name!r}]")
        layer_scheme = schemes(c.module, c.name)
        if layer_scheme.group_size and not layer_scheme.is_half:
            k = _layer_k(c.module)
            if k % layer_scheme.group_size:
                msg = (f"layer {c.name!r} has K = {k} inputs, not a multiple of group_size {layer_scheme.group_size} "
                       f"(compressed-tensors readers refuse ragged groups)")
                # a recipe layer: an error only where its rule gave the group size (as the checkpoint plan)
                if (c.name in schemes.explicit if c.name in schemes.by_name else explicit_group):
                    raise InvalidArgumentError(f"{msg}; {_group_suggestion(k, layer_scheme.group_size, c.name)}")
                out.append(LayerChoice(c.name, c.module, False, msg))
                continue
        out.append(c)
    return out


def _by_module(model: nn.Module, schemes: "_SchemeMap"):
    """schemes as a function of the module alone (GPTQ and AWQ walk modules)."""
    names = {id(m): n for n, m in model.named_modules()}
    return lambda m: schemes(m, names.get(id(m), ""))


class _SchemeMap:
    """Each layer's scheme: the call's own, or a recipe rule's (by layer name), adjusted for embeddings."""

    def __init__(self, default: LayerScheme, by_name: Optional[Dict[str, LayerScheme]] = None,
                 explicit: Iterable[str] = ()):
        self.default, self.by_name = default, dict(by_name or {})
        self.explicit = set(explicit)  # recipe layers whose rule gave the group size

    def __call__(self, m: nn.Module, name: str) -> LayerScheme:
        return _scheme_for_layer(self.by_name.get(name, self.default), m)


class RecipeRule:
    """One resolved rule of a recipe: the key as given (a name, 're:' pattern, 'type:NAME' or a module class),
    its matcher, the scheme (None: float), and the method when the rule names one."""

    def __init__(self, key, resolved: Dict[str, Any]):
        self.key, self.resolved = key, resolved
        self.rules = Rules([key], "recipe")
        self.scheme = None if resolved["scheme"] is None else LayerScheme.from_dict(resolved["scheme"])
        self.method = resolved["method"] or None


def recipe_key(key) -> str:
    """The JSON form of a recipe key: module classes become 'type:NAME'."""
    if isinstance(key, type):
        return f"type:{key.__name__}"
    if not isinstance(key, str):
        raise InvalidArgumentError(f"recipe keys are module names, 're:' patterns, 'type:NAME' or module classes, "
                                   f"got {key!r}")
    return key


def _recipe_rules(recipe, call_scheme: LayerScheme, method: str) -> List[RecipeRule]:
    """The recipe's rules in order (the first matching a layer gives its scheme), each resolved against the
    call's scheme by the C++ resolver that `monoquant quantize --recipe` uses (pipeline/recipe.hpp)."""
    if recipe is None:
        return []
    if not isinstance(recipe, Mapping):
        raise InvalidArgumentError(f"recipe must map layer names, 're:' patterns or module types to schemes, got "
                                   f"{type(recipe).__name__}")
    out = []
    for key, spec in recipe.items():
        if isinstance(spec, Mapping):
            spec = dict(spec)
        try:
            text = json.dumps(spec)
        except TypeError:
            raise InvalidArgumentError(f"recipe[{key!r}] must be 'float' or a dict of plain settings, got "
                                       f"{spec!r}") from None
        rule = RecipeRule(key, _core.resolve_recipe_rule(recipe_key(key), text, call_scheme.to_dict()))
        if rule.method not in (None, "rtn", method):
            raise InvalidArgumentError(f"recipe[{key!r}] asks for method {rule.method!r}: pass method="
                                       f"{rule.method!r} (with calibration_data) to quantize; a rule can name "
                                       f"'rtn' to keep a layer out of the call's method")
        out.append(rule)
    return out


def recipe_json(rules: Sequence[RecipeRule]) -> str:
    """The canonical form a file records (and `monoquant inspect` shows)."""
    return _core.recipe_to_json([r.resolved for r in rules]) if rules else ""


def _apply_recipe(choices: List[LayerChoice], rules: Sequence[RecipeRule]) \
        -> Tuple[List[LayerChoice], Dict[str, LayerScheme], Dict[str, str], set]:
    """Choices with the recipe applied: the first matching rule decides (over skip rules and the quality
    defaults, as in the checkpoint plan), plus each recipe layer's scheme and method."""
    by_name: Dict[str, LayerScheme] = {}
    methods: Dict[str, str] = {}
    explicit: set = set()
    out = []
    for c in choices:
        hit = next((r for r in rules if r.rules.match(c.name, c.module)), None)
        if hit is None or getattr(c.module, "weight", None) is None:
            out.append(c)
            continue
        if hit.scheme is None:
            out.append(LayerChoice(c.name, c.module, False, f"recipe {recipe_key(hit.key)!r}: float"))
            continue
        by_name[c.name] = hit.scheme
        if hit.resolved["explicit_group_size"]:
            explicit.add(c.name)
        if hit.method is not None:
            methods[c.name] = hit.method
        out.append(LayerChoice(c.name, c.module, True, f"recipe {recipe_key(hit.key)!r}: {hit.scheme.label}",
                               sensitive=not c.quantize))
    return out, by_name, methods, explicit


def _scheme_for_layer(scheme: LayerScheme, m: nn.Module) -> LayerScheme:
    if not scheme.weight_symmetric and isinstance(m, (nn.Embedding, nn.Conv1d, nn.Conv2d)):
        # The zero points' share is subtracted by linear layers only: lookups and convolutions stay symmetric.
        scheme = dataclasses.replace(scheme, weight_symmetric=True)
    if isinstance(m, nn.Embedding) and not scheme.is_half and scheme.mode != "weight_only":
        # Embeddings are looked up, not multiplied: their activations are integers, and 7-bit codes (which
        # only speed up int8 x int8 products) would just cost accuracy, so they take 8 bits.
        return dataclasses.replace(scheme, mode="weight_only", act_symmetric=True,
                                   group_size=scheme.group_size if scheme.format == "int4" else 0, int8_bits=8)
    if isinstance(m, nn.Embedding) and scheme.is_half:
        raise InvalidArgumentError("embeddings are quantized to int8 or int4 only")
    return scheme


def _quantize_model(model: nn.Module, scheme: LayerScheme, bits: int, *, calibration_data, observer, layer_types,
                    skip, include, num_calibration_samples, inplace, show_progress, explicit_group,
                    quality_defaults, config, method="rtn", gptq_options=None,
                    smoothquant=None, recipe_rules=()) -> QuantizationResult:
    warns: List[str] = []
    choices, notes = select_layers(model, bits=bits, layer_types=layer_types, skip=skip, include=include,
                                   quality_defaults=quality_defaults)
    choices, by_name, methods, explicit = _apply_recipe(choices, recipe_rules)
    for r in recipe_rules:
        if not any(r.rules.match(c.name, c.module) for c in choices):
            notes.append(f"recipe rule {recipe_key(r.key)!r} matched no layer")
    schemes = _SchemeMap(scheme, by_name, explicit)
    choices = _check_layers(choices, schemes, explicit_group)
    to_quantize = [c for c in choices if c.quantize]
    for c in to_quantize:
        if c.sensitive:
            warns.append(f"sensitive layer {c.name!r} quantized on request ({c.reason.split('(', 1)[-1].rstrip(')')})")
    if not to_quantize:
        warns.append("no layer was selected for quantization; see result.report for the reasons")
    float_bytes = _tensor_bytes(model.state_dict().values())

    passes = (method == "gptq") + (smoothquant is not None or method == "awq") + (scheme.mode == "static")
    if passes > 1 and to_quantize:
        # Smoothing, static calibration and GPTQ each pass over the data: hold it once.
        calibration_data = gptq.materialize(_as_batches(calibration_data), num_calibration_samples)[0]
    target = None
    smoothing_done = None
    original_weights: Dict[str, torch.Tensor] = {}
    if inplace and method != "rtn" or smoothquant is not None:
        # These change the float layers' weights before the swap: the report compares with the user's.
        original_weights = {c.name: c.module.weight.detach().clone() for c in to_quantize} if inplace else {}
    if (smoothquant is not None or method == "awq") and to_quantize:
        if smoothquant is not None and method == "awq":
            raise InvalidArgumentError("choose one of smoothquant= and method='awq': both scale the input channels")
        target = model if inplace else copy.deepcopy(model)
        batches = calibration_data if isinstance(calibration_data, list) else \
            gptq.materialize(_as_batches(calibration_data), num_calibration_samples)[0]
        try:
            factors = smoothing.smoothquant_factors(smoothquant) if smoothquant is not None else \
                awq.awq_factors(_by_module(target, schemes), model=target, batches=batches)
            names = [c.name for c in to_quantize if smoothquant is not None or methods.get(c.name, method) == "awq"]
            smoothing_done = smoothing.smooth(target, names, batches, factors,
                                              hessian=method == "awq")
        except MonoquantError:
            raise
        except Exception as e:
            raise InvalidArgumentError(f"a calibration batch did not run through the model: {type(e).__name__}: "
                                       f"{e}") from e
        config["smoothquant" if smoothquant is not None else "awq"] = {
            **({"alpha": float(smoothquant)} if smoothquant is not None else {}),
            "folded": sorted(smoothing_done.folded), "in_module": sorted(smoothing_done.inverse),
            "scaled": sorted(smoothing_done.factors)}
    try:
        return _quantize_calibrated(model, target, scheme, schemes, choices, to_quantize, notes, warns, float_bytes,
                                    calibration_data=calibration_data, observer=observer,
                                    num_calibration_samples=num_calibration_samples, inplace=inplace,
                                    show_progress=show_progress, config=config, method=method,
                                    gptq_options=gptq_options, smoothing_done=smoothing_done,
                                    original_weights=original_weights, methods=methods)
    finally:
        if smoothing_done is not None:
            smoothing_done.remove_hooks()


def _quantize_calibrated(model, target, scheme, schemes, choices, to_quantize, notes, warns, float_bytes, *,
                         calibration_data, observer, num_calibration_samples, inplace, show_progress, config, method,
                         gptq_options, smoothing_done, original_weights, methods) -> QuantizationResult:
    act: Dict[str, Tuple[float, int]] = {}
    samples: list = []
    if scheme.mode == "static" and to_quantize:
        names = [c.name for c in to_quantize if not isinstance(c.module, nn.Embedding)]
        stats, samples = _calibrate(model if target is None else target, names, calibration_data, observer,
                                    num_calibration_samples, show_progress, warns)
        for n in names:
            obs = stats[n]["input"]
            if obs.count == 0:
                warns.append(f"calibration data never reached layer {n!r}: it runs dynamic (per-token) instead")
                continue
            s, z = obs.calculate_qparams(8, "symmetric" if scheme.act_symmetric else "asymmetric")
            act[n] = (float(s), 0 if z is None else int(z))
        config["calibration_samples"] = stats.samples

    if target is None:
        target = model if inplace else copy.deepcopy(model)
    smooth_inv = smoothing_done.inverse if smoothing_done is not None else {}
    done: Dict[int, nn.Module] = {}
    gptq_layers = [c for c in to_quantize if methods.get(c.name, method) == "gptq"]
    if method == "gptq" and gptq_layers:
        _run_gptq(target, gptq_layers, schemes, act, calibration_data, num_calibration_samples, gptq_options,
                  show_progress, done, config, warns, smooth_inv)
    target_modules = dict(target.named_modules())
    layers: List[LayerReport] = []
    items = progress(to_quantize, total=len(to_quantize), desc="quantizing") if show_progress else to_quantize
    quantized_names = set()
    for c in items:
        m = target_modules[c.name]
        layer_scheme = schemes(m, c.name)
        if layer_scheme.mode == "static" and c.name not in act:
            layer_scheme = dataclasses.replace(layer_scheme, mode="dynamic", act_symmetric=True)
        if isinstance(m, QuantModule):  # done by GPTQ
            quantized_names.add(c.name)
            continue
        if id(m) not in done:
            q = _quantize_module(c.name, m, layer_scheme, act.get(c.name, (None, 0)))
            if c.name in smooth_inv:
                q.input_smooth = smooth_inv[c.name]
            replace_module(target, m, q)
            done[id(m)] = q
        quantized_names.add(c.name)
    # The report, from the quantized modules themselves (what runs is what is reported).
    qnamed = dict(target.named_modules())
    kernel = ops.kernel_name()
    for c in choices:
        w = c.module.weight if getattr(c.module, "weight", None) is not None else None
        shape = list(w.shape) if w is not None else []
        before = w.numel() * w.element_size() if w is not None else 0
        if c.name in quantized_names:
            q = qnamed[c.name]
            em = error_metrics(original_weights.get(c.name, c.module.weight).detach().float(), q.dequantized_weight())
            layers.append(LayerReport(c.name, type(c.module).__name__, shape, q.scheme.label, True, c.reason, before,
                                      q.weight_nbytes, em.sqnr_db,
                                      "lookup" if isinstance(q, QuantEmbedding) else kernel))
        else:
            layers.append(LayerReport(c.name, type(c.module).__name__, shape, "float", False, c.reason, before, before))
    warns.extend(_sqnr_warnings(layers))
    report = QuantizationReport(layers, float_bytes, _tensor_bytes(target.state_dict().values()), notes)
    for msg in warns:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return QuantizationResult(target, config, report, warns, float_model=None if inplace else model,
                              sample_batches=samples)


def _run_gptq(target: nn.Module, to_quantize: List[LayerChoice], schemes: "_SchemeMap", act, calibration_data,
              num_samples, options, show_progress, done: Dict[int, nn.Module], config, warns: List[str],
              smooth_inv: Dict[str, torch.Tensor]) -> None:
    """GPTQ for the selected linear layers of `target`, in place (gptq.py); the rest stay for round-to-nearest."""
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
        raise InvalidArgumentError(f"num_calibration_samples must be a positive integer, got {num_samples!r}")
    batches, samples = gptq.materialize(_as_batches(calibration_data), num_samples)
    if samples == 0:
        raise InvalidArgumentError("calibration_data held no batches")
    if samples < MIN_CALIBRATION_SAMPLES:
        warns.append(f"only {samples} calibration samples for GPTQ (fewer than {MIN_CALIBRATION_SAMPLES}): the "
                     f"Hessians may not represent real inputs")
    counts: Dict[int, int] = {}
    for c in to_quantize:
        counts[id(c.module)] = counts.get(id(c.module), 0) + 1
    names = [c.name for c in to_quantize
             if isinstance(c.module, nn.Linear) or type(c.module).__name__ == "Conv1D"
             if counts[id(c.module)] == 1]  # a layer shared at several names keeps round-to-nearest

    def swap(name, m, qw, info):
        layer_scheme = schemes(m, name)
        a = act.get(name)
        if layer_scheme.mode == "static" and a is None:
            layer_scheme = dataclasses.replace(layer_scheme, mode="dynamic", act_symmetric=True)
        q = QuantLinear.from_quantized(m, qw, layer_scheme, *(a if a else (None, 0)))
        if name in smooth_inv:
            q.input_smooth = smooth_inv[name]
        replace_module(target, m, q)
        done[id(m)] = q

    try:
        info = gptq.run_gptq(target, names, batches, _by_module(target, schemes), swap,
                             dampening=options["dampening"], act_order=options["act_order"],
                             sequential=options["sequential"], show_progress=show_progress)
    except MonoquantError:
        raise
    except Exception as e:
        raise InvalidArgumentError(
            f"a calibration batch did not run through the model: {type(e).__name__}: {e}. Each batch must be what "
            f"model(...) takes: a tensor, a tuple of positional arguments or a dict of keyword arguments") from e
    unreached = [n for n in names if n not in info]
    if unreached:
        warns.append(f"calibration data never reached {len(unreached)} layers ({', '.join(unreached[:3])}"
                     f"{'...' if len(unreached) > 3 else ''}): they are rounded to nearest")
    config["calibration_samples"] = samples
    config["gptq"]["layers"] = {n: {"error": i["error"], "rtn_error": i["rtn_error"], "tokens": i["tokens"]}
                                for n, i in info.items()}


# ---------------------------------------------------------------- state dicts

def _quantize_state_dict(sd: Dict[str, torch.Tensor], scheme: LayerScheme, bits: int, *, skip, include,
                         quality_defaults, explicit_group, show_progress, config, layer_types=None,
                         model_config=None, recipe=None) -> QuantizationResult:
    """A state dict through the checkpoint pipeline (src/pipeline): the same plan, codes and tensors as
    ``monoquant quantize`` gives for the same settings."""
    if scheme.mode == "static":
        raise InvalidArgumentError("static quantization calibrates activations by running the model: pass the "
                                   "nn.Module (or a directory with a transformers config.json), not a state dict")
    for key, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise InvalidArgumentError(f"state dict entry {key!r} is a {type(t).__name__}, not a tensor")
    rules = {"scheme": scheme.to_dict(), "skip": _names_only(skip, "skip"), "only": [],
             "include": _names_only(include, "include"),
             "overrides": [], "min_params": -1, "quality_defaults": bool(quality_defaults),
             "quantize_embeddings": layer_types is not None and nn.Embedding in tuple(layer_types),
             "explicit_group_size": bool(explicit_group),
             "recipe": None if recipe is None else json.dumps({recipe_key(k): (dict(v) if isinstance(v, Mapping) else v)
                                                               for k, v in recipe.items()})}
    items, _keep = io._items(sd)
    out = _core.quantize_state_dict(items, rules)
    layers: List[LayerReport] = []
    ordered: Dict[str, torch.Tensor] = {}
    records: Dict[str, Dict[str, Any]] = {}
    for e, (key, t) in zip(out["entries"], sd.items()):
        before = t.numel() * t.element_size()
        if not e["quantize"]:
            ordered[key] = t
            if e["role"] in ("linear weight", "conv weight", "embedding", "output head"):
                layers.append(LayerReport(e["module"], "tensor", list(t.shape), "float", False, e["reason"], before,
                                          before))
            continue
        ordered.update(e["tensors"])
        records[e["module"]] = {"type": "Embedding" if e["role"] == "embedding" else "Linear",
                                "scheme": e["scheme"], "shape": [int(t.shape[0]), int(t[0].numel())],
                                "float_dtype": str(t.dtype).split(".")[-1]}
        layers.append(LayerReport(e["module"], "tensor", list(t.shape), e["label"], True, e["reason"], before,
                                  int(e["weight_bytes"]), float(e["sqnr_db"]), ops.kernel_name()))
    warns = list(out["warnings"]) + _sqnr_warnings(layers)
    report = QuantizationReport(layers, _tensor_bytes(sd.values()), _tensor_bytes(ordered.values()),
                                list(out["notes"]))
    for msg in warns:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return QuantizationResult(ordered, config, report, warns, records=records, model_config=model_config)


def _names_only(rules, what: str) -> List[str]:
    if rules is None:
        return []
    rules = [rules] if isinstance(rules, (str, type)) else list(rules)
    for r in rules:
        if not isinstance(r, str):
            raise InvalidArgumentError(f"{what} on a state dict takes tensor/module names or 're:' patterns, "
                                       f"not {r!r} (module types need the nn.Module)")
    return rules


# ---------------------------------------------------------------- the entry point

def quantize(
    model,
    bits: int = 8,
    *,
    dynamic: Optional[bool] = None,
    weight_only: Optional[bool] = None,
    static: Optional[bool] = None,
    calibration_data=None,
    scheme: Optional[str] = None,
    group_size: Optional[int] = None,
    scale_method: Optional[str] = None,
    dtype: Optional[torch.dtype] = None,
    layer_types: Optional[Sequence[type]] = None,
    skip=None,
    include=None,
    observer="histogram",
    num_calibration_samples: Optional[int] = None,
    inplace: bool = False,
    show_progress: Optional[bool] = None,
    quality_defaults: bool = True,
    method: Optional[str] = None,
    act_order: bool = False,
    dampening: float = 0.01,
    sequential: bool = True,
    int4_range: str = "full",
    smoothquant: Optional[float] = None,
    act_group_size: Optional[int] = None,
    recipe: Optional[Mapping] = None,
    compute_dtype: Optional[torch.dtype] = None,
) -> QuantizationResult:
    """Quantize a model, a state dict or a checkpoint path.

    model: an ``nn.Module`` (layers nested anywhere), a state dict (returns a
        quantized state dict in the compressed-tensors layout), or a path (a
        .safetensors file, a .pt archive, or a directory; a directory with a
        transformers ``config.json`` is built into its model first).
    bits: 8 (int8 per output channel), 7 (int8 codes in [-63, 63], scale
        absmax / 63, with int8 activations only: on CPUs without VNNI their
        kernels read the activations straight as unsigned bytes, about 1.2x
        W8A8's whole-model speed for a little accuracy; embeddings stay 8-bit),
        4 (int4 in groups of ``group_size`` along K, packed two per byte) or 16
        (float16, or ``dtype=torch.bfloat16``).
    dynamic / weight_only / static: the activation mode. Default: static
        when ``calibration_data`` is given, else dynamic for 8 and 7 bits and
        weight-only for 4 and 16 bits.
    calibration_data: an iterable of batches (tensors, tuples of positional
        arguments, dicts of keyword arguments such as a tokenizer's output),
        consumed once; ``num_calibration_samples`` caps the samples used and
        ``observer`` picks the range estimator ("histogram", "minmax",
        "moving_average", "percentile", ...).
    scheme: "symmetric" or "asymmetric". Weight-only: asymmetric gives each
        int4 group (int8: each output channel) a zero point, codes in
        [-8, 7] / [-128, 127] dequantized as (q - z) * s (compressed-tensors'
        W4A16_ASYM; linear layers only, embeddings and convolutions stay
        symmetric). Static: the scheme of the activations (a zero point per
        tensor); weights stay symmetric. Dynamic: symmetric only. Default:
        asymmetric activations for static INT8, symmetric everywhere else.
    scale_method: "absmax", "mse" or "hqq" (default: "mse" for 4 bits, "absmax" for 8).
    smoothquant: alpha in (0, 1) (0.5 is SmoothQuant's default): per input
        channel factors s = max|x|^alpha / max|W|^(1 - alpha) from
        ``calibration_data`` move activation outliers into the weights, for
        quantized activations (smoothing.py); folded into a preceding norm
        where the float model provably stays equal, else applied by the module.
    act_group_size: with bits=8, dynamic=True: weights (scale per output
        channel per group) and activations (per token per group) both in
        groups of this many along K, integer dot products per group summed
        in float: llama.cpp's Q8_0 idea (32, 64, 128, ...).
    recipe: per-layer schemes, ``{name | "re:<regex>" | module type: "float" | {"bits", "mode",
        "group_size", "scale_method", "int4_range", "act_group_size"}}``; the first rule that
        matches a layer decides, unnamed settings come from this call, and a layer a rule
        names is quantized even where the quality defaults would keep it. ``method`` (GPTQ,
        AWQ) applies to every quantized layer with its own scheme.
    int4_range: "full" (codes [-8, 7], scale absmax / 7.5: compressed-tensors'
        convention, the default) or "restricted" ([-7, 7], absmax / 7).
    compute_dtype: torch.bfloat16 runs the model's float part (attention, norms, layers
        kept float) in bf16 where the CPU has native bf16 (AVX-512 BF16 / AMX), the
        quantized layers taking and returning bf16 activations; float inputs must then
        be bf16, as after ``model.to(torch.bfloat16)``. Elsewhere a warning, and float32.
    layer_types: module types to quantize (default nn.Linear, nn.Conv1d,
        nn.Conv2d and transformers' Conv1D; add nn.Embedding for embeddings).
    skip / include: module names, ``"re:<regex>"`` patterns or module types;
        ``include`` quantizes layers the quality defaults would keep (output
        heads; for INT4 also embeddings and layers under 512 parameters).
    inplace: modify ``model`` itself (default: a copy; the input is untouched).
    show_progress: None = a progress bar on a terminal, never when CI is set.
    method: "rtn" (round to nearest, the default), "gptq" (weights chosen
        by GPTQ's error feedback from ``calibration_data``) or "awq"
        (activation-aware per-channel scaling searched on ``calibration_data``,
        then round to nearest; awq.py). Linear layers; the activation mode
        still follows dynamic / weight_only / static.
        ``act_order=True`` sweeps the inputs by decreasing energy, groups
        staying contiguous runs of K with scales from the original weight
        (llm-compressor's actorder="weight"; files need no g_idx); ``dampening`` is the fraction of
        mean(diag H) added to the Hessian's diagonal; ``sequential`` calibrates
        each block on the already-quantized blocks before it.
    """
    explicit_group = group_size is not None or act_group_size is not None
    group_size = 128 if group_size is None else group_size
    method = _resolve_method(method, bits, calibration_data)
    mode = _resolve_mode(bits, dynamic, weight_only, static, calibration_data, method, smoothquant)
    if smoothquant is not None and mode == "weight_only":
        raise InvalidArgumentError("smoothquant moves activation outliers into the weights for quantized "
                                   "activations (W8A8, W4A8): use dynamic=True or static quantization")
    if not (isinstance(dampening, (int, float)) and 0 < float(dampening) < float("inf")):
        raise InvalidArgumentError(f"dampening must be a number > 0, got {dampening!r}")
    sch = _make_scheme(bits, mode, group_size, scale_method, scheme, dtype, int4_range, act_group_size)
    recipe_rules = _recipe_rules(recipe, sch, method)
    if show_progress is None:
        show_progress = progress_enabled()
    config: Dict[str, Any] = {"bits": bits, "mode": mode, "scheme": sch.to_dict(), "label": sch.label,
                              "observer": observer if mode == "static" else None, "method": method,
                              "skip": [str(s) for s in (skip or [])] if not isinstance(skip, (str, type)) else [str(skip)],
                              "include": [str(s) for s in (include or [])] if not isinstance(include, (str, type))
                              else [str(include)]}
    if recipe_rules:
        config["recipe"] = json.loads(recipe_json(recipe_rules))
    model_config = None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise InvalidArgumentError(f"{path}: no such file or directory")
        config["source"] = path
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
            model = _model_with_weights(path)
            inplace = True  # the model is ours: no copy (validate() then compares no outputs)
        else:
            model = io.load_state_dict(path)
    kwargs = dict(skip=skip, include=include, quality_defaults=quality_defaults, explicit_group=explicit_group,
                  show_progress=show_progress, config=config)
    if act_order not in (False, True, "weight"):
        raise UnsupportedError(f"act_order={act_order!r}: monoquant runs act_order=True (= 'weight': contiguous "
                               f"groups); 'group' ordering, with a weight_g_idx per input, is not supported")
    if act_order and method != "gptq":
        raise InvalidArgumentError("act_order applies to method='gptq'")
    act_order = bool(act_order)
    if method == "gptq":
        config["gptq"] = {"act_order": bool(act_order), "dampening": float(dampening), "sequential": bool(sequential)}
    compute_dtype = _compute_dtype.resolve(compute_dtype)
    if isinstance(model, nn.Module):
        result = _quantize_model(model, sch, bits, calibration_data=calibration_data, observer=observer,
                                 method=method, gptq_options=config.get("gptq"), smoothquant=smoothquant,
                                 recipe_rules=recipe_rules,
                                 layer_types=layer_types, num_calibration_samples=num_calibration_samples,
                                 inplace=inplace, **kwargs)
        if compute_dtype is not None:
            cast_warns: List[str] = []
            config["compute_dtype"] = _compute_dtype.apply(result.model, compute_dtype, cast_warns,
                                                           result.report.notes) or "float32"
            for msg in cast_warns:
                result.warnings.append(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return result
    if compute_dtype is not None:
        raise InvalidArgumentError("compute_dtype applies to a model that runs (an nn.Module or a model "
                                   "directory), not to a state dict")
    if isinstance(model, Mapping):
        if smoothquant is not None:
            raise InvalidArgumentError("smoothquant runs the model on calibration data: pass the nn.Module")
        if method != "rtn":
            raise InvalidArgumentError(f"method={method!r} runs the model on calibration data: pass the nn.Module "
                                       f"(or a directory with a transformers config.json), not a state dict")
        return _quantize_state_dict(dict(model), sch, bits, model_config=model_config, layer_types=layer_types,
                                    recipe=recipe, **kwargs)
    raise InvalidArgumentError(f"quantize takes an nn.Module, a state dict or a checkpoint path, got "
                               f"{type(model).__name__}")


def _model_with_weights(path: str) -> nn.Module:
    """A transformers model from a directory: built from config.json, weights read by monoquant's reader."""
    model = model_from_directory(path)
    fill_float_weights(model, io.load_state_dict(path), path)
    return model.eval()


__all__ = ["quantize", "SQNR_WARN_DB", "SQNR_CRITICAL_DB", "MIN_CALIBRATION_SAMPLES"]
