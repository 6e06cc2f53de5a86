// Quantized linear layers on the CPU: y = x W^T + b with W stored as int8
// (per output channel, or group-wise along K), int4 (group-wise along K),
// float16 or bfloat16.
//
// Weights are packed once (pack_linear_*) into the layout the kernels read;
// every call then streams that layout. Modes:
//   weight_only   float activations; weights are dequantized in registers.
//   dynamic_int8  activations quantized per row (token) to int8 on the fly,
//                 symmetric [-127, 127]; int32 accumulation (W8A8, W4A8).
//                 With LinearOptions::act_group_size = g > 0 (grouped int8
//                 weights of the same g only): activations quantized per row
//                 AND per group of g inputs, one int32 dot product per group
//                 (W8A8 with activation groups, ggml's q8_0 x q8_0).
//   static_int8   activations quantized with one calibrated scale and zero
//                 point (int8 codes in [-128, 127]); int8 weights (W8A8), or
//                 int4 weights with zero point 0 (W4A8).
//
// Packed layout (docs/ARCHITECTURE.md, "Quantized linear kernels"):
// output channels in blocks of 8 (the last block zero-padded), and inside a
// block K in chunks:
//   int8      [N/8][K/4][8 columns][4 k]       one int8 per weight
//   f16/bf16  [N/8][K/4][8 columns][4 k]       one uint16 per weight
//   int4      [N/8][K/8][8 columns][4 bytes]   byte j of a column holds k = 8c+j
//             in the low nibble and k = 8c+4+j in the high one, nibble = q + 8
// A 32-byte row of an int8 block is 8 columns x 4 consecutive k: exactly the
// operand of vpdpbusd / (vpmaddubsw + vpmaddwd), and after a nibble split the
// int4 chunk becomes two such rows. Padding is zero weight (int4: nibble 8).
// Grouped int8 (group_size g > 0, K a multiple of g) has the same codes
// layout; its scales and column sums are [N/8][K/g][8] (like int4's scales).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "monoquant/tensor.hpp"

namespace monoquant {

enum class WeightFormat : uint8_t { int8, int4, f16, bf16 };
enum class LinearMode : uint8_t { weight_only, dynamic_int8, static_int8 };

std::string_view name_of(WeightFormat format);
std::string_view name_of(LinearMode mode);
WeightFormat parse_weight_format(std::string_view name);  // "int8", "int4", "float16", "bfloat16"
LinearMode parse_linear_mode(std::string_view name);      // "weight_only", "dynamic", "static"

inline constexpr int64_t kLinearBlockN = 8;
inline constexpr int32_t kNarrowCodeMax = 64;

// Borrowed packed weights (a PackedLinearWeight, or torch tensors holding the
// same bytes). Sizes follow from format, n, k and group_size.
struct PackedLinearWeightView {
  WeightFormat format = WeightFormat::int8;
  int64_t n = 0;           // out_features
  int64_t k = 0;           // in_features
  // int4: the group size (> 0). int8: 0 = one scale per output channel;
  // g > 0 = grouped int8 (a positive multiple of 8 dividing K). Half: unused.
  int64_t group_size = 0;
  const void* data = nullptr;
  // int8: [n_blocks * 8]; grouped int8 and int4: [n_blocks][groups][8];
  // half: unused.
  const float* scales = nullptr;
  // int8 only: [n_blocks * 8] (grouped: [n_blocks][groups][8]), the sum over
  // k (of the group) of each column's codes (zero-point and unsigned-offset
  // compensation), then one more entry: the largest |code| of the weight
  // (code_abs_max, set by pack_linear_int8*; it picks the narrow-code kernels).
  const int32_t* sums = nullptr;

