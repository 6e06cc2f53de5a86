#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <vector>

#include "monoquant/buffer.hpp"
#include "monoquant/half.hpp"
#include "monoquant/tensor.hpp"
#include "test_util.hpp"

using namespace monoquant;

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

int64_t product(const Shape& s) {
  int64_t p = 1;
  for (int64_t d : s) p *= d;
  return p;
}

}  // namespace

TEST(Tensor, NumelOf) {
  for (const Shape& s : {Shape{}, Shape{1}, Shape{7}, Shape{2, 3, 4}, Shape{5, 0, 7}, Shape{0}, Shape{1, 1, 1, 9}}) {
    EXPECT_EQ(numel_of(s), product(s)) << shape_to_string(s);
  }
  EXPECT_EQ(numel_of(Shape{kMax}), kMax);
  EXPECT_EQ(numel_of(Shape{3, kMax / 3}), 3 * (kMax / 3));
  EXPECT_TRUE(mqtest::throws_error([] { numel_of(Shape{int64_t{1} << 32, int64_t{1} << 32}); }, ErrorKind::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error([] { numel_of(Shape{kMax, 2}); }, ErrorKind::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error([] { numel_of(Shape{2, kMax / 2 + 1}); }, ErrorKind::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error([] { numel_of(Shape{4, -1}); }, ErrorKind::invalid_argument, {"-1"}));
  // A tensor object of such a shape cannot be built either.
  EXPECT_TRUE(mqtest::throws_error([] { Tensor t(DType::f32, Shape{kMax, 4}); }, ErrorKind::invalid_argument));
}

TEST(Tensor, ContiguousStrides) {
  for (const Shape& s : {Shape{}, Shape{5}, Shape{3, 4}, Shape{2, 3, 4, 5}, Shape{1, 7, 1}}) {
    const Shape st = contiguous_strides(s);
    ASSERT_EQ(st.size(), s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      const int64_t want = product(Shape(s.begin() + static_cast<std::ptrdiff_t>(i) + 1, s.end()));
      EXPECT_EQ(st[i], want) << shape_to_string(s) << " dim " << i;
    }
  }
}

TEST(Tensor, StorageBytes) {
  EXPECT_EQ(tensor_storage_bytes(DType::f32, {3, 5}), 60u);
  EXPECT_EQ(tensor_storage_bytes(DType::f64, {}), 8u);
  EXPECT_EQ(tensor_storage_bytes(DType::bf16, {0, 5}), 0u);
  // int4: every row of the last dimension starts on a byte: rows * ceil(K / 2).
  struct Row {
    Shape shape;
    std::size_t rows, k;
  };
  for (const Row& r : {Row{{3, 5}, 3, 5}, Row{{5}, 1, 5}, Row{{2, 3, 7}, 6, 7}, Row{{4, 8}, 4, 8}, Row{{1}, 1, 1}}) {
    EXPECT_EQ(tensor_storage_bytes(DType::int4_packed, r.shape), r.rows * ((r.k + 1) / 2)) << shape_to_string(r.shape);
  }
  EXPECT_EQ(tensor_storage_bytes(DType::int4_packed, {}), 1u);  // one element, one byte
  EXPECT_EQ(tensor_storage_bytes(DType::int4_packed, {2, 0}), 0u);
  EXPECT_EQ(tensor_storage_bytes(DType::int4_packed, {0, 3}), 0u);
  // A byte count that does not fit in size_t throws rather than wrapping.
  EXPECT_TRUE(mqtest::throws_error([] { tensor_storage_bytes(DType::f32, {int64_t{1} << 62}); }, ErrorKind::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error([] { Tensor t(DType::f64, {int64_t{1} << 61}); }, ErrorKind::invalid_argument));
}

TEST(Tensor, OwnedTensor) {
  for (DType d : {DType::f32, DType::i8, DType::int4_packed, DType::f16}) {
    const Shape s{3, 7};
    Tensor t(d, s);
    EXPECT_EQ(t.dtype(), d);
    EXPECT_EQ(t.shape(), s);
    EXPECT_EQ(t.numel(), 21);
    EXPECT_EQ(t.nbytes(), tensor_storage_bytes(d, s));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % Buffer::alignment, 0u);
    const Tensor z = Tensor::zeros(d, s);
    for (std::size_t i = 0; i < z.nbytes(); ++i) ASSERT_EQ(z.data()[i], std::byte{0});
    const TensorView v = z.view();
    EXPECT_EQ(v.data, z.data());
    EXPECT_EQ(v.dtype, d);
    EXPECT_EQ(v.shape, s);
    EXPECT_TRUE(v.is_contiguous());
  }
  const Tensor empty(DType::f32, {0, 4});
  EXPECT_EQ(empty.nbytes(), 0u);
  EXPECT_NO_THROW(empty.view().validate("test"));
}

TEST(Tensor, BufferBasics) {
  const Buffer none(0);
  EXPECT_EQ(none.size(), 0u);
  EXPECT_EQ(none.data(), nullptr);
  const Buffer z = Buffer::zeros(100);
  EXPECT_EQ(z.size(), 100u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(z.data()) % Buffer::alignment, 0u);
  for (std::size_t i = 0; i < 100; ++i) ASSERT_EQ(z.data()[i], std::byte{0});
  // Sizes whose rounding up to the alignment would wrap are refused.
  EXPECT_THROW(Buffer(std::numeric_limits<std::size_t>::max()), std::bad_alloc);
  EXPECT_THROW(Buffer(std::numeric_limits<std::size_t>::max() - 10), std::bad_alloc);
}

TEST(Tensor, IsContiguous) {
  float dummy[1] = {0};
  for (const Shape& s : {Shape{}, Shape{5}, Shape{3, 4}, Shape{2, 0}, Shape{0, 3}, Shape{2, 3, 0, 4}, Shape{1, 1}}) {
    EXPECT_TRUE(TensorView(dummy, DType::f32, s).is_contiguous()) << shape_to_string(s);
  }
  EXPECT_FALSE(TensorView(dummy, DType::f32, {4, 3}, {1, 4}).is_contiguous());       // transposed
  EXPECT_FALSE(TensorView(dummy, DType::f32, {3, 4}, {8, 2}).is_contiguous());       // every other column
  EXPECT_FALSE(TensorView(dummy, DType::f32, {3, 4}, {0, 1}).is_contiguous());       // broadcast rows
  EXPECT_TRUE(TensorView(dummy, DType::f32, {3, 1, 4}, {4, 999, 1}).is_contiguous());  // unit dim: any stride
  EXPECT_TRUE(TensorView(dummy, DType::f32, {1}, {7}).is_contiguous());
  EXPECT_TRUE(TensorView(dummy, DType::f32, {3, 4}, {4, 1}).is_contiguous());
}

TEST(Tensor, ViewValidate) {
  float data[12] = {};
  EXPECT_NO_THROW(TensorView(data, DType::f32, {3, 4}).validate("t"));
  EXPECT_TRUE(mqtest::throws_error([&] { TensorView(data, DType::f32, {3, 4}, {1}).validate("myop"); }, ErrorKind::invalid_argument,
                                   {"myop"}));
  EXPECT_TRUE(mqtest::throws_error([&] { TensorView(data, DType::f32, {3, 4}, {-4, 1}).validate("t"); }, ErrorKind::invalid_argument,
                                   {"negative"}));
  EXPECT_TRUE(mqtest::throws_error([&] { TensorView(nullptr, DType::f32, {3, 4}).validate("t"); }, ErrorKind::invalid_argument));
  EXPECT_NO_THROW(TensorView(nullptr, DType::f32, {0, 4}).validate("t"));
  EXPECT_TRUE(mqtest::throws_error([&] { TensorView(data, DType::int4_packed, {4, 3}, {1, 4}).validate("t"); },
                                   ErrorKind::invalid_argument, {"int4"}));
  EXPECT_NO_THROW(TensorView(data, DType::int4_packed, {4, 3}).validate("t"));
  EXPECT_NO_THROW(TensorView(nullptr, DType::int4_packed, {4, 0}).validate("t"));
}

namespace {

// Fills `n` elements of type T at `bytes` (which may be misaligned) and
// returns their float values, computed by the test.
template <class T>
std::vector<float> fill(std::byte* bytes, std::size_t n, std::mt19937& gen) {
  std::vector<float> values(n);
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    if constexpr (std::is_same_v<T, float>) v = std::normal_distribution<float>(0, 5)(gen);
    else if constexpr (std::is_same_v<T, double>) v = std::normal_distribution<double>(0, 5)(gen);
    else if constexpr (std::is_same_v<T, int64_t>) v = static_cast<int64_t>(gen()) * 1000003 - (int64_t{1} << 40);
    else v = static_cast<T>(gen());
    std::memcpy(bytes + i * sizeof(T), &v, sizeof(T));
    values[i] = static_cast<float>(v);
  }
  return values;
}

template <class T>
void check_to_contiguous(DType dt, std::mt19937& gen) {
  SCOPED_TRACE(std::string(name_of(dt)));
  // A [6, 10] buffer, one byte past an aligned address.
  const std::size_t rows = 6, cols = 10;
  std::vector<std::byte> storage(rows * cols * sizeof(T) + 16);
  std::byte* base = storage.data() + 1;
  const std::vector<float> vals = fill<T>(base, rows * cols, gen);
  auto at = [&](std::size_t r, std::size_t c) { return vals[r * cols + c]; };
  // Contiguous.
  Tensor c = to_contiguous_f32(TensorView(base, dt, {6, 10}));
  ASSERT_EQ(c.dtype(), DType::f32);
  for (std::size_t i = 0; i < rows * cols; ++i) ASSERT_EQ(c.as<float>()[i], vals[i]);
  // Transposed: [10, 6] with strides [1, 10].
  Tensor t = to_contiguous_f32(TensorView(base, dt, {10, 6}, {1, 10}));
  ASSERT_EQ(t.shape(), (Shape{10, 6}));
  for (std::size_t i = 0; i < cols; ++i)
    for (std::size_t j = 0; j < rows; ++j) ASSERT_EQ(t.as<float>()[i * rows + j], at(j, i));
  // Every other column of every other row: [3, 5] with strides [20, 2].
  Tensor s = to_contiguous_f32(TensorView(base, dt, {3, 5}, {20, 2}));
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 5; ++j) ASSERT_EQ(s.as<float>()[i * 5 + j], at(2 * i, 2 * j));
  // Broadcast of row 0: [4, 10] with strides [0, 1].
  Tensor b = to_contiguous_f32(TensorView(base, dt, {4, 10}, {0, 1}));
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < cols; ++j) ASSERT_EQ(b.as<float>()[i * cols + j], at(0, j));
  // 0-d view of element (2, 3).
  Tensor z = to_contiguous_f32(TensorView(base + (2 * cols + 3) * sizeof(T), dt, {}));
  ASSERT_EQ(z.numel(), 1);
  ASSERT_EQ(z.as<float>()[0], at(2, 3));
}

}  // namespace

