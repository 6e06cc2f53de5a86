#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>

#include "monoquant/dtype.hpp"
#include "monoquant/error.hpp"
#include "test_util.hpp"

using namespace monoquant;

namespace {

const DType kAll[] = {DType::f32, DType::f16, DType::bf16,    DType::f64, DType::i8,          DType::u8,
                      DType::i16, DType::i32, DType::i64, DType::boolean, DType::int4_packed};

// Element sizes, from the C++ types (and the documented 4 / 8 bits for int4 / bool).
int expected_bits(DType d) {
  switch (d) {
    case DType::f32: return 8 * sizeof(float);
    case DType::f16: return 16;
    case DType::bf16: return 16;
    case DType::f64: return 8 * sizeof(double);
    case DType::i8: return 8 * sizeof(int8_t);
    case DType::u8: return 8 * sizeof(uint8_t);
    case DType::i16: return 8 * sizeof(int16_t);
    case DType::i32: return 8 * sizeof(int32_t);
    case DType::i64: return 8 * sizeof(int64_t);
    case DType::boolean: return 8;
    case DType::int4_packed: return 4;
  }
  return -1;
}

}  // namespace

TEST(DType, CanonicalNamesRoundTrip) {
  std::set<std::string> names;
  for (DType d : kAll) {
    const std::string name(name_of(d));
    EXPECT_FALSE(name.empty());
    EXPECT_EQ(parse_dtype(name), d) << name;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), std::size(kAll));  // all distinct
  // The canonical names the header documents.
  const std::set<std::string> documented = {"float32", "float16", "bfloat16", "float64", "int8", "uint8",
                                            "int16",   "int32",   "int64",    "bool",    "int4"};
  EXPECT_EQ(names, documented);
}

TEST(DType, ShortAliases) {
  EXPECT_EQ(parse_dtype("f32"), DType::f32);
  EXPECT_EQ(parse_dtype("fp16"), DType::f16);
  EXPECT_EQ(parse_dtype("bf16"), DType::bf16);
  EXPECT_EQ(parse_dtype("i8"), DType::i8);
}

TEST(DType, UnknownNamesThrowNamingTheName) {
  for (const char* bad : {"float8", "int3", "", "fp32 ", "complex64", "int4x"}) {
    EXPECT_TRUE(mqtest::throws_error([&] { parse_dtype(bad); }, ErrorKind::invalid_argument, {std::string("'") + bad + "'"}))
        << "'" << bad << "'";
  }
}

TEST(DType, BitsAndFloatness) {
  for (DType d : kAll) {
    EXPECT_EQ(bits_of(d), expected_bits(d)) << name_of(d);
    const bool fl = d == DType::f32 || d == DType::f16 || d == DType::bf16 || d == DType::f64;
    EXPECT_EQ(is_floating(d), fl) << name_of(d);
  }
}

TEST(DType, StorageBytes) {
  for (DType d : kAll) {
    for (std::size_t count : {0u, 1u, 2u, 3u, 7u, 8u, 9u, 1000u, 1001u}) {
      const std::size_t want =
          d == DType::int4_packed ? (count + 1) / 2 : count * static_cast<std::size_t>(expected_bits(d) / 8);
      EXPECT_EQ(storage_bytes(d, count), want) << name_of(d) << " x " << count;
    }
  }
  // Large counts that still fit are exact, never wrapped.
  const std::size_t big = std::size_t{1} << 61;
  EXPECT_EQ(storage_bytes(DType::f32, big), big * 4);
  EXPECT_EQ(storage_bytes(DType::int4_packed, std::numeric_limits<std::size_t>::max()),
            std::numeric_limits<std::size_t>::max() / 2 + 1);
  // Counts whose byte size does not fit in size_t throw.
  EXPECT_TRUE(mqtest::throws_error([&] { storage_bytes(DType::f64, big); }, ErrorKind::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error([&] { storage_bytes(DType::f32, std::numeric_limits<std::size_t>::max() / 2); },
                                   ErrorKind::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error([&] { storage_bytes(DType::i16, std::numeric_limits<std::size_t>::max()); },
                                   ErrorKind::invalid_argument));
}

TEST(Errors, KindsAndMessages) {
  struct Row {
    void (*thrower)(const std::string&);
    ErrorKind kind;
  };
  const Row rows[] = {{throw_invalid_argument, ErrorKind::invalid_argument},
                      {throw_format_error, ErrorKind::format},
                      {throw_io_error, ErrorKind::io},
                      {throw_unsupported, ErrorKind::unsupported}};
  std::set<std::string> kind_names;
  for (const Row& r : rows) {
    EXPECT_TRUE(mqtest::throws_error([&] { r.thrower("the message 42"); }, r.kind, {"the message 42"}));
    // Catchable as std::runtime_error too.
    EXPECT_THROW(r.thrower("x"), std::runtime_error);
    kind_names.insert(std::string(to_string(r.kind)));
  }
  EXPECT_EQ(kind_names.size(), 4u);
  const Error e(ErrorKind::io, "disk");
  EXPECT_EQ(e.kind(), ErrorKind::io);
  EXPECT_STREQ(e.what(), "disk");
}
