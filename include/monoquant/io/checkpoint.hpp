// What every checkpoint reader returns and every writer takes: named tensors
// over memory that someone keeps alive (a mapped file, a caller's buffers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "monoquant/io/file_dtype.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant::io {

// One tensor as stored: a storage (a byte range) plus offset/shape/strides
// in elements, as torch describes tensors. safetensors tensors are their own
// contiguous storage (offset 0); .pt tensors may share a storage and be any
// strided view into it. Every element addressed lies inside the storage
// (readers check this).
struct TensorRecord {
  std::string name;
  FileDType dtype = FileDType::f32;
  Shape shape;
  Shape strides;               // elements
  int64_t storage_offset = 0;  // elements
  const std::byte* storage = nullptr;
  std::size_t storage_bytes = 0;
  std::string storage_key;     // equal keys = the same storage (shared between tensors)
  bool requires_grad = false;  // .pt only
  bool is_parameter = false;   // .pt only: rebuilt through torch.nn.Parameter

  int64_t numel() const { return numel_of(shape); }
  bool is_contiguous() const;
  const std::byte* data() const { return storage + static_cast<std::size_t>(storage_offset) * element_size(dtype); }
  // Bytes of a contiguous copy.
  std::size_t nbytes() const;
  // A core view; throws unsupported for dtypes the core does not compute with.
  TensorView view() const;
};

// A set of tensors read from one file or model directory. Owns (shares) the
// memory the records point into.
struct Checkpoint {
  std::vector<TensorRecord> tensors;           // file order
  std::map<std::string, std::string> metadata;  // safetensors __metadata__ (union over shards)
  std::vector<std::shared_ptr<const void>> owners;

  const TensorRecord* find(const std::string& name) const;
};

// One tensor to write: contiguous bytes in row-major order.
struct TensorToWrite {
  std::string name;
  FileDType dtype = FileDType::f32;
  Shape shape;
  const std::byte* data = nullptr;  // nbytes(dtype, shape) bytes

  static TensorToWrite from(const std::string& name, const TensorView& v);  // v must be contiguous
};

// `s` with every byte outside printable ASCII written as \xNN: for error
// messages that quote untrusted bytes (they must stay valid UTF-8).
std::string printable(std::string_view s);

// Bytes of a contiguous tensor, checked for overflow (throws format naming `what`).
std::size_t checked_nbytes(FileDType dtype, const Shape& shape, const std::string& what);

}  // namespace monoquant::io
