// Writing a checkpoint whose tensors arrive one at a time: the layout (every
// name, dtype and shape) is known up front, so the safetensors headers, the
// shard split and the index are fixed before the first byte of data, and each
// tensor is written at its offset as soon as it is produced. Memory stays at
// one tensor, whatever the checkpoint's size.
//
// Nothing is visible until commit(): every file is an AtomicFile (unnamed
// until commit), and a directory that does not exist yet is only created at
// commit (its files wait in the parent directory). `.pt` output (a zip with CRCs) keeps the tensors in memory and
// is written at commit.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "monoquant/io/atomic_file.hpp"
#include "monoquant/io/safetensors.hpp"

namespace monoquant::io {

enum class OutputKind { safetensors, directory, pytorch };
// ".safetensors" -> safetensors, ".pt"/".pth"/".bin" -> pytorch, anything else a directory.
OutputKind output_kind_for_path(const std::string& path);

class CheckpointStreamWriter {
 public:
  // Directory output: model.safetensors, or model-0000k-of-0000n.safetensors
  // shards of at most max_shard_bytes of tensor data (0: one file) plus
  // model.safetensors.index.json, transformers' names; every file carries
  // `metadata`. safetensors output always gets "format": "pt".
  CheckpointStreamWriter(std::string path, OutputKind kind, std::vector<TensorSpec> specs,
                         std::map<std::string, std::string> metadata, uint64_t max_shard_bytes = 0);
  ~CheckpointStreamWriter();
  CheckpointStreamWriter(const CheckpointStreamWriter&) = delete;
  CheckpointStreamWriter& operator=(const CheckpointStreamWriter&) = delete;

  const std::vector<TensorSpec>& specs() const { return specs_; }
  // Writes spec `index`'s bytes (exactly its size, row-major). Each spec once.
  void write(std::size_t index, const void* data, std::size_t size);
  // Writes part of spec `index`: `size` bytes at byte `offset` within it.
  // The parts of a spec must not overlap; together they must cover it.
  void write_part(std::size_t index, uint64_t offset, const void* data, std::size_t size);
  // A text file (config.json, ...) written into a directory output at commit.
  void add_file(const std::string& name, const std::string& contents);
  // Checks every spec was written, then makes everything visible.
  void commit();
  uint64_t data_bytes() const { return data_bytes_; }
  std::size_t shard_count() const { return shards_.size(); }

 private:
  struct Shard {
    std::string name;
    std::vector<std::size_t> specs;  // indices into specs_
    SafetensorsLayout layout;
    std::unique_ptr<AtomicFile> file;
  };
  std::string path_;
  OutputKind kind_;
  std::vector<TensorSpec> specs_;
  std::map<std::string, std::string> metadata_;
  std::vector<Shard> shards_;
  std::vector<std::pair<std::size_t, std::size_t>> where_;  // spec -> (shard, position in shard)
  std::vector<uint64_t> written_;  // bytes written per spec
  std::vector<std::vector<std::byte>> held_;  // pytorch output only
  std::map<std::string, std::string> files_;
  uint64_t data_bytes_ = 0;
  bool created_dir_ = false;  // the directory did not exist: made at commit
  bool dir_made_ = false;
  std::string temp_dir_;      // where the files wait until commit ("" = their own directory)
  bool committed_ = false;
};

}  // namespace monoquant::io
