// Element types the library reads, writes and computes with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace monoquant {

enum class DType : uint8_t {
  f32,
  f16,
  bf16,
  f64,
  i8,
  u8,
  i16,
  i32,
  i64,
  boolean,
  int4_packed,  // two signed 4-bit values per byte, first element in the low nibble
};

// Size of one element in bits (4 for int4_packed, 8 for bool).
int bits_of(DType dtype);

// Bytes needed to store `count` elements; int4 rounds up to a whole byte.
std::size_t storage_bytes(DType dtype, std::size_t count);

bool is_floating(DType dtype);

// Canonical lower-case names: "float32", "float16", "bfloat16", "float64",
// "int8", "uint8", "int16", "int32", "int64", "bool", "int4".
std::string_view name_of(DType dtype);

// Accepts the canonical names and the common short ones ("f32", "fp16", "bf16",
// "i8", ...). Throws ErrorKind::invalid_argument naming the bad string.
DType parse_dtype(std::string_view name);

}  // namespace monoquant
