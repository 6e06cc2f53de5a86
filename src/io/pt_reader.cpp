// torch.save zip archives: <prefix>/data.pkl + <prefix>/data/<key> records.
#include <cstring>
#include <functional>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "monoquant/error.hpp"
#include "monoquant/io/mapped_file.hpp"
#include "monoquant/io/pytorch.hpp"
#include "monoquant/io/zip.hpp"

namespace monoquant::io {
namespace {

using Kind = PickleObject::Kind;

// Names tensors by their path in the object tree; visits each container once
// so shared or cyclic structures cannot make this blow up.
void name_tensors(const Unpickled& u, std::vector<std::string>& names, const std::string& label) {
  std::unordered_set<uint32_t> seen;
  std::function<void(uint32_t, const std::string&, int)> walk = [&](uint32_t i, const std::string& path, int depth) {
    if (depth > 256) throw_format_error(label + ": pickle nested more than 256 levels deep");
    const auto& o = u.objects[i];
    if (o.kind == Kind::tensor) {
      auto& n = names[static_cast<std::size_t>(o.i)];
      if (n.empty()) n = path;
      return;
    }
    if (o.kind != Kind::dict && o.kind != Kind::list && o.kind != Kind::tuple) return;
    if (!seen.insert(i).second) return;
    const std::string prefix = path.empty() ? "" : path + ".";
    if (o.kind == Kind::dict) {
      for (std::size_t k = 0; k + 1 < o.items.size(); k += 2) {
        const auto& key = u.objects[o.items[k]];
        std::string ks = key.kind == Kind::string ? key.s : key.kind == Kind::integer ? std::to_string(key.i) : "?";
        walk(o.items[k + 1], prefix + ks, depth + 1);
      }
    } else {
      for (std::size_t k = 0; k < o.items.size(); ++k) walk(o.items[k], prefix + std::to_string(k), depth + 1);
    }
  };
  walk(u.root, "", 0);
}

}  // namespace

PtContents read_pt_memory(const std::byte* data, std::size_t size, const std::string& label) {
  if (size >= 2 && static_cast<uint8_t>(data[0]) == 0x80) {
    throw_unsupported(label + ": legacy (pre-1.6, non-zip) torch.save format; load it with torch and save it again "
                      "with a current torch.save, or save it as safetensors");
  }
  if (size >= 262 && std::memcmp(data + 257, "ustar", 5) == 0) {
    throw_unsupported(label + ": legacy tar-based torch.save format; re-save it with a current torch.save");
  }
  if (size < 4 || std::memcmp(data, "PK\x03\x04", 4) != 0) {
    throw_format_error(label + ": not a PyTorch checkpoint (no zip signature)");
  }
  const auto entries = read_zip_directory(data, size, label);
  if (entries.empty()) throw_format_error(label + ": empty zip archive");
  const auto slash = entries[0].name.find('/');
  if (slash == std::string::npos) throw_format_error(label + ": zip entries are not under an archive directory");
  const std::string prefix = entries[0].name.substr(0, slash + 1);
  std::unordered_map<std::string, const ZipEntry*> by_name;
  for (const auto& e : entries) by_name[e.name] = &e;
  auto find = [&](const std::string& n) -> const ZipEntry* {
    const auto it = by_name.find(prefix + n);
    return it == by_name.end() ? nullptr : it->second;
  };
  if (const ZipEntry* bo = find("byteorder")) {
    const std::string order(reinterpret_cast<const char*>(data + bo->data_offset), static_cast<std::size_t>(bo->size));
    if (order == "big") throw_unsupported(label + ": big-endian checkpoint");
    if (order != "little") throw_format_error(label + ": unknown byteorder record '" + printable(order.substr(0, 16)) + "'");
  }
  const ZipEntry* pkl = find("data.pkl");
  if (!pkl) throw_format_error(label + ": no " + prefix + "data.pkl in the archive");
  PtContents out;
  out.pickle = unpickle(data + pkl->data_offset, static_cast<std::size_t>(pkl->size), label + ": " + prefix + "data.pkl");
  const Unpickled& u = out.pickle;
  std::vector<const ZipEntry*> storage_entries;
  for (const auto& s : u.storages) {
    const ZipEntry* e = find("data/" + s.key);
    if (!e) throw_format_error(label + ": storage '" + s.key + "' has no record data/" + s.key);
    const uint64_t es = element_size(s.dtype);
    if (static_cast<uint64_t>(s.numel) > std::numeric_limits<uint64_t>::max() / es || e->size != static_cast<uint64_t>(s.numel) * es) {
      throw_format_error(label + ": storage '" + s.key + "' declares " + std::to_string(s.numel) + " elements of " +
                         std::to_string(es) + " bytes but its record has " + std::to_string(e->size) + " bytes");
    }
    storage_entries.push_back(e);
  }
  // monoquant's own .pt files carry "__metadata__": {str: str} at the top.
  const auto& root = u.objects[u.root];
  if (root.kind == Kind::dict) {
    for (std::size_t k = 0; k + 1 < root.items.size(); k += 2) {
      const auto& key = u.objects[root.items[k]];
      const auto& value = u.objects[root.items[k + 1]];
      if (key.kind != Kind::string || key.s != "__metadata__" || value.kind != Kind::dict) continue;
      for (std::size_t m = 0; m + 1 < value.items.size(); m += 2) {
        const auto& mk = u.objects[value.items[m]];
        const auto& mv = u.objects[value.items[m + 1]];
        if (mk.kind == Kind::string && mv.kind == Kind::string) out.checkpoint.metadata[mk.s] = mv.s;
      }
    }
  }
  std::vector<std::string> names(u.tensors.size());
  name_tensors(u, names, label);
  out.checkpoint.tensors.reserve(u.tensors.size());
  for (std::size_t i = 0; i < u.tensors.size(); ++i) {
    const PickledTensor& t = u.tensors[i];
    const ZipEntry* e = storage_entries[t.storage];
    TensorRecord r;
    r.name = names[i].empty() ? "_tensor_" + std::to_string(i) : names[i];
    r.dtype = t.dtype;
    if (bits_of(t.dtype) < 8) throw_unsupported(label + ": tensor '" + r.name + "' has a sub-byte dtype");
    r.shape = t.shape;
    r.strides = t.strides;
    r.storage_offset = t.storage_offset;
    r.storage = data + e->data_offset;
    r.storage_bytes = static_cast<std::size_t>(e->size);
    r.storage_key = u.storages[t.storage].key;
    r.requires_grad = t.requires_grad;
    r.is_parameter = t.is_parameter;
    // Every addressed element must lie inside the storage.
    const uint64_t es = element_size(t.dtype);
    const uint64_t capacity = e->size / es;
    uint64_t last = static_cast<uint64_t>(t.storage_offset);
    bool empty = false;
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (t.shape[d] == 0) empty = true;
    }
    if (!empty) {
      for (std::size_t d = 0; d < t.shape.size(); ++d) {
        const uint64_t extent = static_cast<uint64_t>(t.shape[d] - 1);
        const uint64_t stride = static_cast<uint64_t>(t.strides[d]);
        if (stride != 0 && extent > (std::numeric_limits<uint64_t>::max() - last) / stride) {
          throw_format_error(label + ": tensor '" + r.name + "' addresses overflow");
        }
        last += extent * stride;
      }
    }
    if (empty ? last > capacity : last >= capacity) {
      throw_format_error(label + ": tensor '" + r.name + "' (" + std::string(torch_name(t.dtype)) + " " +
                         shape_to_string(t.shape) + ", offset " + std::to_string(t.storage_offset) +
                         ") reaches past the end of storage '" + r.storage_key + "' (" + std::to_string(capacity) +
                         " elements)");
    }
    out.record_of.push_back(out.checkpoint.tensors.size());
    out.checkpoint.tensors.push_back(std::move(r));
  }
  return out;
}

PtContents read_pt(const std::string& path) {
  auto file = MappedFile::open(path);
  PtContents c = read_pt_memory(file->data(), file->size(), path);
  c.checkpoint.owners.push_back(file);
  return c;
}

}  // namespace monoquant::io
