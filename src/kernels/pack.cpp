// Packing weights once into the blocked layout of linear.hpp, and checking
// borrowed packed views. Runs once per layer, so it is plain scalar code.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "monoquant/error.hpp"
#include "monoquant/linear.hpp"

namespace monoquant {
namespace {

constexpr int64_t B = kLinearBlockN;

// Element (r, c) of a 2-D view, as a pointer to its bytes.
const std::byte* at(const TensorView& v, int64_t r, int64_t c, std::size_t elem) {
  return v.data + (r * v.strides[0] + c * v.strides[1]) * static_cast<int64_t>(elem);
}

void require_2d(const TensorView& v, const char* what) {
  v.validate(what);
  if (v.dim() != 2) {
    throw_invalid_argument(std::string(what) + " must be 2-D [out_features, in_features], got shape " +
                           shape_to_string(v.shape));
  }
}

// Reads a float32 vector of `n` scales from [n] or [n, 1] (or [n, g] rows).
float scale_at(const TensorView& s, int64_t r, int64_t c) {
  float v;
  const int64_t off = s.dim() == 1 ? r * s.strides[0] : r * s.strides[0] + c * s.strides[1];
  std::memcpy(&v, s.data + off * 4, 4);
  return v;
}

void check_scale(float s, int64_t r, const char* what) {
  if (!std::isfinite(s) || s < 0.0f) {
    throw_invalid_argument(std::string(what) + ": scale of output channel " + std::to_string(r) +
                           " is " + std::to_string(s) + "; scales must be finite and >= 0");
  }
}

}  // namespace

std::string_view name_of(WeightFormat format) {
  switch (format) {
    case WeightFormat::int8: return "int8";
    case WeightFormat::int4: return "int4";
    case WeightFormat::f16: return "float16";
    case WeightFormat::bf16: return "bfloat16";
  }
  return "?";
}

std::string_view name_of(LinearMode mode) {
  switch (mode) {
    case LinearMode::weight_only: return "weight_only";
    case LinearMode::dynamic_int8: return "dynamic";
    case LinearMode::static_int8: return "static";
  }
  return "?";
}

WeightFormat parse_weight_format(std::string_view name) {
  if (name == "int8") return WeightFormat::int8;
  if (name == "int4") return WeightFormat::int4;
  if (name == "float16" || name == "f16" || name == "fp16") return WeightFormat::f16;
  if (name == "bfloat16" || name == "bf16") return WeightFormat::bf16;
  throw_invalid_argument("unknown weight format '" + std::string(name) +
                         "'; expected int8, int4, float16 or bfloat16");
}

LinearMode parse_linear_mode(std::string_view name) {
  if (name == "weight_only") return LinearMode::weight_only;
  if (name == "dynamic" || name == "dynamic_int8") return LinearMode::dynamic_int8;
  if (name == "static" || name == "static_int8") return LinearMode::static_int8;
  throw_invalid_argument("unknown linear mode '" + std::string(name) + "'; expected weight_only, dynamic or static");
}

std::size_t PackedLinearWeightView::data_bytes() const {
  const auto rows = static_cast<std::size_t>(n_blocks() * B * k_padded());
  switch (format) {
    case WeightFormat::int8: return rows;
    case WeightFormat::int4: return rows / 2;
    case WeightFormat::f16:
    case WeightFormat::bf16: return rows * 2;
  }
  return 0;
}

std::size_t PackedLinearWeightView::scales_count() const {
  switch (format) {
    case WeightFormat::int8:
    case WeightFormat::int4: return static_cast<std::size_t>(n_blocks() * groups() * B);
    default: return 0;
  }
}

std::size_t PackedLinearWeightView::sums_count() const {
  return format == WeightFormat::int8 ? static_cast<std::size_t>(n_blocks() * groups() * B) + 1 : 0;
}

int32_t PackedLinearWeightView::code_abs_max() const {
  return format == WeightFormat::int8 && sums != nullptr ? sums[sums_count() - 1] : 128;
}

bool PackedLinearWeightView::narrow_codes() const {
  return format == WeightFormat::int8 && group_size == 0 && code_abs_max() <= kNarrowCodeMax;
}

namespace {

// Grouped int8: g a positive multiple of 8 that divides K.
void check_int8_group(int64_t group_size, int64_t k) {
  if (group_size <= 0 || group_size % 8 != 0) {
    throw_invalid_argument("grouped int8 group_size must be a positive multiple of 8 (32, 64, 128, ...), got " +
                           std::to_string(group_size));
  }
  if (k % group_size != 0) {
    throw_invalid_argument("grouped int8 weights need in_features K a multiple of group_size: K = " +
                           std::to_string(k) + " is not a multiple of group_size " + std::to_string(group_size));
  }
}

}  // namespace

void PackedLinearWeightView::validate() const {
  if (n <= 0 || k <= 0) {
    throw_invalid_argument("packed linear weight needs out_features and in_features > 0, got " + std::to_string(n) +
                           " x " + std::to_string(k));
  }
  if (format == WeightFormat::int4 && (group_size <= 0 || group_size % 8 != 0)) {
    throw_invalid_argument("int4 group_size must be a positive multiple of 8 (32, 64, 128, ...), got " +
                           std::to_string(group_size));
  }
  if (format == WeightFormat::int8 && group_size != 0) check_int8_group(group_size, k);
  if (data == nullptr) throw_invalid_argument("packed linear weight has no data");
  if (scales_count() && scales == nullptr) throw_invalid_argument("packed linear weight has no scales");
  if (sums_count() && sums == nullptr) throw_invalid_argument("packed int8 linear weight has no column sums");
  if (format == WeightFormat::int8 && (code_abs_max() < 0 || code_abs_max() > 128)) {
    throw_invalid_argument("packed int8 linear weight is corrupt: its largest |code| reads " +
                           std::to_string(code_abs_max()) + ", outside [0, 128]");
  }
}

PackedLinearWeightView PackedLinearWeight::view() const {
  PackedLinearWeightView v;
  v.format = format;
  v.n = n;
  v.k = k;
  v.group_size = group_size;
  v.data = data.data();
  v.scales = scales.numel() ? scales.as<float>() : nullptr;
  v.sums = sums.numel() ? sums.as<int32_t>() : nullptr;
  return v;
}

namespace {

PackedLinearWeight allocate(WeightFormat format, int64_t n, int64_t k, int64_t group_size) {
  PackedLinearWeight p;
  p.format = format;
  p.n = n;
  p.k = k;
  p.group_size = group_size;
  PackedLinearWeightView v;
  v.format = format;
  v.n = n;
  v.k = k;
  v.group_size = group_size;
  p.data = Tensor::zeros(DType::u8, {static_cast<int64_t>(v.data_bytes())});
  p.scales = Tensor::zeros(DType::f32, {static_cast<int64_t>(v.scales_count())});
  p.sums = Tensor::zeros(DType::i32, {static_cast<int64_t>(v.sums_count())});
  return p;
}

}  // namespace

PackedLinearWeight pack_linear_int8(const TensorView& codes, const TensorView& scales) {
  require_2d(codes, "int8 weight codes");
  if (codes.dtype != DType::i8) throw_invalid_argument("int8 weight codes must have dtype int8");
  const int64_t n = codes.shape[0], k = codes.shape[1];
  scales.validate("int8 weight scales");
  if (scales.dtype != DType::f32 || scales.numel() != n || scales.dim() > 2 || scales.dim() == 0) {
    throw_invalid_argument("int8 weight scales must be float32 [N] or [N, 1] with N = " + std::to_string(n) +
                           ", got shape " + shape_to_string(scales.shape));
  }
  if (n == 0 || k == 0) throw_invalid_argument("linear weight must not be empty, got shape " + shape_to_string(codes.shape));
  PackedLinearWeight p = allocate(WeightFormat::int8, n, k, 0);
  const PackedLinearWeightView v = p.view();
  const int64_t kp = v.k_padded();
  auto* out = p.data.as<int8_t>();
  auto* sums = p.sums.as<int32_t>();
  auto* sc = p.scales.as<float>();
  int32_t abs_max = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float s = scale_at(scales, r, 0);
    check_scale(s, r, "int8 weight scales");
    sc[r] = s;
    int8_t* block = out + (r / B) * B * kp;
    const int64_t c = r % B;
    int32_t sum = 0;
    for (int64_t i = 0; i < k; ++i) {
      const auto q = static_cast<int8_t>(*at(codes, r, i, 1));
      block[(i / 4) * (B * 4) + c * 4 + i % 4] = q;
      sum += q;
      abs_max = std::max(abs_max, std::abs(int32_t{q}));
    }
    sums[r] = sum;
  }
  sums[v.sums_count() - 1] = abs_max;
  return p;
}

