#include "monoquant/float_cast.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "monoquant/error.hpp"
#include "monoquant/half.hpp"
#include "monoquant/thread_pool.hpp"
#include "quant/kernels.hpp"
#include "quant/layout.hpp"

namespace monoquant {

std::string_view name_of(OverflowPolicy policy) {
  switch (policy) {
    case OverflowPolicy::error: return "error";
    case OverflowPolicy::saturate: return "saturate";
    case OverflowPolicy::infinity: return "infinity";
  }
  return "?";
}

OverflowPolicy parse_overflow_policy(std::string_view name) {
  if (name == "error") return OverflowPolicy::error;
  if (name == "saturate" || name == "clamp") return OverflowPolicy::saturate;
  if (name == "infinity" || name == "inf") return OverflowPolicy::infinity;
  throw_invalid_argument("unknown overflow policy '" + std::string(name) +
                         "'; expected 'error', 'saturate' or 'infinity'");
}

namespace {

constexpr int64_t kChunk = 1 << 15;
// cast_to_half checks and casts this many elements (16 KiB of float32) at a time.
constexpr int64_t kBlock = 1 << 12;
// Largest finite bfloat16, and the smallest float that rounds past it.
constexpr float bf16_max = 0x1.fep127f;
constexpr uint32_t bf16_overflow_bits = 0x7f7f8000u;

}  // namespace

Tensor cast_to_half(const TensorView& input, DType target, OverflowPolicy policy) {
  if (target != DType::f16 && target != DType::bf16) {
    throw_invalid_argument("cast_to_half targets float16 or bfloat16, not " + std::string(name_of(target)));
  }
  input.validate("cast_to_half");
  if (!is_floating(input.dtype)) {
    throw_invalid_argument("cast_to_half expects a floating-point tensor, got " + std::string(name_of(input.dtype)));
  }
  std::optional<Tensor> owned;
  const float* x;
  // Views may start at any byte; only a float-aligned one is read in place.
  if (input.dtype == DType::f32 && input.is_contiguous() &&
      reinterpret_cast<std::uintptr_t>(input.data) % alignof(float) == 0) {
    x = reinterpret_cast<const float*>(input.data);
  } else {
    owned = to_contiguous_f32(input);
    x = owned->as<float>();
  }
  const int64_t n = input.numel();
  const auto& k = kernels::active_kernels();
  const bool f16 = target == DType::f16;
  const uint32_t overflow_bits = f16 ? std::bit_cast<uint32_t>(f16_overflow_threshold) : bf16_overflow_bits;

  const float clamp = policy == OverflowPolicy::saturate ? (f16 ? f16_max : bf16_max) : INFINITY;
  Tensor out(target, input.shape);
  uint16_t* h = out.as<uint16_t>();

  // One pass: each block is checked, then cast while it is still in L1. A
  // block holding NaN/Inf is not cast (the kernels take finite input); the
  // result is thrown away below in that case, and on overflow under
  // OverflowPolicy::error.
  std::atomic<bool> nonfinite{false}, overflow{false};
  parallel_for(n, kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t e = std::min(end, b + kBlock);
      const uint32_t m = k.absmax_bits(x + b, e - b);
      if (m >= 0x7f800000u) {
        nonfinite = true;
        continue;
      }
      if (m >= overflow_bits) overflow = true;
      if (f16) k.f32_to_f16(x + b, e - b, clamp, h + b);
      else k.f32_to_bf16(x + b, e - b, clamp, h + b);
    }
  });
  if (nonfinite) detail::throw_nonfinite(x, n, input.shape, "cast_to_half");
  if (overflow && policy == OverflowPolicy::error) {
    const float limit = std::bit_cast<float>(overflow_bits);
    for (int64_t i = 0; i < n; ++i) {
      if (std::fabs(x[i]) >= limit) {
        throw_invalid_argument("value " + std::to_string(x[i]) + " at flat index " + std::to_string(i) + " overflows " +
                               std::string(name_of(target)) + " (largest finite " +
                               (f16 ? std::string("65504") : std::string("3.39e38")) +
                               "); pass overflow='saturate' to clamp or overflow='infinity' to keep IEEE Inf");
      }
    }
  }
  return out;
}

Tensor half_to_f32(const TensorView& input) {
  input.validate("half_to_f32");
  if (input.dtype != DType::f16 && input.dtype != DType::bf16) {
    throw_invalid_argument("half_to_f32 expects float16 or bfloat16, got " + std::string(name_of(input.dtype)));
  }
  if (!input.is_contiguous() || reinterpret_cast<std::uintptr_t>(input.data) % alignof(uint16_t) != 0) {
    return to_contiguous_f32(input);  // copies element by element, any alignment
  }
  const int64_t n = input.numel();
  Tensor out(DType::f32, input.shape);
  const auto* h = reinterpret_cast<const uint16_t*>(input.data);
  float* y = out.as<float>();
  const auto& k = kernels::active_kernels();
  const bool f16 = input.dtype == DType::f16;
  parallel_for(n, kChunk, [&](int64_t b, int64_t e) {
    if (f16) k.f16_to_f32(h + b, e - b, y + b);
    else k.bf16_to_f32(h + b, e - b, y + b);
  });
  return out;
}

float round_scale_up(float s, DType dtype) {
  if (dtype == DType::f16) {
    uint16_t h = f32_to_f16_bits(s);
    if (f16_bits_to_f32(h) < s) ++h;
    if (h < 0x0400) h = 0x0400;  // smallest normal fp16
    const float r = f16_bits_to_f32(h);
    if (!std::isfinite(r)) throw_invalid_argument("a scale of " + std::to_string(s) + " does not fit in float16");
    return r;
  }
  if (dtype == DType::bf16) {
    uint16_t h = f32_to_bf16_bits(s);
    if (bf16_bits_to_f32(h) < s) ++h;
    if (h < 0x0080) h = 0x0080;  // smallest normal bf16
    return bf16_bits_to_f32(h);
  }
  if (dtype != DType::f32) throw_invalid_argument("scales are stored as float32, float16 or bfloat16");
  return s;
}

}  // namespace monoquant
