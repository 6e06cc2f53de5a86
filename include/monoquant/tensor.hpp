// Tensors as the library sees them: a view over memory somebody else owns
// (a torch tensor, an mmapped file), or a view plus the Buffer that owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "monoquant/buffer.hpp"
#include "monoquant/dtype.hpp"

namespace monoquant {

using Shape = std::vector<int64_t>;

int64_t numel_of(std::span<const int64_t> shape);
std::string shape_to_string(std::span<const int64_t> shape);
// Row-major strides, in elements.
Shape contiguous_strides(std::span<const int64_t> shape);

// Bytes a contiguous tensor of this dtype and shape occupies. int4_packed
// rows (of the last dimension) start on a byte: rows * ceil(K / 2).
std::size_t tensor_storage_bytes(DType dtype, const Shape& shape);

// A non-owning view. Strides are in elements (as in torch), may be any
// non-negative value, and data may have any alignment. int4_packed views are
// always contiguous, packed per row of the last dimension.
struct TensorView {
  const std::byte* data = nullptr;
  DType dtype = DType::f32;
  Shape shape;
  Shape strides;

  TensorView() = default;
  TensorView(const void* data, DType dtype, Shape shape);  // contiguous
  TensorView(const void* data, DType dtype, Shape shape, Shape strides);

  int64_t dim() const { return static_cast<int64_t>(shape.size()); }
  int64_t numel() const { return numel_of(shape); }
  bool is_contiguous() const;
  // Throws invalid_argument unless the view describes usable memory.
  void validate(const char* what) const;
};

// A tensor that owns its memory, always contiguous.
class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape);  // uninitialised
  static Tensor zeros(DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return numel_of(shape_); }
  std::size_t nbytes() const { return buffer_.size(); }
  std::byte* data() { return buffer_.data(); }
  const std::byte* data() const { return buffer_.data(); }
  template <class T>
  T* as() { return buffer_.as<T>(); }
  template <class T>
  const T* as() const { return buffer_.as<T>(); }
  TensorView view() const { return TensorView(buffer_.data(), dtype_, shape_); }

 private:
  DType dtype_ = DType::f32;
  Shape shape_;
  Buffer buffer_;
};

// Copies any view (any dtype convertible to float, any strides) into a new
// contiguous float32 tensor. Used before quantizing non-f32 or strided input.
Tensor to_contiguous_f32(const TensorView& view);

}  // namespace monoquant