PackedLinearWeight pack_linear_int8_grouped(const TensorView& codes, const TensorView& scales, int64_t group_size) {
  require_2d(codes, "int8 weight codes");
  if (codes.dtype != DType::i8) throw_invalid_argument("int8 weight codes must have dtype int8");
  const int64_t n = codes.shape[0], k = codes.shape[1];
  if (n == 0 || k == 0) throw_invalid_argument("linear weight must not be empty, got shape " + shape_to_string(codes.shape));
  check_int8_group(group_size, k);
  const int64_t groups = k / group_size;
  scales.validate("grouped int8 weight scales");
  if (scales.dtype != DType::f32 || scales.dim() != 2 || scales.shape[0] != n || scales.shape[1] != groups) {
    throw_invalid_argument("grouped int8 weight scales must be float32 [N, K/group_size] = [" + std::to_string(n) +
                           ", " + std::to_string(groups) + "], got shape " + shape_to_string(scales.shape));
  }
  PackedLinearWeight p = allocate(WeightFormat::int8, n, k, group_size);
  const PackedLinearWeightView v = p.view();
  const int64_t kp = v.k_padded();
  auto* out = p.data.as<int8_t>();
  auto* sums = p.sums.as<int32_t>();
  auto* sc = p.scales.as<float>();
  int32_t abs_max = 0;
  for (int64_t r = 0; r < n; ++r) {
    int8_t* block = out + (r / B) * B * kp;
    const int64_t c = r % B;
    for (int64_t g = 0; g < groups; ++g) {
      const float s = scale_at(scales, r, g);
      check_scale(s, r, "grouped int8 weight scales");
      const int64_t at_g = ((r / B) * groups + g) * B + c;
      sc[at_g] = s;
      int32_t sum = 0;
      for (int64_t i = g * group_size; i < (g + 1) * group_size; ++i) {
        const auto q = static_cast<int8_t>(*at(codes, r, i, 1));
        block[(i / 4) * (B * 4) + c * 4 + i % 4] = q;
        sum += q;
        abs_max = std::max(abs_max, std::abs(int32_t{q}));
      }
      sums[at_g] = sum;
    }
  }
  sums[v.sums_count() - 1] = abs_max;
  return p;
}

