"""What a quantization did, layer by layer: the figures of
``QuantizationResult.report``.

Bytes are real bytes: a layer's "before" is its float weight
(numel x element size), its "after" the codes plus the scales in the dtype
the file stores them in. The totals cover the whole state dict (every
parameter and buffer, kept layers included), so ``compression_ratio`` is
what a saved file shrinks by.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional


#: weights below which a quantized layer is "too small to gain" (diagnostics): a 128 x 128 layer
SMALL_LAYER_PARAMS = 16384


@dataclass
class LayerReport:
    name: str
    type: str
    shape: List[int]
    scheme: str                  # "W8A8-dynamic", "W4A16-g128", "FP16", or "float" when kept
    quantized: bool
    reason: str
    bytes_before: int
    bytes_after: int
    sqnr_db: Optional[float] = None   # weight SQNR, quantized layers only
    kernel: str = ""                  # the linear kernel set the layer runs on

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        if d["sqnr_db"] is not None and math.isinf(d["sqnr_db"]):
            d["sqnr_db"] = "inf"
        return d


@dataclass
class QuantizationReport:
    layers: List[LayerReport] = field(default_factory=list)
    total_bytes_before: int = 0
    total_bytes_after: int = 0
    notes: List[str] = field(default_factory=list)

    @property
    def quantized(self) -> List[LayerReport]:
        return [layer for layer in self.layers if layer.quantized]

    @property
    def skipped(self) -> List[LayerReport]:
        return [layer for layer in self.layers if not layer.quantized]

    @property
    def compression_ratio(self) -> float:
        return self.total_bytes_before / self.total_bytes_after if self.total_bytes_after else float("nan")

    def totals(self) -> Dict[str, Any]:
        q = self.quantized
        sq = [layer.sqnr_db for layer in q if layer.sqnr_db is not None and not math.isinf(layer.sqnr_db)]
        wb = sum(layer.bytes_before for layer in q)
        wa = sum(layer.bytes_after for layer in q)
        params = sum(math.prod(layer.shape) for layer in q)
        return {
            "layers_quantized": len(q),
            "layers_kept": len(self.skipped),
            "bytes_before": self.total_bytes_before,
            "bytes_after": self.total_bytes_after,
            "compression_ratio": self.compression_ratio,
            "quantized_weight_bytes_before": wb,
            "quantized_weight_bytes_after": wa,
            "bits_per_weight": 8.0 * wa / params if params else None,
            "min_sqnr_db": min(sq) if sq else None,
            "mean_sqnr_db": sum(sq) / len(sq) if sq else None,
        }

    def diagnostics(self) -> List[str]:
        """Why the quantized model may not be faster: the kernel set the layers run on and why it was chosen,
        layers too small to gain, activation-quantized layers on a CPU without VNNI, and weight-only layers
        (which lose to fp32 at many rows in this version)."""
        q = self.quantized
        if not q:
            return []
        from . import _core  # the extension, at call time: the report itself is plain data
        kernels = sorted({layer.kernel for layer in q if layer.kernel})
        out = [f"linear kernels: {', '.join(kernels) or '?'} ({_core.linear_kernel_reason()})"]
        small = [layer for layer in q if math.prod(layer.shape) < SMALL_LAYER_PARAMS]
        if small:
            out.append(f"{len(small)} layers have fewer than {SMALL_LAYER_PARAMS} weights (e.g. {small[0].name!r}, "
                       f"{'x'.join(map(str, small[0].shape))}): too small to gain, the call and activation "
                       f"quantization cost about what the multiply saves")
        act = [layer for layer in q if "A8" in layer.scheme]
        if act and any(layer.kernel in ("avx2", "scalar") for layer in act):
            out.append(f"{len(act)} layers quantize activations (W8A8 / W4A8) but this CPU runs them without VNNI "
                       f"(int8 dot products through vpmaddubsw / vpmaddwd): smaller gains than on VNNI CPUs")
            w8 = [layer for layer in act if layer.scheme.startswith("W8A8") and "-g" not in layer.scheme]
            if w8 and any(layer.kernel == "avx2" for layer in w8):
                out.append(f"{len(w8)} W8A8 layers: bits=7 (7-bit weights, W7A8) lets the avx2 kernels read the "
                           f"activations as unsigned bytes, about 1.3x faster per layer, at some accuracy (MiniLM "
                           f"embedding cosine 0.9973 -> 0.9963)")
        wo = [layer for layer in q if "A16" in layer.scheme or layer.scheme in ("FP16", "BF16")]
        bf16_from = _core.bf16_weight_only_min_rows()
        if wo and bf16_from:
            hw = "AMX-BF16 tiles" if "amx" in kernels else "AVX-512 BF16 (vdpbf16ps)"
            out.append(f"{len(wo)} layers are weight-only: from {bf16_from} rows (batch x sequence) they run on {hw} "
                       f"with activations rounded to bf16 (MONOQUANT_BF16_WEIGHT_ONLY=0 keeps float32)")
        elif wo:
            out.append(f"{len(wo)} layers are weight-only: they save memory and win at few rows (batch x sequence "
                       f"under about 32); at more rows they can be slower than fp32 on this CPU (no AMX-BF16 or "
                       f"AVX-512 BF16)")
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {"layers": [layer.to_dict() for layer in self.layers], "totals": self.totals(),
                "notes": list(self.notes), "diagnostics": self.diagnostics()}

    def __str__(self) -> str:
        rows = [("layer", "type", "shape", "scheme", "before", "after", "SQNR dB", "note")]
        for layer in self.layers:
            sq = "" if layer.sqnr_db is None else ("inf" if math.isinf(layer.sqnr_db) else f"{layer.sqnr_db:.1f}")
            rows.append((layer.name or "<model>", layer.type, "x".join(str(s) for s in layer.shape), layer.scheme,
                         _size(layer.bytes_before), _size(layer.bytes_after), sq,
                         "" if layer.quantized and not layer.reason.startswith("quantized on request")
                         else layer.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + ("  " + r[-1] if r[-1] else "")
                 for r in rows]
        t = self.totals()
        lines.append("")
        sqnr = "" if t["min_sqnr_db"] is None else \
            f"; weight SQNR min {t['min_sqnr_db']:.1f} dB, mean {t['mean_sqnr_db']:.1f} dB"
        bpw = "" if t["bits_per_weight"] is None else f", {t['bits_per_weight']:.2f} bits per quantized weight"
        lines.append(f"{t['layers_quantized']} layers quantized, {t['layers_kept']} kept; "
                     f"{_size(t['bytes_before'])} -> {_size(t['bytes_after'])} "
                     f"({t['compression_ratio']:.2f}x){bpw}{sqnr}")
        lines.extend(f"note: {n}" for n in self.notes)
        lines.extend(f"speed: {d}" for d in self.diagnostics())
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


__all__ = ["LayerReport", "QuantizationReport"]
