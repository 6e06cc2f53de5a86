// Element types that can appear in checkpoint files. A superset of DType:
// files carry fp8, unsigned 16/32/64-bit and complex tensors that monoquant
// does not compute with but must read, keep and write back bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "monoquant/dtype.hpp"

namespace monoquant::io {

// Declaration order is the safetensors `Dtype` enum order (the reference
// writer sorts by it); c128 exists only in .pt files.
enum class FileDType : uint8_t {
  boolean, f4, f6_e2m3, f6_e3m2, u8, i8, f8_e5m2, f8_e4m3, f8_e8m0, f8_e4m3fnuz, f8_e5m2fnuz,
  i16, u16, f16, bf16, i32, u32, f32, c64, f64, i64, u64, c128,
};

int bits_of(FileDType dtype);
// Bytes of one element; sub-byte types (f4, f6) report 1 and are rejected
// wherever element addressing matters.
std::size_t element_size(FileDType dtype);

// "F32", "BF16", "F8_E4M3", ...; empty for c128 (no safetensors name).
std::string_view safetensors_name(FileDType dtype);
std::optional<FileDType> parse_safetensors_dtype(std::string_view name);

// torch's attribute name: "float32", "float8_e4m3fn", "uint16", "complex64", ...;
// empty for the types torch has no dtype for (f4, f6, f8_e8m0 in older torch).
std::string_view torch_name(FileDType dtype);
std::optional<FileDType> parse_torch_name(std::string_view name);

std::optional<DType> to_core(FileDType dtype);
FileDType from_core(DType dtype);  // int4_packed -> u8 (the packed bytes)

}  // namespace monoquant::io