PackedLinearWeight pack_linear_int4(const TensorView& packed, int64_t k, const TensorView& scales,
                                    int64_t group_size) {
  require_2d(packed, "int4 weight codes");
  if (packed.dtype != DType::u8 && packed.dtype != DType::int4_packed) {
    throw_invalid_argument("int4 weight codes must be uint8 bytes (two codes per byte)");
  }
  const int64_t n = packed.shape[0];
  if (k <= 0 || n == 0) throw_invalid_argument("int4 linear weight must not be empty");
  const int64_t row_bytes = (k + 1) / 2;
  if (packed.dtype == DType::u8 && packed.shape[1] != row_bytes) {
    throw_invalid_argument("int4 weight codes for in_features " + std::to_string(k) + " must have " +
                           std::to_string(row_bytes) + " bytes per row, got shape " + shape_to_string(packed.shape));
  }
  if (packed.dtype == DType::int4_packed && packed.shape[1] != k) {
    throw_invalid_argument("int4 weight codes shape " + shape_to_string(packed.shape) + " does not match in_features " +
                           std::to_string(k));
  }
  if (group_size <= 0 || group_size % 8 != 0) {
    throw_invalid_argument("int4 group_size must be a positive multiple of 8 (32, 64, 128, ...), got " +
                           std::to_string(group_size));
  }
  const int64_t groups = (k + group_size - 1) / group_size;
  scales.validate("int4 weight scales");
  if (scales.dtype != DType::f32 || scales.dim() != 2 || scales.shape[0] != n || scales.shape[1] != groups) {
    throw_invalid_argument("int4 weight scales must be float32 [N, ceil(K/group_size)] = [" + std::to_string(n) + ", " +
                           std::to_string(groups) + "], got shape " + shape_to_string(scales.shape));
  }
  PackedLinearWeight p = allocate(WeightFormat::int4, n, k, group_size);
  const PackedLinearWeightView v = p.view();
  const int64_t kp = v.k_padded();
  auto* out = p.data.as<uint8_t>();
  std::memset(out, 0x88, p.data.nbytes());  // padding: nibble 8 = weight 0
  auto* sc = p.scales.as<float>();
  // int4_packed views are contiguous by definition; uint8 ones may be strided.
  const int64_t stride0 = packed.dtype == DType::int4_packed ? row_bytes : packed.strides[0];
  const int64_t stride1 = packed.dtype == DType::int4_packed ? 1 : packed.strides[1];
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float s = scale_at(scales, r, g);
      check_scale(s, r, "int4 weight scales");
      sc[((r / B) * groups + g) * B + r % B] = s;
    }
    uint8_t* block = out + (r / B) * B * kp / 2;
    const int64_t c = r % B;
    for (int64_t i = 0; i < k; ++i) {
      const auto byte = static_cast<uint8_t>(*(packed.data + r * stride0 + (i / 2) * stride1));
      const uint8_t nib = (i % 2) ? (byte >> 4) : (byte & 0xf);
      const int64_t chunk = i / 8, j = i % 8;
      uint8_t& dst = block[chunk * (B * 4) + c * 4 + (j % 4)];
      dst = j < 4 ? static_cast<uint8_t>((dst & 0xf0) | nib) : static_cast<uint8_t>((dst & 0x0f) | (nib << 4));
    }
  }
  return p;
}

