// safetensors (huggingface/safetensors): reading with the reference
// implementation's validation, writing in the reference writer's layout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "monoquant/io/checkpoint.hpp"

namespace monoquant::io {

inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

struct SafetensorsEntry {
  std::string name;
  FileDType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the byte buffer
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // sorted by offset
  std::map<std::string, std::string> metadata;
  bool has_metadata = false;
};

// Validates the JSON header against a byte buffer of `buffer_size` bytes:
// UTF-8 JSON object, no duplicate keys, known dtypes, shape x dtype without
// overflow, whole bytes, offsets contiguous from 0, non-overlapping and
// covering the buffer exactly, __metadata__ string -> string. Errors are
// ErrorKind::format and start with `label`.
SafetensorsHeader parse_safetensors_header(std::string_view json, uint64_t buffer_size, const std::string& label);

// A whole file in memory (8-byte length, header, buffer).
SafetensorsHeader parse_safetensors(const std::byte* data, std::size_t size, const std::string& label);

// Maps the file and returns zero-copy records (valid while the Checkpoint lives).
Checkpoint read_safetensors(const std::string& path);

// The header JSON (without padding) for tensors laid out by the reference
// rule: dtype descending, then name; offsets consecutive from 0. `order`
// receives the indices of `tensors` in file order.
std::string safetensors_header_json(const std::vector<TensorToWrite>& tensors,
                                    const std::map<std::string, std::string>& metadata,
                                    std::vector<std::size_t>* order);

// A file laid out before any tensor data exists (streaming writers): the
// padded header and, per spec, where its bytes go.
struct TensorSpec {
  std::string name;
  FileDType dtype = FileDType::f32;
  Shape shape;
};

struct SafetensorsLayout {
  std::string header;             // padded with spaces to a multiple of 8
  std::vector<uint64_t> offsets;  // per spec (input order): absolute file offset of its first byte
  std::vector<uint64_t> sizes;    // per spec: bytes
  uint64_t file_size = 0;         // 8 + header + data
};

// Same layout rule and checks as safetensors_header_json.
SafetensorsLayout safetensors_layout(const std::vector<TensorSpec>& specs,
                                     const std::map<std::string, std::string>& metadata);

// Writes atomically. Names must be unique and non-empty and not
// "__metadata__"; dtypes must have a safetensors name.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace monoquant::io
