// safetensors reading. The checks and their order follow the reference
// reader (safetensors/src/tensor.rs, FORMATS.md 1.3); the file is untrusted.
#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/io/mapped_file.hpp"
#include "monoquant/io/safetensors.hpp"

namespace monoquant::io {
namespace {

using json = nlohmann::json;

constexpr int kMaxJsonDepth = 16;  // the schema needs 3; deeper input is hostile

[[noreturn]] void fail(const std::string& label, const std::string& what) {
  throw_format_error(label + ": invalid safetensors header: " + what);
}

uint64_t read_unsigned(const json& v, const std::string& label, const std::string& what) {
  if (!v.is_number_unsigned()) fail(label, what + " must be a non-negative integer, got " + v.dump());
  return v.get<uint64_t>();
}

json parse_json(std::string_view text, const std::string& label) {
  // A stack of the keys seen in each open object: duplicate keys are an
  // error in safetensors, and nlohmann would silently keep the last one.
  std::vector<std::set<std::string>> keys;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) fail(label, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    switch (event) {
      case json::parse_event_t::object_start: keys.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          fail(label, "duplicate key '" + parsed.get<std::string>() + "'");
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(label, "not valid UTF-8 JSON (" + printable(e.what()) + ")");
  }
}

}  // namespace

SafetensorsHeader parse_safetensors_header(std::string_view text, uint64_t buffer_size, const std::string& label) {
  const json root = parse_json(text, label);
  if (!root.is_object()) fail(label, "the header is not a JSON object");
  SafetensorsHeader header;
  header.entries.reserve(root.size());
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) fail(label, "__metadata__ must be an object of strings");
      header.has_metadata = true;
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) fail(label, "__metadata__ value of '" + k + "' is not a string: " + v.dump());
        header.metadata.emplace(k, v.get<std::string>());
      }
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    if (!value.is_object()) fail(label, what + " is not an object");
    SafetensorsEntry e;
    e.name = name;
    const auto dt = value.find("dtype");
    const auto sh = value.find("shape");
    const auto off = value.find("data_offsets");
    if (dt == value.end() || sh == value.end() || off == value.end()) {
      fail(label, what + " needs dtype, shape and data_offsets");
    }
    if (!dt->is_string()) fail(label, what + ": dtype must be a string");
    const auto parsed = parse_safetensors_dtype(dt->get<std::string>());
    if (!parsed) fail(label, what + ": unknown dtype '" + dt->get<std::string>() + "'");
    e.dtype = *parsed;
    if (!sh->is_array()) fail(label, what + ": shape must be an array");
    for (const auto& d : *sh) {
      const uint64_t v = read_unsigned(d, label, what + ": shape entry");
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail(label, what + ": dimension too large");
      e.shape.push_back(static_cast<int64_t>(v));
    }
    if (!off->is_array() || off->size() != 2) fail(label, what + ": data_offsets must be [begin, end]");
    e.begin = read_unsigned((*off)[0], label, what + ": data_offsets begin");
    e.end = read_unsigned((*off)[1], label, what + ": data_offsets end");
    header.entries.push_back(std::move(e));
  }
  std::sort(header.entries.begin(), header.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const auto& e : header.entries) {
    const std::string what = "tensor '" + e.name + "'";
    if (e.begin != expected || e.end < e.begin) {
      fail(label, what + " has data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                      "], expected to begin at " + std::to_string(expected) +
                      " (tensors must be contiguous, non-overlapping and start at 0)");
    }
    std::size_t bytes = 0;
    try {
      bytes = checked_nbytes(e.dtype, e.shape, what);
    } catch (const Error& err) {
      fail(label, err.what());
    }
    if (e.end - e.begin != bytes) {
      fail(label, what + ": " + std::string(safetensors_name(e.dtype)) + " " + shape_to_string(e.shape) + " needs " +
                      std::to_string(bytes) + " bytes but data_offsets span " + std::to_string(e.end - e.begin));
    }
    expected = e.end;
  }
  if (expected != buffer_size) {
    fail(label, "tensors cover " + std::to_string(expected) + " bytes but the data buffer has " +
                    std::to_string(buffer_size) + " (truncated file or trailing bytes)");
  }
  return header;
}

namespace {

struct Layout {
  uint64_t header_len;
  SafetensorsHeader header;
};

Layout parse_layout(const std::byte* data, std::size_t size, const std::string& label) {
  if (size < 8) throw_format_error(label + ": too small for a safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(data[i]);
  if (n > kSafetensorsMaxHeader) {
    throw_format_error(label + ": safetensors header length " + std::to_string(n) + " exceeds the limit of " +
                       std::to_string(kSafetensorsMaxHeader) + " bytes");
  }
  if (8 + n > size) {
    throw_format_error(label + ": safetensors header length " + std::to_string(n) + " runs past the end of the " +
                       std::to_string(size) + "-byte file");
  }
  std::string_view text(reinterpret_cast<const char*>(data + 8), static_cast<std::size_t>(n));
  return {n, parse_safetensors_header(text, size - 8 - n, label)};
}

}  // namespace

SafetensorsHeader parse_safetensors(const std::byte* data, std::size_t size, const std::string& label) {
  return parse_layout(data, size, label).header;
}

Checkpoint read_safetensors(const std::string& path) {
  auto file = MappedFile::open(path);
  Layout layout = parse_layout(file->data(), file->size(), path);
  Checkpoint ck;
  ck.metadata = std::move(layout.header.metadata);
  const std::byte* buffer = file->data() + 8 + layout.header_len;
  ck.tensors.reserve(layout.header.entries.size());
  for (auto& e : layout.header.entries) {
    TensorRecord r;
    r.name = std::move(e.name);
    r.dtype = e.dtype;
    r.strides = contiguous_strides(e.shape);
    r.shape = std::move(e.shape);
    r.storage = buffer + e.begin;
    r.storage_bytes = static_cast<std::size_t>(e.end - e.begin);
    r.storage_key = r.name;
    ck.tensors.push_back(std::move(r));
  }
  ck.owners.push_back(file);
  return ck;
}

}  // namespace monoquant::io
