#include "monoquant/io/stream_writer.hpp"

#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/io/pytorch.hpp"

namespace monoquant::io {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_directory(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string shard_file_name(std::size_t k, std::size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

// Weight files of an earlier checkpoint in `dir` that the new one does not
// use (transformers prefers model.safetensors over an index).
void remove_stale(const std::string& dir, const std::set<std::string>& keep) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    const bool shard = n.rfind("model-", 0) == 0 && n.find("-of-") != std::string::npos && ends_with(n, ".safetensors");
    if ((shard || n == "model.safetensors" || n == "model.safetensors.index.json") && !keep.count(n)) stale.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : stale) ::unlink((dir + "/" + n).c_str());
}

}  // namespace

OutputKind output_kind_for_path(const std::string& path) {
  if (ends_with(path, ".safetensors")) return OutputKind::safetensors;
  if (ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".bin")) return OutputKind::pytorch;
  return OutputKind::directory;
}

CheckpointStreamWriter::CheckpointStreamWriter(std::string path, OutputKind kind, std::vector<TensorSpec> specs,
                                               std::map<std::string, std::string> metadata, uint64_t max_shard_bytes)
    : path_(std::move(path)), kind_(kind), specs_(std::move(specs)), metadata_(std::move(metadata)) {
  written_.assign(specs_.size(), 0);
  where_.assign(specs_.size(), {0, 0});
  std::vector<uint64_t> sizes(specs_.size());
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    sizes[i] = checked_nbytes(specs_[i].dtype, specs_[i].shape, "tensor '" + specs_[i].name + "'");
    data_bytes_ += sizes[i];
  }
  if (kind_ == OutputKind::pytorch) {
    held_.resize(specs_.size());
    return;
  }
  metadata_["format"] = "pt";
  // Shards: greedy in input order, as transformers' shard_checkpoint does.
  std::vector<std::vector<std::size_t>> groups(1);
  if (kind_ == OutputKind::directory && max_shard_bytes > 0 && data_bytes_ > max_shard_bytes) {
    uint64_t in_shard = 0;
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      if (!groups.back().empty() && in_shard + sizes[i] > max_shard_bytes) {
        groups.emplace_back();
        in_shard = 0;
      }
      groups.back().push_back(i);
      in_shard += sizes[i];
    }
  } else {
    for (std::size_t i = 0; i < specs_.size(); ++i) groups[0].push_back(i);
  }
  // A directory that does not exist yet is created only at commit; until
  // then its files live, unnamed, in the parent directory (same filesystem),
  // so that a killed run leaves not even an empty directory behind.
  std::string temp_dir;
  if (kind_ == OutputKind::directory && !is_directory(path_)) {
    created_dir_ = true;
    const auto slash = path_.find_last_of('/');
    temp_dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
    if (!is_directory(temp_dir)) throw_io_error(path_ + ": the parent directory " + temp_dir + " does not exist");
  }
  try {
    for (std::size_t k = 0; k < groups.size(); ++k) {
      Shard sh;
      if (kind_ == OutputKind::safetensors) sh.name = path_;
      else sh.name = groups.size() == 1 ? "model.safetensors" : shard_file_name(k + 1, groups.size());
      sh.specs = groups[k];
      std::vector<TensorSpec> part;
      for (std::size_t pos = 0; pos < sh.specs.size(); ++pos) {
        part.push_back(specs_[sh.specs[pos]]);
        where_[sh.specs[pos]] = {k, pos};
      }
      sh.layout = safetensors_layout(part, metadata_);
      const std::string file = kind_ == OutputKind::safetensors ? path_ : path_ + "/" + sh.name;
      sh.file = std::make_unique<AtomicFile>(file, temp_dir);
      sh.file->reserve(sh.layout.file_size);
      unsigned char len[8];
      const uint64_t n = sh.layout.header.size();
      for (int b = 0; b < 8; ++b) len[b] = static_cast<unsigned char>(n >> (8 * b));
      sh.file->write_at(0, len, 8);
      sh.file->write_at(8, sh.layout.header.data(), sh.layout.header.size());
      shards_.push_back(std::move(sh));
    }
  } catch (...) {
    shards_.clear();
    throw;
  }
  temp_dir_ = temp_dir;
}

