"""The tolerance the linear kernel set in use states for float-activation (weight-only) layers:
float32 summation-order differences, except on bf16 hardware (AMX-BF16 tiles on the amx set,
vdpbf16ps on the avx512_vnni set where the CPU has AVX-512 BF16; from
_core.bf16_weight_only_min_rows() rows), where the activations (and int4 / float16 weights) are
rounded to bf16 (docs/ARCHITECTURE.md, "Exactness and tolerances")."""

from monoquant import _core


def bf16_tiles(rows: int) -> bool:
    from_rows = _core.bf16_weight_only_min_rows()
    return from_rows > 0 and rows >= from_rows


def weight_only_rtol(rows: int) -> float:
    return 2.0 ** -7 if bf16_tiles(rows) else 2e-5
