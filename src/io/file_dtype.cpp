#include "monoquant/io/file_dtype.hpp"

#include <array>

namespace monoquant::io {
namespace {

struct Info {
  FileDType dtype;
  int bits;
  std::string_view st;
  std::string_view torch;
};

constexpr std::array<Info, 23> kInfo{{
    {FileDType::boolean, 8, "BOOL", "bool"},
    {FileDType::f4, 4, "F4", ""},
    {FileDType::f6_e2m3, 6, "F6_E2M3", ""},
    {FileDType::f6_e3m2, 6, "F6_E3M2", ""},
    {FileDType::u8, 8, "U8", "uint8"},
    {FileDType::i8, 8, "I8", "int8"},
    {FileDType::f8_e5m2, 8, "F8_E5M2", "float8_e5m2"},
    {FileDType::f8_e4m3, 8, "F8_E4M3", "float8_e4m3fn"},
    {FileDType::f8_e8m0, 8, "F8_E8M0", "float8_e8m0fnu"},
    {FileDType::f8_e4m3fnuz, 8, "F8_E4M3FNUZ", "float8_e4m3fnuz"},
    {FileDType::f8_e5m2fnuz, 8, "F8_E5M2FNUZ", "float8_e5m2fnuz"},
    {FileDType::i16, 16, "I16", "int16"},
    {FileDType::u16, 16, "U16", "uint16"},
    {FileDType::f16, 16, "F16", "float16"},
    {FileDType::bf16, 16, "BF16", "bfloat16"},
    {FileDType::i32, 32, "I32", "int32"},
    {FileDType::u32, 32, "U32", "uint32"},
    {FileDType::f32, 32, "F32", "float32"},
    {FileDType::c64, 64, "C64", "complex64"},
    {FileDType::f64, 64, "F64", "float64"},
    {FileDType::i64, 64, "I64", "int64"},
    {FileDType::u64, 64, "U64", "uint64"},
    {FileDType::c128, 128, "", "complex128"},
}};

const Info& info(FileDType d) { return kInfo[static_cast<std::size_t>(d)]; }

}  // namespace

int bits_of(FileDType dtype) { return info(dtype).bits; }
std::size_t element_size(FileDType dtype) {
  const int b = info(dtype).bits;
  return b < 8 ? 1 : static_cast<std::size_t>(b / 8);
}
std::string_view safetensors_name(FileDType dtype) { return info(dtype).st; }
std::string_view torch_name(FileDType dtype) { return info(dtype).torch; }

std::optional<FileDType> parse_safetensors_dtype(std::string_view name) {
  for (const auto& i : kInfo) {
    if (!i.st.empty() && i.st == name) return i.dtype;
  }
  return std::nullopt;
}

std::optional<FileDType> parse_torch_name(std::string_view name) {
  for (const auto& i : kInfo) {
    if (!i.torch.empty() && i.torch == name) return i.dtype;
  }
  return std::nullopt;
}

std::optional<DType> to_core(FileDType dtype) {
  switch (dtype) {
    case FileDType::boolean: return DType::boolean;
    case FileDType::u8: return DType::u8;
    case FileDType::i8: return DType::i8;
    case FileDType::i16: return DType::i16;
    case FileDType::f16: return DType::f16;
    case FileDType::bf16: return DType::bf16;
    case FileDType::i32: return DType::i32;
    case FileDType::f32: return DType::f32;
    case FileDType::f64: return DType::f64;
    case FileDType::i64: return DType::i64;
    default: return std::nullopt;
  }
}

FileDType from_core(DType dtype) {
  switch (dtype) {
    case DType::f32: return FileDType::f32;
    case DType::f16: return FileDType::f16;
    case DType::bf16: return FileDType::bf16;
    case DType::f64: return FileDType::f64;
    case DType::i8: return FileDType::i8;
    case DType::u8: return FileDType::u8;
    case DType::i16: return FileDType::i16;
    case DType::i32: return FileDType::i32;
    case DType::i64: return FileDType::i64;
    case DType::boolean: return FileDType::boolean;
    case DType::int4_packed: return FileDType::u8;
  }
  return FileDType::u8;
}

}  // namespace monoquant::io
