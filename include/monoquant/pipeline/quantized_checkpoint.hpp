// Reading back what a quantized checkpoint holds, for inspect and validate:
// its quantization_config (from the metadata or a directory's config.json),
// each quantized module's scheme, and integrity checks of its tensors.
#pragma once

#include <string>
#include <vector>

#include "monoquant/io/checkpoint.hpp"

namespace monoquant::pipeline {

struct QuantizedModuleInfo {
  std::string module;
  std::string format;        // int-quantized, pack-quantized, naive-quantized, "float16"/"bfloat16" (monoquant only)
  int bits = 8;
  int64_t group_size = -1;   // > 0: groups along K; -1: one scale per output channel
  bool symmetric = true;
  std::string activations = "none";  // none, dynamic, static
  std::string label;         // W8A8-dynamic, W4A16-g128, FP16, ...
  Shape weight_shape;        // [N, K] as quantized
  uint64_t bytes = 0;        // every tensor of the module as stored
};

// "" when the checkpoint has none.
std::string quantization_config_of(const std::string& path, const io::Checkpoint& ck);

// One entry per quantized module, in file order. Throws format on a
// quantization_config that is not valid JSON or a module no group describes.
std::vector<QuantizedModuleInfo> quantized_modules(const io::Checkpoint& ck, const std::string& quantization_config);

// Problems found (empty: every quantized tensor is consistent): shapes that
// do not fit, scales that are not finite and > 0, codes out of range, zero
// points out of range, static activation parameters out of range.
std::vector<std::string> check_integrity(const io::Checkpoint& ck, const std::vector<QuantizedModuleInfo>& modules);

}  // namespace monoquant::pipeline