PackedLinearWeight pack_linear_half(const TensorView& weight) {
  require_2d(weight, "half weight");
  WeightFormat format;
  if (weight.dtype == DType::f16) format = WeightFormat::f16;
  else if (weight.dtype == DType::bf16) format = WeightFormat::bf16;
  else throw_invalid_argument("half weight must be float16 or bfloat16");
  const int64_t n = weight.shape[0], k = weight.shape[1];
  if (n == 0 || k == 0) throw_invalid_argument("linear weight must not be empty, got shape " + shape_to_string(weight.shape));
  PackedLinearWeight p = allocate(format, n, k, 0);
  const int64_t kp = p.view().k_padded();
  auto* out = p.data.as<uint16_t>();
  for (int64_t r = 0; r < n; ++r) {
    uint16_t* block = out + (r / B) * B * kp;
    for (int64_t i = 0; i < k; ++i) {
      uint16_t h;
      std::memcpy(&h, at(weight, r, i, 2), 2);
      block[(i / 4) * (B * 4) + (r % B) * 4 + i % 4] = h;
    }
  }
  return p;
}

UnpackedLinearWeight unpack_linear(const PackedLinearWeightView& w) {
  w.validate();
  const int64_t n = w.n, k = w.k, kp = w.k_padded();
  UnpackedLinearWeight u;
  switch (w.format) {
    case WeightFormat::int8: {
      // Per channel: scales [N, 1]; grouped: [N, K/g] from [N/8][groups][8].
      const int64_t groups = w.groups();
      u.codes = Tensor(DType::i8, {n, k});
      u.scales = Tensor(DType::f32, {n, groups});
      const auto* d = static_cast<const int8_t*>(w.data);
      for (int64_t r = 0; r < n; ++r) {
        const int8_t* block = d + (r / B) * B * kp;
        int8_t* row = u.codes.as<int8_t>() + r * k;
        for (int64_t i = 0; i < k; ++i) row[i] = block[(i / 4) * (B * 4) + (r % B) * 4 + i % 4];
        for (int64_t g = 0; g < groups; ++g) {
          u.scales.as<float>()[r * groups + g] = w.scales[((r / B) * groups + g) * B + r % B];
        }
      }
      break;
    }
    case WeightFormat::int4: {
      const int64_t row_bytes = (k + 1) / 2, groups = w.groups();
      u.codes = Tensor::zeros(DType::u8, {n, row_bytes});
      u.scales = Tensor(DType::f32, {n, groups});
      const auto* d = static_cast<const uint8_t*>(w.data);
      for (int64_t r = 0; r < n; ++r) {
        const uint8_t* block = d + (r / B) * B * kp / 2;
        uint8_t* row = u.codes.as<uint8_t>() + r * row_bytes;
        for (int64_t i = 0; i < k; ++i) {
          const uint8_t byte = block[(i / 8) * (B * 4) + (r % B) * 4 + (i % 4)];
          const uint8_t nib = (i % 8) < 4 ? (byte & 0xf) : (byte >> 4);
          row[i / 2] = static_cast<uint8_t>(row[i / 2] | (i % 2 ? nib << 4 : nib));
        }
        for (int64_t g = 0; g < groups; ++g) {
          u.scales.as<float>()[r * groups + g] = w.scales[((r / B) * groups + g) * B + r % B];
        }
      }
      break;
    }
    case WeightFormat::f16:
    case WeightFormat::bf16: {
      u.codes = Tensor(w.format == WeightFormat::f16 ? DType::f16 : DType::bf16, {n, k});
      u.scales = Tensor(DType::f32, {0});
      const auto* d = static_cast<const uint16_t*>(w.data);
      for (int64_t r = 0; r < n; ++r) {
        const uint16_t* block = d + (r / B) * B * kp;
        uint16_t* row = u.codes.as<uint16_t>() + r * k;
        for (int64_t i = 0; i < k; ++i) row[i] = block[(i / 4) * (B * 4) + (r % B) * 4 + i % 4];
      }
      break;
    }
  }
  return u;
}

}  // namespace monoquant