CheckpointStreamWriter::~CheckpointStreamWriter() {
  if (committed_) return;
  shards_.clear();  // AtomicFile destructors drop the uncommitted files
  if (dir_made_) ::rmdir(path_.c_str());
}

void CheckpointStreamWriter::write(std::size_t index, const void* data, std::size_t size) {
  if (index < specs_.size() && written_[index]) {
    throw_invalid_argument("stream writer: tensor '" + specs_[index].name + "' written twice");
  }
  if (index < specs_.size()) {
    const TensorSpec& s = specs_[index];
    const uint64_t want = checked_nbytes(s.dtype, s.shape, s.name);
    if (size != want) {
      throw_invalid_argument("stream writer: tensor '" + s.name + "' needs " + std::to_string(want) + " bytes, got " +
                             std::to_string(size));
    }
  }
  write_part(index, 0, data, size);
}

void CheckpointStreamWriter::write_part(std::size_t index, uint64_t offset, const void* data, std::size_t size) {
  if (index >= specs_.size()) throw_invalid_argument("stream writer: no tensor #" + std::to_string(index));
  const TensorSpec& s = specs_[index];
  const uint64_t total = checked_nbytes(s.dtype, s.shape, s.name);
  if (offset > total || size > total - offset || written_[index] + size > total) {
    throw_invalid_argument("stream writer: " + std::to_string(size) + " bytes at " + std::to_string(offset) +
                           " do not fit tensor '" + s.name + "' (" + std::to_string(total) + " bytes)");
  }
  if (kind_ == OutputKind::pytorch) {
    if (held_[index].size() != total) held_[index].resize(total);
    if (size) std::memcpy(held_[index].data() + offset, data, size);
  } else {
    const auto [k, pos] = where_[index];
    Shard& sh = shards_[k];
    if (size) sh.file->write_at(sh.layout.offsets[pos] + offset, data, size);
  }
  written_[index] += size;
}

void CheckpointStreamWriter::add_file(const std::string& name, const std::string& contents) {
  if (kind_ != OutputKind::directory) return;
  if (name.empty() || name.find('/') != std::string::npos) throw_invalid_argument("stream writer: bad file name '" + name + "'");
  files_[name] = contents;
}

void CheckpointStreamWriter::commit() {
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    if (written_[i] != checked_nbytes(specs_[i].dtype, specs_[i].shape, specs_[i].name)) {
      throw_invalid_argument("stream writer: tensor '" + specs_[i].name + "' was not written in full");
    }
  }
  if (kind_ == OutputKind::pytorch) {
    std::vector<TensorToWrite> tensors;
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      tensors.push_back(TensorToWrite{specs_[i].name, specs_[i].dtype, specs_[i].shape,
                                      held_[i].empty() ? nullptr : held_[i].data()});
    }
    write_pt(path_, tensors, metadata_);
    committed_ = true;
    return;
  }
  // Temporary files for the index and extra files first, so that a failure
  // there still leaves nothing; then every rename.
  std::vector<std::unique_ptr<AtomicFile>> extra;
  std::set<std::string> keep;
  if (kind_ == OutputKind::directory) {
    if (shards_.size() > 1) {
      nlohmann::json weight_map = nlohmann::json::object();
      for (const auto& sh : shards_) {
        for (std::size_t i : sh.specs) weight_map[specs_[i].name] = sh.name;
      }
      nlohmann::json index = nlohmann::json::object();
      index["metadata"] = nlohmann::json::object({{"total_size", data_bytes_}});
      index["weight_map"] = weight_map;
      files_["model.safetensors.index.json"] = index.dump(2) + "\n";
    }
    for (const auto& [name, text] : files_) {
      extra.push_back(std::make_unique<AtomicFile>(path_ + "/" + name, temp_dir_));
      extra.back()->write(text.data(), text.size());
      keep.insert(name);
    }
    if (created_dir_) {
      if (::mkdir(path_.c_str(), 0755) != 0) throw_io_error(path_ + ": cannot create directory: " + std::strerror(errno));
      dir_made_ = true;
    }
  }
  for (auto& sh : shards_) {
    sh.file->commit();
    keep.insert(sh.name);
  }
  for (auto& f : extra) f->commit();
  committed_ = true;
  if (kind_ == OutputKind::directory) remove_stale(path_, keep);
}

}  // namespace monoquant::io
