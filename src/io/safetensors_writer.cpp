// safetensors writing in the reference writer's layout (tensor.rs `prepare`):
// dtype descending, then name; header padded with spaces to a multiple of 8,
// so every tensor starts aligned for its dtype.
#include <algorithm>
#include <numeric>
#include <set>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/io/atomic_file.hpp"
#include "monoquant/io/safetensors.hpp"

namespace monoquant::io {

std::string safetensors_header_json(const std::vector<TensorToWrite>& tensors,
                                    const std::map<std::string, std::string>& metadata,
                                    std::vector<std::size_t>* order_out) {
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      throw_invalid_argument("safetensors: invalid tensor name '" + t.name + "'");
    }
    if (!names.insert(t.name).second) throw_invalid_argument("safetensors: duplicate tensor name '" + t.name + "'");
    if (safetensors_name(t.dtype).empty()) {
      throw_unsupported("safetensors: tensor '" + t.name + "' has dtype " + std::string(torch_name(t.dtype)) +
                        ", which safetensors cannot store");
    }
  }
  std::vector<std::size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (tensors[a].dtype != tensors[b].dtype) return tensors[a].dtype > tensors[b].dtype;
    return tensors[a].name < tensors[b].name;
  });
  using json = nlohmann::json;
  std::string out = "{";
  bool first = true;
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    out += "\"__metadata__\":" + m.dump(-1, ' ', false, json::error_handler_t::strict);
    first = false;
  }
  uint64_t offset = 0;
  for (std::size_t i : order) {
    const auto& t = tensors[i];
    const std::size_t bytes = checked_nbytes(t.dtype, t.shape, "safetensors: tensor '" + t.name + "'");
    if (bytes > 0 && t.data == nullptr) throw_invalid_argument("safetensors: tensor '" + t.name + "' has no data");
    if (!first) out += ",";
    first = false;
    out += json(t.name).dump(-1, ' ', false, json::error_handler_t::strict);
    out += ":{\"dtype\":\"" + std::string(safetensors_name(t.dtype)) + "\",\"shape\":[";
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (d) out += ",";
      out += std::to_string(t.shape[d]);
    }
    out += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  out += "}";
  if (order_out) *order_out = std::move(order);
  return out;
}

SafetensorsLayout safetensors_layout(const std::vector<TensorSpec>& specs,
                                     const std::map<std::string, std::string>& metadata) {
  // The header rule needs no data: describe each spec as an empty-data tensor
  // (checked for names and dtypes there) and lay them out.
  static const std::byte placeholder{};
  std::vector<TensorToWrite> views;
  views.reserve(specs.size());
  for (const auto& s : specs) views.push_back(TensorToWrite{s.name, s.dtype, s.shape, &placeholder});
  std::vector<std::size_t> order;
  SafetensorsLayout layout;
  try {
    layout.header = safetensors_header_json(views, metadata, &order);
  } catch (const nlohmann::json::exception& e) {
    throw_invalid_argument(std::string("tensor names and metadata must be valid UTF-8 (") + e.what() + ")");
  }
  layout.header.append((8 - layout.header.size() % 8) % 8, ' ');
  if (layout.header.size() > kSafetensorsMaxHeader) throw_invalid_argument("safetensors header too large");
  layout.offsets.assign(specs.size(), 0);
  layout.sizes.assign(specs.size(), 0);
  uint64_t offset = 8 + layout.header.size();
  for (std::size_t i : order) {
    layout.offsets[i] = offset;
    layout.sizes[i] = checked_nbytes(specs[i].dtype, specs[i].shape, specs[i].name);
    offset += layout.sizes[i];
  }
  layout.file_size = offset;
  return layout;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<std::size_t> order;
  std::string header;
  try {
    header = safetensors_header_json(tensors, metadata, &order);
  } catch (const nlohmann::json::exception& e) {
    throw_invalid_argument(path + ": tensor names and metadata must be valid UTF-8 (" + e.what() + ")");
  }
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kSafetensorsMaxHeader) throw_invalid_argument(path + ": safetensors header too large");
  AtomicFile file(path);
  unsigned char len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  file.write(len, 8);
  file.write(header.data(), header.size());
  for (std::size_t i : order) {
    const auto& t = tensors[i];
    file.write(t.data, checked_nbytes(t.dtype, t.shape, t.name));
  }
  file.commit();
}

}  // namespace monoquant::io
