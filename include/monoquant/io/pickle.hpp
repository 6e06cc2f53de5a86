// A pickle reader that executes nothing. It implements the opcodes torch.save
// emits (protocol 2, plus the few protocol-4 ones that other writers use) and
// resolves globals against an allowlist equivalent to
// torch.load(weights_only=True); any other global is refused with an error
// that names it. Objects live in an arena and refer to each other by index,
// so hostile nesting cannot overflow the stack on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "monoquant/io/file_dtype.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant::io {

struct PickleObject {
  enum class Kind : uint8_t { none, boolean, integer, floating, string, bytes, tuple, list, dict, tensor, global, storage };
  Kind kind = Kind::none;
  int64_t i = 0;                // boolean, integer, tensor index, storage index
  double f = 0;                 // floating
  std::string s;                // string, bytes, global ("module.name")
  std::vector<uint32_t> items;  // tuple, list; dict: key, value, key, value, ...
};

struct PickledStorage {
  std::string key;       // data/<key> in the archive
  FileDType dtype;       // element type of the storage (u8 for UntypedStorage)
  int64_t numel = 0;     // elements of `dtype`
  std::string location;  // "cpu", "cuda:0", ...
};

struct PickledTensor {
  uint32_t storage = 0;  // index into Unpickled::storages
  FileDType dtype;
  int64_t storage_offset = 0;  // elements of dtype
  Shape shape, strides;
  bool requires_grad = false;
  bool is_parameter = false;
};

struct Unpickled {
  std::vector<PickleObject> objects;
  uint32_t root = 0;
  std::vector<PickledStorage> storages;
  std::vector<PickledTensor> tensors;
};

// Errors are ErrorKind::format starting with `label` (refused globals are
// named: "refused global 'os.system'"), or unsupported for allowlisted
// torch features monoquant does not rebuild (sparse, quantized tensors).
Unpickled unpickle(const std::byte* data, std::size_t size, const std::string& label);

}  // namespace monoquant::io