TEST(Tensor, ToContiguousF32) {
  std::mt19937 gen(mqtest::kSeed + 60);
  check_to_contiguous<float>(DType::f32, gen);
  check_to_contiguous<double>(DType::f64, gen);
  check_to_contiguous<int8_t>(DType::i8, gen);
  check_to_contiguous<uint8_t>(DType::u8, gen);
  check_to_contiguous<int16_t>(DType::i16, gen);
  check_to_contiguous<int32_t>(DType::i32, gen);
  check_to_contiguous<int64_t>(DType::i64, gen);
}

TEST(Tensor, ToContiguousF32HalfAndBool) {
  std::mt19937 gen(mqtest::kSeed + 61);
  std::vector<uint16_t> h(24);
  for (auto& v : h) v = static_cast<uint16_t>(gen() & 0x7bff);  // finite, non-negative
  for (DType dt : {DType::f16, DType::bf16}) {
    const Tensor t = to_contiguous_f32(TensorView(h.data(), dt, {6, 4}, {1, 6}));  // transposed [4, 6] buffer
    for (int64_t i = 0; i < 6; ++i) {
      for (int64_t j = 0; j < 4; ++j) {
        const uint16_t bits = h[static_cast<std::size_t>(j * 6 + i)];
        ASSERT_EQ(t.as<float>()[i * 4 + j], dt == DType::f16 ? f16_bits_to_f32(bits) : bf16_bits_to_f32(bits));
      }
    }
  }
  const uint8_t flags[] = {0, 1, 2, 255, 0, 0, 17, 1};
  const Tensor b = to_contiguous_f32(TensorView(flags, DType::boolean, {8}));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(b.as<float>()[i], flags[i] ? 1.0f : 0.0f);
  // Packed int4 has no per-element address: not convertible this way.
  const uint8_t packed[4] = {};
  EXPECT_TRUE(mqtest::throws_error([&] { to_contiguous_f32(TensorView(packed, DType::int4_packed, {8})); },
                                   ErrorKind::unsupported));
  // Empty views convert to empty tensors.
  EXPECT_EQ(to_contiguous_f32(TensorView(nullptr, DType::i32, {0, 3})).shape(), (Shape{0, 3}));
}
