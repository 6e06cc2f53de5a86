#include "monoquant/io/checkpoint.hpp"

#include <limits>

#include "monoquant/error.hpp"

namespace monoquant::io {

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(ch);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::size_t checked_nbytes(FileDType dtype, const Shape& shape, const std::string& what) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw_format_error(what + ": negative dimension " + std::to_string(d));
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d)) {
      throw_format_error(what + ": shape " + shape_to_string(shape) + " overflows");
    }
    n *= static_cast<uint64_t>(d);
  }
  const uint64_t bits = static_cast<uint64_t>(bits_of(dtype));
  if (n > std::numeric_limits<uint64_t>::max() / bits) {
    throw_format_error(what + ": shape " + shape_to_string(shape) + " x " + std::to_string(bits) + " bits overflows");
  }
  const uint64_t total = n * bits;
  if (total % 8 != 0) {
    throw_format_error(what + ": " + std::to_string(n) + " elements of " + std::to_string(bits) +
                       " bits do not fill whole bytes");
  }
  if (total / 8 > std::numeric_limits<std::size_t>::max() / 2) throw_format_error(what + ": tensor too large");
  return static_cast<std::size_t>(total / 8);
}

bool TensorRecord::is_contiguous() const {
  int64_t expected = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return numel() == 0;
    expected *= shape[i];
  }
  return true;
}

std::size_t TensorRecord::nbytes() const { return checked_nbytes(dtype, shape, name); }

TensorView TensorRecord::view() const {
  const auto core = to_core(dtype);
  if (!core) {
    throw_unsupported("tensor '" + name + "' has dtype " + std::string(torch_name(dtype)) +
                      ", which monoquant cannot compute with");
  }
  return TensorView(data(), *core, shape, strides);
}

const TensorRecord* Checkpoint::find(const std::string& name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

TensorToWrite TensorToWrite::from(const std::string& name, const TensorView& v) {
  if (!v.is_contiguous()) throw_invalid_argument("tensor '" + name + "' must be contiguous to be written");
  TensorToWrite t;
  t.name = name;
  t.dtype = from_core(v.dtype);
  t.shape = v.shape;
  if (v.dtype == DType::int4_packed) {
    // Packed per row of the last dimension (quantize.hpp, RowLayout).
    const int64_t k = v.shape.empty() ? 1 : v.shape.back();
    const int64_t rows = k == 0 ? 0 : v.numel() / k;
    t.shape = {rows, (k + 1) / 2};
  }
  t.data = v.data;
  return t;
}

}  // namespace monoquant::io