  int64_t n_blocks() const { return (n + kLinearBlockN - 1) / kLinearBlockN; }
  int64_t k_chunk() const { return format == WeightFormat::int4 ? 8 : 4; }
  int64_t k_padded() const { return (k + k_chunk() - 1) / k_chunk() * k_chunk(); }
  bool grouped_int8() const { return format == WeightFormat::int8 && group_size > 0; }
  int64_t groups() const {
    return format == WeightFormat::int4 || grouped_int8() ? (k + group_size - 1) / group_size : 1;
  }
  // int8: the largest |code| (0 to 128), the last entry of sums.
  int32_t code_abs_max() const;
  // int8 per output channel with every |code| <= kNarrowCodeMax (7-bit
  // weights): vpmaddubsw can then take the activations as unsigned bytes
  // (u = q + 128) without saturating, 2 * 255 * 64 = 32640 < 32767.
  bool narrow_codes() const;
  // Byte sizes of the three arrays.
  std::size_t data_bytes() const;
  std::size_t scales_count() const;
  std::size_t sums_count() const;
  // Throws invalid_argument when the view cannot be a packed weight.
  void validate() const;
};

struct PackedLinearWeight {
  WeightFormat format = WeightFormat::int8;
  int64_t n = 0, k = 0, group_size = 0;
  Tensor data;    // u8, data_bytes()
  Tensor scales;  // f32, scales_count()
  Tensor sums;    // i32, sums_count()
  PackedLinearWeightView view() const;
};

// codes: int8 [N, K] (any strides, full range [-128, 127]); scales: float32
// [N] or [N, 1], finite and >= 0.
PackedLinearWeight pack_linear_int8(const TensorView& codes, const TensorView& scales);
// Grouped int8: codes int8 [N, K] (any strides, full range); scales float32
// [N, K/group_size], finite and >= 0; group_size a positive multiple of 8
// (32, 64, 128, ...) that divides K. Format int8 with group_size > 0; runs
// only in dynamic mode with act_group_size = group_size.
PackedLinearWeight pack_linear_int8_grouped(const TensorView& codes, const TensorView& scales, int64_t group_size);
// packed: uint8 (or int4_packed) [N, ceil(K/2)] in the library's int4 layout
// (low nibble first, nibble = q + 8); scales: float32 [N, ceil(K/group)];
// group_size a positive multiple of 8. A last group shorter than group_size
// is fine.
PackedLinearWeight pack_linear_int4(const TensorView& packed, int64_t k, const TensorView& scales,
                                    int64_t group_size);
// weight: float16 or bfloat16 [N, K] (any strides).
PackedLinearWeight pack_linear_half(const TensorView& weight);

// The inverse of pack_linear_*: the codes and scales a packed weight was
// built from, bit for bit, so that a quantized layer can be saved without
// keeping a second copy of its codes.
//   int8      codes int8 [N, K], scales float32 [N, 1]
//   int8, g   codes int8 [N, K], scales float32 [N, K/g]   (grouped)
//   int4      codes uint8 [N, ceil(K/2)] (low nibble first, nibble = q + 8,
//             an odd K's last high nibble 0), scales float32 [N, ceil(K/g)]
//   f16/bf16  codes float16/bfloat16 [N, K], scales empty
struct UnpackedLinearWeight {
  Tensor codes;
  Tensor scales;
};
UnpackedLinearWeight unpack_linear(const PackedLinearWeightView& w);

struct LinearOptions {
  LinearMode mode = LinearMode::weight_only;
  float act_scale = 0.0f;       // static_int8 only; finite, > 0
  int32_t act_zero_point = 0;   // static_int8 only; in [-128, 127]
  // 0: activations quantized per row (as above). g > 0: per row and per group
  // of g inputs; needs mode dynamic_int8 and grouped int8 weights with
  // group_size g (and grouped int8 weights need it): invalid_argument
  // otherwise. Each group j of row m gets the per-row rule on its own span:
  //   sa[m][j] = absmax(x[m, jg .. jg+g)) / 127,
  //   q = clamp(nearbyint(x * (1 / sa)), -127, 127)   (0 where sa = 0),
  // and every kernel set computes, bit for bit, per output (m, n):
  //   acc = 0.0f
  //   for j = 0, 1, ..., K/g - 1:  acc = fma(float(dot_j), sa[m][j] * sw[n][j], acc)
  //   y = acc + (bias ? bias[n] : 0.0f)
  // with dot_j = sum over the group of q * w (exact int32) and
  // sa[m][j] * sw[n][j] one float multiply. A group holding NaN or Inf has
  // sa = NaN, which makes the whole output row NaN.
  int64_t act_group_size = 0;
  // int8-activation modes (dynamic and static): K factors (SmoothQuant's 1 / s)
  // that every row of x is multiplied by before it is quantized, one float32
  // multiply per element, as x * smooth in torch; for bf16 rows the factors and
  // each product are rounded to bf16 first, as x * smooth.to(torch.bfloat16).
  // nullptr: none. Weight-only calls refuse it.
  const float* act_smooth = nullptr;
};

// x: float32 [M, K] with unit stride along K and row stride ldx >= K;
// bias: nullptr or float32 [N]; y: float32 [M, N] with row stride ldy >= N.
// Rows of x holding NaN or Inf give NaN rows in the quantized-activation modes.
void linear_into(const float* x, int64_t m, int64_t ldx, const PackedLinearWeightView& w, const float* bias,
                 const LinearOptions& options, float* y, int64_t ldy);

// The same with bfloat16 activations in or out (the float part of a model
// running in bf16): x_dtype and y_dtype are f32 or bf16, strides in elements.
// A bf16 input is widened exactly; the float32 result is rounded to nearest
// even (NaN stays NaN). The arithmetic in between is linear_into's.
void linear_into(const void* x, DType x_dtype, int64_t m, int64_t ldx, const PackedLinearWeightView& w,
                 const float* bias, const LinearOptions& options, void* y, DType y_dtype, int64_t ldy);

// x: float32 [..., K], last dimension contiguous, leading ones collapsible to
// rows; bias: nullptr or float32 [N]. Returns float32 [..., N].
Tensor linear(const TensorView& x, const PackedLinearWeightView& w, const float* bias, const LinearOptions& options);

// Conv2d through the same GEMM (im2col per image). x: float32 [B, C, H, W];
// w packed from the weight reshaped to [O, C*kh*kw]; returns [B, O, Ho, Wo].
struct Conv2dGeometry {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
};
Tensor conv2d(const TensorView& x, const PackedLinearWeightView& w, const float* bias, const Conv2dGeometry& geometry,
              const LinearOptions& options);

// Which kernel set linear_into uses: "scalar", "avx2", "avx2_vnni",
// "avx512_vnni" or "amx". It follows active_isa() (scalar/avx2); on CPUs with AVX-VNNI
// the avx2 set upgrades its integer kernels to 256-bit vpdpbusd, and with
// AVX-512 VNNI (+BW, VL) the W8A8 kernel to 512-bit vpdpbusd and the
// float-activation (weight-only) kernels to 512-bit ones, unless disabled
// here or by MONOQUANT_VNNI=0 (both upgrades) / MONOQUANT_AVX512=0. The plain
// avx2 set is a complete fast path on its own.
std::string_view linear_kernel_name();
// Why that set: the instructions it runs on, and what a faster set would need
// that this CPU (or MONOQUANT_ISA / MONOQUANT_VNNI / MONOQUANT_AVX512) rules out.
std::string linear_kernel_reason();
bool vnni_available();
void set_vnni_enabled(bool enabled);
bool avx512_vnni_available();
void set_avx512_enabled(bool enabled);
// AMX-TILE + AMX-INT8 on top of avx512_vnni_available(), and the OS granted
// the tile state. The "amx" set runs W8A8 (gemm_i8) on tiles from 16 rows.
// MONOQUANT_AMX=0 or set_amx_enabled(false) turns it off.
bool amx_int8_available();
void set_amx_enabled(bool enabled);
// AMX-BF16 and AVX-512 BF16 as well: the "amx" set then also runs weight-only
// layers from 8 rows on bf16 tiles, the activations rounded to bf16 (results
// within the bf16 tolerance of the float32 reference, not bit-exact).
// MONOQUANT_AMX_BF16=0 or set_bf16_weight_only_enabled(false) keeps those
// layers on the float32 AVX-512 kernels (results within 2e-5 of float32).
bool amx_bf16_available();
void set_bf16_weight_only_enabled(bool enabled);
// The fewest rows from which the kernel set in use runs weight-only layers on
// bf16 tiles (the tolerance tests switch on it); 0: it never does.
int64_t bf16_weight_only_min_rows();

// The registry of linear kernel sets: every set this CPU (and process) can
// run, the scalar reference first, the default choice last. Kernel tests and
// benches iterate over it, so a new set is tested wherever it can run.
std::vector<std::string> available_linear_kernel_sets();
// Pins linear_into to one set of that list (through the same switches as
// MONOQUANT_ISA / _VNNI / _AVX512 / _AMX); "best" restores the default.
// A set this CPU cannot run throws unsupported.
void use_linear_kernel_set(std::string_view name);
// Tests: split output columns into chunks of at least this many
// multiply-adds (one 4-block unit at least), so that small shapes really run
// on several threads; 0 restores the tuned sizes.
void set_linear_min_chunk_macs(int64_t macs);

}  // namespace monoquant
