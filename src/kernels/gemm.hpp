// The inner loops of the quantized linear layers, one table per instruction
// set (gemm_reference.cpp is the oracle; gemm_avx2.cpp, gemm_avx2_vnni.cpp,
// gemm_avx512_vnni.cpp, gemm_amx.cpp).
// Each entry computes the output columns of packed blocks [nb_begin, nb_end)
// for all rows; linear.cpp owns activation quantization and threading.
//
// Integer entries must produce the same bits as the reference: their int32
// sums are exact, and the float epilogue is the same sequence of roundings:
//   W8A8:  y = fma(float(acc), row_scale * col_scale, bias)
//   W4A8:  f = sum over groups in order of fma(float(acc_g), scale_g, f);
//          y = fma(f, row_scale, bias)
//   W8A8 with activation groups (grouped int8 weights, act_group_size = g):
//          acc = 0; for groups j in order: acc = fma(float(dot_j), sa_j * sw_j, acc);
//          y = acc + (bias or 0)
#pragma once

#include <cstdint>

#include "monoquant/linear.hpp"

namespace monoquant::kernels {

struct FloatGemmArgs {
  const float* x;  // [m, k], row stride ldx
  int64_t m, ldx;
  const PackedLinearWeightView* w;
  const float* bias;  // [n] or nullptr
  float* y;           // [m, n], row stride ldy
  int64_t ldy;
  // From m >= LinearKernels::bf16_min_m: x rounded to bf16, [round_up(m, 16)]
  // rows of round_up(k, 32) elements, zero-padded (rows and columns).
  const uint16_t* xb = nullptr;
  // Non-null (only where LinearKernels::bf16_out_min_m allows): write the
  // result as bf16 here, row stride ldy, instead of y.
  uint16_t* yb = nullptr;
};

struct IntGemmArgs {
  const int8_t* q;  // [m, k_padded] activation codes, padding = zero_point
  int64_t m;
  int32_t zero_point;        // static int8; 0 for dynamic
  const float* row_scales;   // [m]; grouped W8A8: [m, groups], one scale per row and group
  const void* prepared;      // [m, k_padded] in the table's prepared form (see below)
  const int32_t* group_sums; // W4A8: [m, groups], sum of q over each group
  const PackedLinearWeightView* w;
  const float* bias;
  float* y;
  int64_t ldy;
  uint16_t* yb = nullptr;  // as FloatGemmArgs::yb (gemm_i8 only)
  // Dynamic activations: codes in [-127, 127], zero point 0 (static codes may
  // be -128). Tables with LinearKernels::symmetric_reads_codes read q itself
  // then, not the prepared form.
  bool symmetric_codes = false;
};

struct LinearKernels {
  const char* name;
  // Weight-only: float activations x int8 / int4 / f16 / bf16 weights.
  void (*gemm_float)(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end);
  // W8A8: int8 activations x int8 weights.
  void (*gemm_i8)(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);
  // W4A8: int8 activations (symmetric, zero_point 0) x int4 weights.
  void (*gemm_i4)(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);
  // Bytes per activation element of gemm_i8's prepared form (0: none), and
  // the conversion: n codes with zero point -> prepared.
  int prepared_bytes;
  void (*prepare_i8)(const int8_t* q, int64_t n, int32_t zero_point, void* prepared);
  // W8A8 with activation groups: grouped int8 weights (w->group_size = g),
  // activations quantized per row and group (zero_point 0, row_scales
  // [m, groups]), prepared like gemm_i8's.
  void (*gemm_i8g)(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);
  // gemm_i8 reads the prepared form only for m <= prepared_max_m (AMX reads
  // the signed codes themselves from 16 rows on); above it, prepared is null.
  int64_t prepared_max_m = INT64_MAX;
  // Weight-only on bf16 tiles: from this many rows on (0: never), gemm_float
  // reads FloatGemmArgs::xb, which linear_into fills row by row with
  // to_bf16_row(x, k, k_padded, out) (round to nearest even, zeros after k).
  int64_t bf16_min_m = 0;
  void (*to_bf16_row)(const float* x, int64_t k, int64_t k_padded, uint16_t* out) = nullptr;
  // gemm_i8 from this many rows, and gemm_float whenever it reads xb, write
  // bf16 results (yb, rounded to nearest even) themselves. 0: never.
  int64_t bf16_out_min_m = 0;
  // From this many rows (0: never) linear_into gives each thread a range of
  // rows over all column blocks, rather than column blocks over all rows
  // (kernels that stream weight panels past many activation rows). Rows are
  // independent, so the bits do not change.
  int64_t split_rows_from_m = 0;
  // gemm_i8 reads the codes q (no prepared form) when a.symmetric_codes;
  // linear_into then does not prepare dynamic activations.
  bool symmetric_reads_codes = false;
  // gemm_i8g reads the codes q (no prepared form; grouped activations are
  // always symmetric); linear_into then does not prepare them.
  bool grouped_reads_codes = false;
  // Activation quantization read straight from float32 or bf16 rows (nullptr:
  // linear_into widens bf16 rows to float32 and uses the quant table). The
  // same bits as the quant table's absmax_bits and quantize_i8 on the widened
  // span.
  uint32_t (*row_absmax_bits)(const void* x, bool bf16, int64_t n) = nullptr;
  void (*row_quantize_i8)(const void* x, bool bf16, int64_t n, float inv_scale, int32_t zero_point, int32_t qmin,
                          int32_t qmax, int8_t* q) = nullptr;
  // The dynamic rule (zero point 0, [-127, 127]) with inv_scale = 1 / (absmax /
  // 127) of this very span: the same bits without the clamp, which cannot act.
  void (*row_quantize_i8_symmetric)(const void* x, bool bf16, int64_t n, float inv_scale, int8_t* q) = nullptr;
  // LinearOptions::act_smooth for the row entries: out = x * smooth in float32
  // (bf16 rows: each product rounded to bf16; smooth already bf16-rounded),
  // the same values as the portable path's. nullptr: the portable path.
  void (*row_smooth)(const void* x, bool bf16, int64_t n, const float* smooth, float* out) = nullptr;
  // W8A8 (static and dynamic) on weights with narrow codes
  // (PackedLinearWeightView::narrow_codes(): every |w| <= 64, 7-bit weights).
  // Tables without VNNI set it: it reads the activations as u = q + 128
  // (prepare_u8, one byte each, into IntGemmArgs::prepared) and takes
  // vpmaddubsw's u8 x s8 pairs directly, which cannot saturate there
  // (2 * 255 * 64 < 32767); the offset goes with the column sums. nullptr:
  // gemm_i8 for every int8 weight.
  void (*gemm_i8_narrow)(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) = nullptr;
  void (*prepare_u8)(const int8_t* q, int64_t n, int32_t zero_point, void* prepared) = nullptr;
};

const LinearKernels& reference_linear_kernels();
// activation_quant_avx512.cpp: the row entries of the AVX-512 sets.
uint32_t avx512_row_absmax_bits(const void* x, bool bf16, int64_t n);
void avx512_row_quantize_i8(const void* x, bool bf16, int64_t n, float inv_scale, int32_t zero_point, int32_t qmin,
                            int32_t qmax, int8_t* q);
void avx512_row_quantize_i8_symmetric(const void* x, bool bf16, int64_t n, float inv_scale, int8_t* q);
void avx512_row_smooth(const void* x, bool bf16, int64_t n, const float* smooth, float* out);
const LinearKernels& avx2_linear_kernels();
// Only valid where vnni_available(); same as avx2 except gemm_i8 / gemm_i4.
const LinearKernels& avx2_vnni_linear_kernels();
// Only valid where avx512_vnni_available(); 512-bit gemm_i8 / gemm_i8g, the rest
// as avx2_vnni (in the EVEX encoding, so AVX-VNNI is not required).
const LinearKernels& avx512_vnni_linear_kernels();
// Only valid where amx_int8_available(): gemm_i8 on AMX int8 tiles from 16
// rows on, everything else as avx512_vnni.
const LinearKernels& amx_linear_kernels();
// The table linear_into uses now.
const LinearKernels& active_linear_kernels();

}  // namespace monoquant::kernels
