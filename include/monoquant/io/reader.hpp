// One entry point for every checkpoint kind monoquant reads and writes:
// a .safetensors file, a model directory (model.safetensors or sharded with
// model.safetensors.index.json), or a torch.save archive (.pt/.pth/.bin).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "monoquant/io/checkpoint.hpp"
#include "monoquant/io/compressed_tensors.hpp"
#include "monoquant/io/pickle.hpp"

namespace monoquant::io {

enum class CheckpointKind { safetensors, directory, pytorch };
// By what is on disk: a directory, the zip/pickle magic, else safetensors.
CheckpointKind detect_checkpoint_kind(const std::string& path);

struct CheckpointContents {
  Checkpoint checkpoint;
  std::optional<Unpickled> pickle;  // .pt only: the object tree
  std::vector<std::size_t> record_of;
};

CheckpointContents read_checkpoint(const std::string& path);

// A model directory: every shard listed by model.safetensors.index.json (or
// the single model.safetensors), as one set of tensors. Checks that each
// tensor is where the index says, and that no tensor is in two shards.
Checkpoint read_safetensors_directory(const std::string& dir);

// Writes `tensors` into `dir` (created if missing): model.safetensors, or
// model-0000k-of-0000n.safetensors shards of at most `max_shard_bytes` of
// tensor data each (a larger tensor gets a shard of its own) plus
// model.safetensors.index.json. Every shard carries `metadata`. Weight files
// of an earlier checkpoint in `dir` that the new one does not use are removed
// afterwards (other files, config.json included, are left alone).
void write_safetensors_directory(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                                 const std::map<std::string, std::string>& metadata, uint64_t max_shard_bytes);

// compressed-tensors output: a path ending in .safetensors gets one file with
// quantization_config in __metadata__; .pt/.pth/.bin a torch.save archive with
// the same tensors and "__metadata__" entry; any other path is a model directory
// whose config.json (created, or updated when present) gets quantization_config.
void write_compressed(const std::string& path, const std::vector<TensorToWrite>& inputs,
                      const std::map<std::string, CtTensorPlan>& plan, const std::map<std::string, std::string>& metadata,
                      uint64_t max_shard_bytes);

// Reads a compressed-tensors file or directory and dequantizes it with monoquant.
std::vector<std::pair<std::string, Tensor>> decompress_checkpoint(const std::string& path);

}  // namespace monoquant::io
