// Scalar reference for the linear kernels: plain loops over the packed
// layout, written for clarity. Integer paths define the expected bits of
// every optimized table; float paths define the value up to summation order.
#include <cmath>
#include <cstring>

#include "kernels/gemm.hpp"
#include "monoquant/half.hpp"

namespace monoquant::kernels {
namespace {

constexpr int64_t B = kLinearBlockN;

// Weight (column c of block nb, input k) as a float, dequantized.
float weight_at(const PackedLinearWeightView& w, int64_t nb, int64_t c, int64_t k) {
  const int64_t kp = w.k_padded();
  switch (w.format) {
    case WeightFormat::int8: {
      const auto* d = static_cast<const int8_t*>(w.data) + nb * B * kp;
      return static_cast<float>(d[(k / 4) * B * 4 + c * 4 + k % 4]);
    }
    case WeightFormat::int4: {
      const auto* d = static_cast<const uint8_t*>(w.data) + nb * B * kp / 2;
      const uint8_t byte = d[(k / 8) * B * 4 + c * 4 + (k % 4)];
      const int nib = (k % 8) < 4 ? (byte & 0xf) : (byte >> 4);
      const float s = w.scales[(nb * w.groups() + k / w.group_size) * B + c];
      return static_cast<float>(nib - 8) * s;
    }
    case WeightFormat::f16: {
      const auto* d = static_cast<const uint16_t*>(w.data) + nb * B * kp;
      return f16_bits_to_f32(d[(k / 4) * B * 4 + c * 4 + k % 4]);
    }
    case WeightFormat::bf16: {
      const auto* d = static_cast<const uint16_t*>(w.data) + nb * B * kp;
      return bf16_bits_to_f32(d[(k / 4) * B * 4 + c * 4 + k % 4]);
    }
  }
  return 0.0f;
}

void gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  for (int64_t nb = nb_begin; nb < nb_end; ++nb) {
    for (int64_t c = 0; c < B && nb * B + c < w.n; ++c) {
      const int64_t n = nb * B + c;
      for (int64_t m = 0; m < a.m; ++m) {
        const float* x = a.x + m * a.ldx;
        float acc = 0.0f;
        for (int64_t k = 0; k < w.k; ++k) acc += x[k] * weight_at(w, nb, c, k);
        // int8 weights carry one scale per column, applied after the sum.
        if (w.format == WeightFormat::int8) acc *= w.scales[n];
        a.y[m * a.ldy + n] = acc + (a.bias ? a.bias[n] : 0.0f);
      }
    }
  }
}

void gemm_i8(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded();
  for (int64_t nb = nb_begin; nb < nb_end; ++nb) {
    const auto* d = static_cast<const int8_t*>(w.data) + nb * B * kp;
    for (int64_t c = 0; c < B && nb * B + c < w.n; ++c) {
      const int64_t n = nb * B + c;
      for (int64_t m = 0; m < a.m; ++m) {
        const int8_t* q = a.q + m * kp;
        int32_t acc = 0;
        for (int64_t k = 0; k < w.k; ++k) acc += (q[k] - a.zero_point) * d[(k / 4) * B * 4 + c * 4 + k % 4];
        a.y[m * a.ldy + n] =
            std::fma(static_cast<float>(acc), a.row_scales[m] * w.scales[n], a.bias ? a.bias[n] : 0.0f);
      }
    }
  }
}

void gemm_i4(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), groups = w.groups();
  for (int64_t nb = nb_begin; nb < nb_end; ++nb) {
    const auto* d = static_cast<const uint8_t*>(w.data) + nb * B * kp / 2;
    for (int64_t c = 0; c < B && nb * B + c < w.n; ++c) {
      const int64_t n = nb * B + c;
      for (int64_t m = 0; m < a.m; ++m) {
        const int8_t* q = a.q + m * kp;
        float f = 0.0f;
        for (int64_t g = 0; g < groups; ++g) {
          int32_t acc = 0;
          const int64_t end = std::min(w.k, (g + 1) * w.group_size);
          for (int64_t k = g * w.group_size; k < end; ++k) {
            const uint8_t byte = d[(k / 8) * B * 4 + c * 4 + (k % 4)];
            const int nib = (k % 8) < 4 ? (byte & 0xf) : (byte >> 4);
            acc += q[k] * (nib - 8);
          }
          f = std::fma(static_cast<float>(acc), w.scales[(nb * groups + g) * B + c], f);
        }
        a.y[m * a.ldy + n] = std::fma(f, a.row_scales[m], a.bias ? a.bias[n] : 0.0f);
      }
    }
  }
}

// W8A8 with activation groups: one exact int32 dot product per group, scaled
// by (activation scale x weight scale) and accumulated in float with fma over
// the groups in order; the bias is added last. The defined order of
// roundings that every optimized table reproduces.
void gemm_i8g(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), groups = w.groups(), g = w.group_size;
  for (int64_t nb = nb_begin; nb < nb_end; ++nb) {
    const auto* d = static_cast<const int8_t*>(w.data) + nb * B * kp;
    for (int64_t c = 0; c < B && nb * B + c < w.n; ++c) {
      const int64_t n = nb * B + c;
      for (int64_t m = 0; m < a.m; ++m) {
        const int8_t* q = a.q + m * kp;
        float acc = 0.0f;
        for (int64_t j = 0; j < groups; ++j) {
          int32_t dot = 0;
          for (int64_t k = j * g; k < (j + 1) * g; ++k) dot += q[k] * d[(k / 4) * B * 4 + c * 4 + k % 4];
          const float s = a.row_scales[m * groups + j] * w.scales[(nb * groups + j) * B + c];
          acc = std::fma(static_cast<float>(dot), s, acc);
        }
        a.y[m * a.ldy + n] = acc + (a.bias ? a.bias[n] : 0.0f);
      }
    }
  }
}

}  // namespace

const LinearKernels& reference_linear_kernels() {
  static const LinearKernels table{"scalar", gemm_float, gemm_i8, gemm_i4, 0, nullptr, gemm_i8g};
  return table;
}

}  // namespace monoquant::kernels
