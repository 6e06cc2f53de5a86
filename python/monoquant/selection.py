"""Which layers of a model get quantized, and why the others do not.

``select_layers`` walks ``model.named_modules()`` and returns one decision per
candidate layer: quantize it, or keep it with a reason (the user's ``skip``
rules, a type the kernels cannot take, or a default that protects quality:
output heads always; for INT4 also layers under 512 parameters; norms and
embeddings are not in the default ``layer_types``).

Rules in ``skip`` and ``include``: an exact module name, ``"re:<regex>"``
(``re.match`` against the module name, as compressed-tensors targets do), or
a module type (``nn.LayerNorm``). ``include`` overrides the default skips,
never the user's own ``skip``. Embeddings are quantized only when
``nn.Embedding`` is in ``layer_types``; a layer whose weight is tied to a kept
layer is kept too.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .errors import InvalidArgumentError
from .modules import QuantConv2d, QuantEmbedding, QuantModule

#: Below this many weight parameters a layer is too small to gain from quantization (INT4 default).
MIN_PARAMS = 512

# Names of output heads: their errors land directly on the logits.
_HEAD_NAMES = re.compile(r"(^|\.)(lm_head|output_projection|embed_out)$")
_NORM_NAME = re.compile(r"(norm|^ln_|\.ln_|layernorm)", re.IGNORECASE)


def _conv1d_type():
    try:
        from transformers.pytorch_utils import Conv1D
    except Exception:  # transformers not installed: no GPT-2 layers to find
        return None
    return Conv1D


def default_layer_types() -> Tuple[type, ...]:
    types: Tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
    conv1d = _conv1d_type()
    return types + ((conv1d,) if conv1d is not None else ())


@dataclass
class LayerChoice:
    name: str
    module: nn.Module
    quantize: bool
    reason: str
    sensitive: bool = False  # a layer the defaults would keep, quantized on request


def _is_norm(module: nn.Module, name: str) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.RMSNorm)) or \
        "Norm" in type(module).__name__ or bool(_NORM_NAME.search(name.rsplit(".", 1)[-1]))


class Rules:
    """Compiled ``skip`` / ``include`` rules, each remembering whether it matched anything."""

    def __init__(self, rules: Optional[Iterable], what: str):
        if rules is None:
            rules = []
        if isinstance(rules, (str, type)):
            rules = [rules]
        self.what = what
        self.names: List[str] = []
        self.patterns: List[Tuple[str, "re.Pattern"]] = []
        self.types: List[type] = []
        self.type_names: List[str] = []
        for r in rules:
            if isinstance(r, type):
                self.types.append(r)
            elif isinstance(r, str) and r.startswith("type:"):
                self.type_names.append(r[5:])  # a class name, as a JSON recipe writes types
            elif isinstance(r, str) and r.startswith("re:"):
                try:
                    self.patterns.append((r, re.compile(r[3:])))
                except re.error as e:
                    raise InvalidArgumentError(f"{what} rule {r!r} is not a valid regular expression: {e}") from None
            elif isinstance(r, str):
                self.names.append(r)
            else:
                raise InvalidArgumentError(f"{what} takes module names, 're:' patterns or module types, "
                                           f"got {r!r}")
        self.used_patterns: set = set()

    def match(self, name: str, module: nn.Module) -> Optional[str]:
        if name in self.names:
            return f"named in {self.what}"
        for text, p in self.patterns:
            if p.match(name):
                self.used_patterns.add(text)
                return f"matches {self.what} {text!r}"
        for t in self.types:
            if isinstance(module, t):
                return f"type {t.__name__} in {self.what}"
        for n in self.type_names:
            if any(c.__name__ == n for c in type(module).__mro__):
                return f"type {n} in {self.what}"
        return None

    def check_names(self, all_names: Sequence[str]) -> None:
        known = set(all_names)
        for n in self.names:
            if n not in known:
                close = difflib.get_close_matches(n, all_names, n=3) or [k for k in all_names if k.endswith(n)][:3]
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
                    "; names are as in model.named_modules(), or use 're:<regex>'"
                raise InvalidArgumentError(f"{self.what}: the model has no module named {n!r}{hint}")

    def unused_patterns(self) -> List[str]:
        return [t for t, _ in self.patterns if t not in self.used_patterns]


def _output_head_names(model: nn.Module) -> Dict[str, str]:
    """Output heads: named like lm_head, the model's declared output embeddings, or a Linear sharing its
    weight with an input embedding."""
    heads: Dict[str, str] = {}
    out_emb = None
    get = getattr(model, "get_output_embeddings", None)
    if callable(get):
        try:
            out_emb = get()
        except Exception:
            out_emb = None
    emb_weights = {id(m.weight): n for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    for name, m in model.named_modules():
        if not name:
            continue
        if _HEAD_NAMES.search(name):
            heads[name] = "output head (lm_head)"
        elif out_emb is not None and m is out_emb:
            heads[name] = "output head (the model's output embeddings)"
        w = getattr(m, "weight", None)
        if not isinstance(m, nn.Embedding) and w is not None and id(w) in emb_weights:
            heads[name] = f"output head tied to the input embedding {emb_weights[id(w)]!r}"
    return heads


def _keep_ties(choices: List[LayerChoice]) -> None:
    """A layer whose weight is shared with a kept layer (an input embedding tied to a kept lm_head) is kept
    too: quantizing one side would untie them."""
    kept_weights = {id(c.module.weight): c.name for c in choices
                    if not c.quantize and isinstance(getattr(c.module, "weight", None), torch.Tensor)}
    for i, c in enumerate(choices):
        w = getattr(c.module, "weight", None)
        if c.quantize and isinstance(w, torch.Tensor) and id(w) in kept_weights:
            choices[i] = LayerChoice(c.name, c.module, False, f"weight tied to {kept_weights[id(w)]!r}, which is kept")


def select_layers(model: nn.Module, *, bits: int, layer_types: Optional[Sequence[type]], skip, include,
                  quality_defaults: bool) -> Tuple[List[LayerChoice], List[str]]:
    """One LayerChoice per candidate module (layer_types, plus embeddings, norms and already-quantized
    modules, which are reported as kept), and notes about rules that matched nothing."""
    types = tuple(layer_types) if layer_types is not None else default_layer_types()
    for t in types:
        if not isinstance(t, type) or not issubclass(t, nn.Module):
            raise InvalidArgumentError(f"layer_types takes nn.Module subclasses, got {t!r}")
    skip_rules = Rules(skip, "skip")
    include_rules = Rules(include, "include")
    named = list(model.named_modules())
    all_names = [n for n, _ in named]
    skip_rules.check_names(all_names)
    include_rules.check_names(all_names)
    heads = _output_head_names(model)
    conv1d = _conv1d_type()
    choices: List[LayerChoice] = []
    for name, m in named:
        if not name:
            if isinstance(m, types):  # the model is itself one layer
                pass
            else:
                continue
        if isinstance(m, QuantModule):
            choices.append(LayerChoice(name, m, False, "already quantized"))
            continue
        wanted = isinstance(m, types)
        is_emb = isinstance(m, nn.Embedding)
        if not wanted:
            if is_emb or (_is_norm(m, name) and getattr(m, "weight", None) is not None):
                kind = "embedding" if is_emb else "norm"
                why = "not in layer_types" + ("" if is_emb else " (norms stay in float)")
                choices.append(LayerChoice(name, m, False, f"{kind}: {why}"))
            continue
        user_skip = skip_rules.match(name, m)
        if user_skip:
            choices.append(LayerChoice(name, m, False, user_skip))
            continue
        # What the kernels cannot take.
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            reason = QuantConv2d.unsupported_reason(m)
            if reason:
                choices.append(LayerChoice(name, m, False, f"unsupported: {reason}"))
                continue
        elif is_emb:
            reason = QuantEmbedding.unsupported_reason(m)
            if reason:
                choices.append(LayerChoice(name, m, False, f"unsupported: {reason}"))
                continue
        elif not isinstance(m, nn.Linear) and not (conv1d is not None and isinstance(m, conv1d)):
            choices.append(LayerChoice(name, m, False, f"unsupported: no quantized module for {type(m).__name__}"))
            continue
        if isinstance(m, nn.Conv3d) or isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
            choices.append(LayerChoice(name, m, False, f"unsupported: {type(m).__name__}"))
            continue
        w = getattr(m, "weight", None)
        if w is None or not w.is_floating_point():
            choices.append(LayerChoice(name, m, False, "no floating-point weight"))
            continue
        # Defaults that protect quality.
        default_reason = None
        if quality_defaults:
            if name in heads:
                default_reason = heads[name]
            elif bits == 4 and w.numel() < MIN_PARAMS:
                default_reason = f"{w.numel()} parameters (< {MIN_PARAMS}: too small to gain)"
        if default_reason:
            if include_rules.match(name, m):
                choices.append(LayerChoice(name, m, True, f"quantized on request ({default_reason})", sensitive=True))
            else:
                choices.append(LayerChoice(name, m, False, default_reason + "; pass include=[...] to quantize it"))
            continue
        choices.append(LayerChoice(name, m, True, f"{type(m).__name__} in layer_types"))
    _keep_ties(choices)
    notes = [f"skip rule {p!r} matched no module" for p in skip_rules.unused_patterns()]
    notes += [f"include rule {p!r} matched no module" for p in include_rules.unused_patterns()]
    return choices, notes


__all__ = ["select_layers", "LayerChoice", "default_layer_types", "MIN_PARAMS", "Rules"]
