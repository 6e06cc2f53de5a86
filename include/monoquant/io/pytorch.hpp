// PyTorch checkpoints written by torch.save (the zip format, torch >= 1.6).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "monoquant/io/checkpoint.hpp"
#include "monoquant/io/pickle.hpp"

namespace monoquant::io {

struct PtContents {
  Checkpoint checkpoint;  // one record per tensor of the pickle, named by its path ("model.layer.weight")
  Unpickled pickle;       // the object tree; PickledTensor i is checkpoint.tensors[record_of[i]]
  std::vector<std::size_t> record_of;
};

// Maps the archive, checks it (zip structure, byteorder, storage sizes,
// every tensor inside its storage) and unpickles data.pkl without executing
// anything. The legacy (pre-1.6) format gets a clear unsupported error.
PtContents read_pt(const std::string& path);
// The same over memory the caller keeps alive (tests, fuzzers).
PtContents read_pt_memory(const std::byte* data, std::size_t size, const std::string& label);

// A dict {name: tensor} that torch.load(weights_only=True) reads: one
// storage per tensor, _rebuild_tensor_v2 (v3 for the dtypes that need it).
// A non-empty `metadata` is stored as the entry "__metadata__": {str: str}
// (the safetensors __metadata__ of the same checkpoint); readers put it in
// Checkpoint::metadata.
void write_pt(const std::string& path, const std::vector<TensorToWrite>& tensors,
              const std::map<std::string, std::string>& metadata = {});

}  // namespace monoquant::io
