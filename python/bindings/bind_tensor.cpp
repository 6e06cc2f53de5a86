#include <string>

#include "convert.hpp"
#include "monoquant/error.hpp"
#include "monoquant/quantize.hpp"

namespace monoquant::python {
namespace {

DType from_dlpack(nb::dlpack::dtype t, const char* what) {
  using nb::dlpack::dtype_code;
  const auto code = static_cast<dtype_code>(t.code);
  if (t.lanes == 1) {
    if (code == dtype_code::Float && t.bits == 32) return DType::f32;
    if (code == dtype_code::Float && t.bits == 16) return DType::f16;
    if (code == dtype_code::Float && t.bits == 64) return DType::f64;
    if (code == dtype_code::Bfloat && t.bits == 16) return DType::bf16;
    if (code == dtype_code::Int && t.bits == 8) return DType::i8;
    if (code == dtype_code::Int && t.bits == 16) return DType::i16;
    if (code == dtype_code::Int && t.bits == 32) return DType::i32;
    if (code == dtype_code::Int && t.bits == 64) return DType::i64;
    if (code == dtype_code::UInt && t.bits == 8) return DType::u8;
    if (code == dtype_code::Bool) return DType::boolean;
  }
  throw_unsupported(std::string(what) + ": unsupported element type (DLPack code " + std::to_string(t.code) + ", " +
                    std::to_string(t.bits) + " bits)");
}

nb::dlpack::dtype to_dlpack(DType d) {
  using nb::dlpack::dtype_code;
  auto make = [](dtype_code c, int bits) {
    nb::dlpack::dtype t;
    t.code = static_cast<uint8_t>(c);
    t.bits = static_cast<uint8_t>(bits);
    t.lanes = 1;
    return t;
  };
  switch (d) {
    case DType::f32: return make(dtype_code::Float, 32);
    case DType::f16: return make(dtype_code::Float, 16);
    case DType::bf16: return make(dtype_code::Bfloat, 16);
    case DType::f64: return make(dtype_code::Float, 64);
    case DType::i8: return make(dtype_code::Int, 8);
    case DType::u8: return make(dtype_code::UInt, 8);
    case DType::i16: return make(dtype_code::Int, 16);
    case DType::i32: return make(dtype_code::Int, 32);
    case DType::i64: return make(dtype_code::Int, 64);
    case DType::boolean: return make(dtype_code::Bool, 8);
    case DType::int4_packed: return make(dtype_code::UInt, 8);
  }
  return make(dtype_code::UInt, 8);
}

}  // namespace

TensorView to_view(const AnyArray& array, const char* what) {
  TensorView v;
  v.dtype = from_dlpack(array.dtype(), what);
  v.data = static_cast<const std::byte*>(array.data());
  v.shape.resize(array.ndim());
  v.strides.resize(array.ndim());
  for (size_t i = 0; i < array.ndim(); ++i) {
    v.shape[i] = static_cast<int64_t>(array.shape(i));
    v.strides[i] = array.stride(i);
  }
  v.validate(what);
  return v;
}

nb::object to_torch(Tensor tensor) {
  Shape shape = tensor.shape();
  const DType dtype = tensor.dtype();
  if (dtype == DType::int4_packed) {
    const RowLayout rl = row_layout(shape);
    shape = {rl.rows, (rl.row_length + 1) / 2};
  }
  auto* owned = new Tensor(std::move(tensor));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<Tensor*>(p); });
  std::vector<size_t> dims(shape.begin(), shape.end());
  nb::ndarray<nb::pytorch, nb::device::cpu> array(owned->data(), dims.size(), dims.data(), owner, nullptr,
                                                   to_dlpack(dtype));
  return nb::cast(array);
}

}  // namespace monoquant::python
