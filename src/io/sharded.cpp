// Model directories: model.safetensors or shards + model.safetensors.index.json
// (FORMATS.md 1.7), and config.json's quantization_config.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/io/atomic_file.hpp"
#include "monoquant/io/mapped_file.hpp"
#include "monoquant/io/pytorch.hpp"
#include "monoquant/io/reader.hpp"
#include "monoquant/io/safetensors.hpp"
#include "monoquant/io/stream_writer.hpp"

namespace monoquant::io {
namespace {

using json = nlohmann::json;

bool is_directory(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

std::string read_text(const std::string& path, std::size_t limit) {
  auto f = MappedFile::open(path);
  if (f->size() > limit) throw_format_error(path + ": larger than " + std::to_string(limit) + " bytes");
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

json parse_json_file(const std::string& path) {
  try {
    return json::parse(read_text(path, 256u << 20));
  } catch (const json::exception& e) {
    throw_format_error(path + ": invalid JSON (" + e.what() + ")");
  }
}

bool safe_shard_name(const std::string& n) {
  return !n.empty() && n.find('/') == std::string::npos && n != "." && n != "..";
}

}  // namespace

CheckpointKind detect_checkpoint_kind(const std::string& path) {
  if (is_directory(path)) return CheckpointKind::directory;
  auto f = MappedFile::open(path);
  // The zip signature, or the legacy format's pickled magic number
  // (PROTO 2, LONG1 0x1950a86a20f9469cfc6c). A safetensors file starts with
  // its header length, which can begin with any byte.
  static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if ((f->size() >= 4 && std::memcmp(f->data(), "PK\x03\x04", 4) == 0) ||
      (f->size() >= sizeof legacy && std::memcmp(f->data(), legacy, sizeof legacy) == 0)) {
    return CheckpointKind::pytorch;
  }
  return CheckpointKind::safetensors;
}

Checkpoint read_safetensors_directory(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (!exists(index_path)) {
    if (exists(dir + "/model.safetensors")) return read_safetensors(dir + "/model.safetensors");
    throw_format_error(dir + ": neither model.safetensors.index.json nor model.safetensors found");
  }
  const json index = parse_json_file(index_path);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw_format_error(index_path + ": no weight_map object");
  }
  std::map<std::string, std::set<std::string>> by_shard;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string() || !safe_shard_name(shard.get<std::string>())) {
      throw_format_error(index_path + ": tensor '" + name + "' maps to an invalid shard name");
    }
    by_shard[shard.get<std::string>()].insert(name);
  }
  Checkpoint out;
  std::set<std::string> seen;
  for (const auto& [shard, names] : by_shard) {
    Checkpoint part = read_safetensors(dir + "/" + shard);
    for (auto& t : part.tensors) {
      if (!names.count(t.name)) {
        throw_format_error(dir + "/" + shard + ": tensor '" + t.name + "' is not listed for this shard in the index");
      }
      if (!seen.insert(t.name).second) throw_format_error(dir + ": tensor '" + t.name + "' appears in two shards");
      t.storage_key = shard + ":" + t.name;
      out.tensors.push_back(std::move(t));
    }
    for (const auto& n : names) {
      if (!part.find(n) && !seen.count(n)) throw_format_error(index_path + ": tensor '" + n + "' is missing from " + shard);
    }
    for (auto& [k, v] : part.metadata) out.metadata.emplace(k, v);
    for (auto& o : part.owners) out.owners.push_back(std::move(o));
  }
  return out;
}

void write_safetensors_directory(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                                 const std::map<std::string, std::string>& metadata, uint64_t max_shard_bytes) {
  // The streaming writer owns the directory layout (shard names, split, index, stale files).
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  CheckpointStreamWriter w(dir, OutputKind::directory, std::move(specs), metadata, max_shard_bytes);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    w.write(i, tensors[i].data, checked_nbytes(tensors[i].dtype, tensors[i].shape, tensors[i].name));
  }
  w.commit();
}

void write_compressed(const std::string& path, const std::vector<TensorToWrite>& inputs,
                      const std::map<std::string, CtTensorPlan>& plan, const std::map<std::string, std::string>& metadata,
                      uint64_t max_shard_bytes) {
  const CompressedTensors c = compress_tensors(inputs, plan);
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  meta["monoquant"] = c.monoquant_info;
  auto ends_with = [&](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".pt") || ends_with(".pth") || ends_with(".bin")) {
    meta["quantization_config"] = c.quantization_config;
    write_pt(path, c.tensors, meta);
    return;
  }
  if (ends_with(".safetensors")) {
    meta["quantization_config"] = c.quantization_config;
    write_safetensors(path, c.tensors, meta);
    return;
  }
  write_safetensors_directory(path, c.tensors, meta, max_shard_bytes);
  json config = json::object();
  const std::string config_path = path + "/config.json";
  if (exists(config_path)) config = parse_json_file(config_path);
  if (!config.is_object()) throw_format_error(config_path + ": not a JSON object");
  config["quantization_config"] = json::parse(c.quantization_config);
  write_file_atomic(config_path, config.dump(2) + "\n");
}

CheckpointContents read_checkpoint(const std::string& path) {
  CheckpointContents c;
  switch (detect_checkpoint_kind(path)) {
    case CheckpointKind::directory: c.checkpoint = read_safetensors_directory(path); break;
    case CheckpointKind::safetensors: c.checkpoint = read_safetensors(path); break;
    case CheckpointKind::pytorch: {
      PtContents pt = read_pt(path);
      c.checkpoint = std::move(pt.checkpoint);
      c.pickle = std::move(pt.pickle);
      c.record_of = std::move(pt.record_of);
      break;
    }
  }
  return c;
}

std::vector<std::pair<std::string, Tensor>> decompress_checkpoint(const std::string& path) {
  std::string config;
  Checkpoint ck;
  if (is_directory(path)) {
    ck = read_safetensors_directory(path);
    const json cfg = parse_json_file(path + "/config.json");
    if (!cfg.is_object() || !cfg.contains("quantization_config")) {
      throw_format_error(path + "/config.json: no quantization_config");
    }
    config = cfg["quantization_config"].dump();
  } else {
    ck = detect_checkpoint_kind(path) == CheckpointKind::pytorch ? read_pt(path).checkpoint : read_safetensors(path);
    const auto it = ck.metadata.find("quantization_config");
    if (it == ck.metadata.end()) throw_format_error(path + ": no quantization_config in __metadata__");
    config = it->second;
  }
  return decompress_tensors(ck, config);
}

}  // namespace monoquant::io
