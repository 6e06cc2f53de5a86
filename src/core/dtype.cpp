#include "monoquant/dtype.hpp"

#include <array>
#include <limits>
#include <string>

#include "monoquant/error.hpp"

namespace monoquant {

int bits_of(DType dtype) {
  switch (dtype) {
    case DType::f32: return 32;
    case DType::f16: return 16;
    case DType::bf16: return 16;
    case DType::f64: return 64;
    case DType::i8: return 8;
    case DType::u8: return 8;
    case DType::i16: return 16;
    case DType::i32: return 32;
    case DType::i64: return 64;
    case DType::boolean: return 8;
    case DType::int4_packed: return 4;
  }
  return 0;
}

std::size_t storage_bytes(DType dtype, std::size_t count) {
  const auto bits = static_cast<std::size_t>(bits_of(dtype));
  // Every 8 elements take exactly `bits` bytes. Computed this way, and
  // checked, so that a huge count throws instead of wrapping around to a
  // small size (and a small buffer for a huge tensor).
  const std::size_t whole = count / 8, rest = count % 8;
  if (whole > (std::numeric_limits<std::size_t>::max() - bits) / bits) {
    throw_invalid_argument(std::to_string(count) + " " + std::string(name_of(dtype)) +
                           " elements need more bytes than fit in size_t");
  }
  return whole * bits + (rest * bits + 7) / 8;
}

bool is_floating(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f64;
}

std::string_view name_of(DType dtype) {
  switch (dtype) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f64: return "float64";
    case DType::i8: return "int8";
    case DType::u8: return "uint8";
    case DType::i16: return "int16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::boolean: return "bool";
    case DType::int4_packed: return "int4";
  }
  return "?";
}

DType parse_dtype(std::string_view name) {
  struct Alias {
    std::string_view name;
    DType dtype;
  };
  static constexpr std::array<Alias, 24> aliases{{
      {"float32", DType::f32}, {"f32", DType::f32},       {"fp32", DType::f32},
      {"float", DType::f32},   {"float16", DType::f16},   {"f16", DType::f16},
      {"fp16", DType::f16},    {"half", DType::f16},      {"bfloat16", DType::bf16},
      {"bf16", DType::bf16},   {"float64", DType::f64},   {"f64", DType::f64},
      {"double", DType::f64},  {"int8", DType::i8},       {"i8", DType::i8},
      {"uint8", DType::u8},    {"u8", DType::u8},         {"int16", DType::i16},
      {"int32", DType::i32},   {"int64", DType::i64},     {"bool", DType::boolean},
      {"int4", DType::int4_packed}, {"i4", DType::int4_packed}, {"i32", DType::i32},
  }};
  for (const auto& alias : aliases) {
    if (alias.name == name) return alias.dtype;
  }
  throw_invalid_argument("unknown dtype '" + std::string(name) +
                         "'; expected one of float32, float16, bfloat16, float64, int8, uint8, "
                         "int16, int32, int64, bool, int4");
}

}  // namespace monoquant
