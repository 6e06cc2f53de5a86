// Scalar reference kernels: plain loops, written for clarity. They define the
// expected bits of every optimized kernel.
#include <algorithm>
#include <bit>
#include <cmath>

#include "monoquant/half.hpp"
#include "quant/kernels.hpp"

namespace monoquant::kernels {
namespace {

uint32_t absmax_bits(const float* x, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::bit_cast<uint32_t>(x[i]) & 0x7fffffffu);
  return m;
}

void minmax(const float* x, int64_t n, float* min, float* max) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  *min = lo;
  *max = hi;
}

void quantize_i8(const float* x, int64_t n, float inv_scale, int32_t zero_point, int32_t qmin, int32_t qmax,
                 int8_t* q) {
  const float zp = static_cast<float>(zero_point);
  const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  for (int64_t i = 0; i < n; ++i) {
    const float product = x[i] * inv_scale;  // one rounding, as in torch's quantize_val
    const float v = std::nearbyint(product) + zp;
    q[i] = static_cast<int8_t>(std::clamp(v, lo, hi));
  }
}

void dequantize_i8(const int8_t* q, int64_t n, float scale, int32_t zero_point, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(q[i] - zero_point) * scale;
}

void pack_i4(const int8_t* q, int64_t n, uint8_t* packed) {
  for (int64_t i = 0; i + 1 < n; i += 2) {
    packed[i / 2] = static_cast<uint8_t>(((q[i] + 8) & 0xf) | (((q[i + 1] + 8) & 0xf) << 4));
  }
  if (n % 2) packed[n / 2] = static_cast<uint8_t>((q[n - 1] + 8) & 0xf);
}

void unpack_i4(const uint8_t* packed, int64_t n, int8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t byte = packed[i / 2];
    const int nibble = (i % 2) ? (byte >> 4) : (byte & 0xf);
    q[i] = static_cast<int8_t>(nibble - 8);
  }
}

void f32_to_f16(const float* x, int64_t n, float clamp, uint16_t* h) {
  for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16_bits(std::clamp(x[i], -clamp, clamp));
}

void f16_to_f32(const uint16_t* h, int64_t n, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = f16_bits_to_f32(h[i]);
}

void f32_to_bf16(const float* x, int64_t n, float clamp, uint16_t* b) {
  for (int64_t i = 0; i < n; ++i) b[i] = f32_to_bf16_bits(std::clamp(x[i], -clamp, clamp));
}

void bf16_to_f32(const uint16_t* b, int64_t n, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = bf16_bits_to_f32(b[i]);
}

void error_energy_i8(const float* x, const int8_t* q, int64_t n, float scale, int32_t zero_point, double* xx,
                     double* ee) {
  float sx = 0.0f, se = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - static_cast<float>(q[i] - zero_point) * scale;
    sx += x[i] * x[i];
    se += d * d;
  }
  *xx += sx;
  *ee += se;
}

}  // namespace

const QuantKernels& reference_kernels() {
  static const QuantKernels table{absmax_bits, minmax,     quantize_i8, dequantize_i8, pack_i4,
                                  unpack_i4,   f32_to_f16, f16_to_f32,  f32_to_bf16,   bf16_to_f32,
                                  error_energy_i8};
  return table;
}

}  // namespace monoquant::kernels
