"""One description of how a layer is quantized, from which the kernel mode,
the file format and the report's label all follow.

    LayerScheme(format="int8", mode="dynamic")                 W8A8 (per-token activations)
    LayerScheme(format="int8", mode="static")                  W8A8, calibrated activations
    LayerScheme(format="int8", mode="dynamic", int8_bits=7)    W7A8 (int8 codes in [-63, 63])
    LayerScheme(format="int4", mode="weight_only", group_size=128)   W4A16
    LayerScheme(format="int4", mode="dynamic", group_size=128)       W4A8
    LayerScheme(format="float16", mode="weight_only")          FP16 weights

Weights are symmetric by default (int8 [-127, 127] per output channel; int4
per group along K in [-8, 7] with scale absmax / 7.5, compressed-tensors'
convention, or [-7, 7] with absmax / 7 when ``full_range`` is False).
``weight_symmetric=False`` gives weight-only int4 groups (or int8 channels) a
zero point each, codes in [-8, 7] / [-128, 127], dequantized as (q - z) s: the
kernels run the codes and the layer subtracts the zero points' share
(modules.QuantLinear). ``act_symmetric`` is the scheme of static activations
(a zero point when False).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

from .errors import InvalidArgumentError, UnsupportedError

FORMATS = ("int8", "int4", "float16", "bfloat16")
MODES = ("weight_only", "dynamic", "static")
SCALE_METHODS = ("absmax", "mse", "hqq")


@dataclass(frozen=True)
class LayerScheme:
    format: str
    mode: str = "weight_only"
    group_size: int = 0          # int4; int8 dynamic with activation groups: elements of K per scale
    scale_method: str = "absmax"
    act_symmetric: bool = True   # static activations only
    #: int4 weights in compressed-tensors' full range [-8, 7], scale absmax / 7.5 (False: [-7, 7], absmax / 7)
    full_range: bool = True
    #: False: weight-only int4 groups / int8 channels with a zero point each (compressed-tensors' W4A16_ASYM)
    weight_symmetric: bool = True
    #: int8 weights: 8, or 7 (codes in [-63, 63], W7A8: int8 activations only; the narrow-code kernels of
    #: CPUs without VNNI read the activations straight as unsigned bytes)
    int8_bits: int = 8

    def __post_init__(self):
        if self.format not in FORMATS:
            raise InvalidArgumentError(f"unknown weight format {self.format!r}; expected one of {FORMATS}")
        if self.mode not in MODES:
            raise InvalidArgumentError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        if self.scale_method not in SCALE_METHODS:
            raise InvalidArgumentError(f"scale_method must be 'absmax', 'mse' or 'hqq', got {self.scale_method!r}")
        if self.is_half and self.mode != "weight_only":
            raise InvalidArgumentError(f"{self.format} weights run with float activations only (weight_only), "
                                       f"not {self.mode!r}")
        if self.format == "int8" and self.group_size:
            if self.mode != "dynamic":
                raise UnsupportedError("int8 weights in groups run with activation groups, which are dynamic (per "
                                       "token): use dynamic mode, or group_size 0 (one scale per output channel)")
            if self.group_size < 0 or self.group_size % 8:
                raise InvalidArgumentError(f"act_group_size must be a positive multiple of 8 (32, 64, 128), got "
                                           f"{self.group_size}")
        if self.format == "int4" and (self.group_size <= 0 or self.group_size % 8):
            raise InvalidArgumentError(f"int4 group_size must be a positive multiple of 8 (32, 64, 128, ...), "
                                       f"got {self.group_size}")
        if self.format == "int4" and self.mode == "static" and not self.act_symmetric:
            raise UnsupportedError("static activations with int4 weights must be symmetric: the W4A8 kernels take "
                                   "no activation zero point; use scheme='symmetric' or bits=8")
        if self.int8_bits not in (7, 8) or isinstance(self.int8_bits, bool):
            raise InvalidArgumentError(f"int8_bits must be 8 or 7, got {self.int8_bits!r}")
        if self.int8_bits == 7 and (self.format != "int8" or self.mode == "weight_only"):
            raise InvalidArgumentError("7-bit weights are int8 weights with int8 activations (dynamic or static "
                                       f"W7A8), not {self.format} {self.mode}")
        if not self.weight_symmetric:
            if self.format not in ("int8", "int4"):
                raise InvalidArgumentError(f"asymmetric weights are integer weights (int8 or int4), not "
                                           f"{self.format}")
            if self.mode != "weight_only":
                raise UnsupportedError(f"asymmetric weights run weight-only (W4A16 / W8A16): the int8-activation "
                                       f"kernels take no weight zero point; {self.mode} activations need "
                                       f"symmetric weights")

    @property
    def bits(self) -> int:
        return {"int8": self.int8_bits, "int4": 4}.get(self.format, 16)

    @property
    def is_half(self) -> bool:
        return self.format in ("float16", "bfloat16")

    @property
    def quantizes_activations(self) -> bool:
        return self.mode in ("dynamic", "static")

    @property
    def label(self) -> str:
        """W8A8-dynamic, W4A16-g128, FP16, ..."""
        if self.is_half:
            return "FP16" if self.format == "float16" else "BF16"
        act = "A8" if self.quantizes_activations else "A16"
        name = f"W{self.bits}{act}"
        if self.mode != "weight_only":
            name += "-" + self.mode
        if self.group_size:
            name += f"-g{self.group_size}"
        if not self.weight_symmetric:
            name += "-asym"
        return name

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LayerScheme":
        return cls(**{k: d[k] for k in ("format", "mode", "group_size", "scale_method", "act_symmetric",
                                        "full_range", "weight_symmetric", "int8_bits") if k in d})


__all__ = ["LayerScheme", "FORMATS", "MODES", "SCALE_METHODS"]
