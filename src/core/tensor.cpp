#include "monoquant/tensor.hpp"
#include "monoquant/thread_pool.hpp"
#include <bit>

#include <cstring>
#include <limits>

#include "monoquant/error.hpp"
#include "monoquant/half.hpp"

namespace monoquant {

int64_t numel_of(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw_invalid_argument("negative dimension in shape " + shape_to_string(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      throw_invalid_argument("shape " + shape_to_string(shape) + " has more elements than fit in int64");
    }
    n *= d;
  }
  return n;
}

std::string shape_to_string(std::span<const int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Shape contiguous_strides(std::span<const int64_t> shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i] == 0 ? 1 : shape[i];
  }
  return strides;
}

TensorView::TensorView(const void* data, DType dtype, Shape shape)
    : data(static_cast<const std::byte*>(data)), dtype(dtype), shape(std::move(shape)) {
  strides = contiguous_strides(this->shape);
}

TensorView::TensorView(const void* data, DType dtype, Shape shape, Shape strides)
    : data(static_cast<const std::byte*>(data)), dtype(dtype), shape(std::move(shape)),
      strides(std::move(strides)) {}

bool TensorView::is_contiguous() const {
  // An empty tensor has no elements to be out of place (as in torch); its
  // contiguous_strides would not pass the check below.
  for (int64_t d : shape) {
    if (d == 0) return true;
  }
  int64_t expected = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;  // any stride is fine for a unit dimension
    if (strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

void TensorView::validate(const char* what) const {
  if (strides.size() != shape.size()) {
    throw_invalid_argument(std::string(what) + ": " + std::to_string(strides.size()) + " strides for " +
                           std::to_string(shape.size()) + " dimensions");
  }
  const int64_t n = numel_of(shape);
  for (int64_t s : strides) {
    if (s < 0) throw_invalid_argument(std::string(what) + ": negative strides are not supported");
  }
  if (n > 0 && data == nullptr) throw_invalid_argument(std::string(what) + ": null data for a non-empty tensor");
  if (dtype == DType::int4_packed && !is_contiguous()) {
    throw_invalid_argument(std::string(what) + ": packed int4 tensors must be contiguous");
  }
}

std::size_t tensor_storage_bytes(DType dtype, const Shape& shape) {
  const int64_t n = numel_of(shape);
  if (dtype != DType::int4_packed) return storage_bytes(dtype, static_cast<std::size_t>(n));
  // Packed per row of the last dimension, so every row starts on a byte.
  const int64_t k = shape.empty() ? 1 : shape.back();
  if (n == 0) return 0;
  return static_cast<std::size_t>(n / k) * static_cast<std::size_t>((k + 1) / 2);
}

Tensor::Tensor(DType dtype, Shape shape)
    : dtype_(dtype), shape_(std::move(shape)), buffer_(tensor_storage_bytes(dtype_, shape_)) {}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t(dtype, std::move(shape));
  if (t.nbytes() != 0) std::memset(t.data(), 0, t.nbytes());
  return t;
}

namespace {

float load_as_float(const std::byte* p, DType dtype) {
  switch (dtype) {
    case DType::f32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::f64: { double v; std::memcpy(&v, p, 8); return static_cast<float>(v); }
    case DType::f16: { uint16_t v; std::memcpy(&v, p, 2); return f16_bits_to_f32(v); }
    case DType::bf16: { uint16_t v; std::memcpy(&v, p, 2); return bf16_bits_to_f32(v); }
    case DType::i8: return static_cast<float>(static_cast<int8_t>(*p));
    case DType::u8: return static_cast<float>(static_cast<uint8_t>(*p));
    case DType::boolean: return *p != std::byte{0} ? 1.0f : 0.0f;
    case DType::i16: { int16_t v; std::memcpy(&v, p, 2); return static_cast<float>(v); }
    case DType::i32: { int32_t v; std::memcpy(&v, p, 4); return static_cast<float>(v); }
    case DType::i64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<float>(v); }
    case DType::int4_packed: break;
  }
  throw_unsupported("cannot convert " + std::string(name_of(dtype)) + " elements to float32 one by one");
}

}  // namespace

Tensor to_contiguous_f32(const TensorView& view) {
  view.validate("to_contiguous_f32");
  Tensor out(DType::f32, view.shape);
  const int64_t n = view.numel();
  if (n == 0) return out;
  float* dst = out.as<float>();
  if (view.dtype == DType::f32 && view.is_contiguous()) {
    std::memcpy(dst, view.data, static_cast<std::size_t>(n) * 4);
    return out;
  }
  // Contiguous 16-bit floats (the usual checkpoint weights): one tight loop,
  // not the general odometer below (which costs ~10 ns per element).
  if ((view.dtype == DType::bf16 || view.dtype == DType::f16) && view.is_contiguous()) {
    const bool bf16 = view.dtype == DType::bf16;
    parallel_for(n, int64_t{1} << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        uint16_t h;
        std::memcpy(&h, view.data + 2 * i, 2);
        dst[i] = bf16 ? std::bit_cast<float>(static_cast<uint32_t>(h) << 16) : f16_bits_to_f32(h);
      }
    });
    return out;
  }
  const std::size_t elem = static_cast<std::size_t>(bits_of(view.dtype) / 8);
  const std::size_t nd = view.shape.size();
  std::vector<int64_t> index(nd, 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t offset = 0;
    for (std::size_t d = 0; d < nd; ++d) offset += index[d] * view.strides[d];
    dst[i] = load_as_float(view.data + static_cast<std::size_t>(offset) * elem, view.dtype);
    for (std::size_t d = nd; d-- > 0;) {  // odometer increment, last axis fastest
      if (++index[d] < view.shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

}  // namespace monoquant
