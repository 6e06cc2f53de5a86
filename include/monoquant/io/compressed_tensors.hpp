// Quantized checkpoints in the compressed-tensors conventions that Hugging
// Face transformers and vLLM load (docs/FORMAT.md, "Checkpoint files"):
//   W8A8   int-quantized:  <m>.weight int8 [N,K], <m>.weight_scale [N,1]
//   W4A16  pack-quantized: <m>.weight_packed int32 [N, ceil(K/8)] (element 0
//          in the lowest bits, +8 offset), <m>.weight_scale [N, ceil(K/g)],
//          <m>.weight_shape int64 [2], <m>.weight_zero_point when asymmetric
//   W8A16  pack-quantized with 8 bits (4 codes per int32, +128 offset)
// Scales are stored in the weight's dtype when it is fp16/bf16, else fp32.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "monoquant/io/checkpoint.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant::io {

enum class CtMethod { keep, w8a8, w4a16, w8a16, fp16, bf16 };
CtMethod parse_ct_method(const std::string& name);  // "keep", "w8a8", "w4a16", "w8a16", "fp16", "bf16"

struct CtTensorPlan {
  CtMethod method = CtMethod::keep;
  int64_t group_size = 128;  // w4a16/w8a16: <= 0 means one scale per output channel
  bool symmetric = true;
};

struct CompressedTensors {
  std::vector<Tensor> owned;           // memory of the tensors made here
  std::vector<TensorToWrite> tensors;  // everything to write (owned or the inputs' memory)
  std::string quantization_config;     // JSON object: config.json["quantization_config"]
  std::string monoquant_info;          // JSON object: monoquant's own facts ("monoquant" key)
};

// How one quantized module is described in quantization_config.
// dynamic_per_group: per token and per group of the module's group_size along K (W8A8 with activation groups).
enum class CtActivations { none, dynamic_per_token, dynamic_per_group, static_per_tensor };

struct CtModuleScheme {
  std::string module;               // "encoder.layer.0.attention.self.query"
  int weight_bits = 8;              // 4 or 8
  bool weight_symmetric = true;
  int64_t group_size = -1;          // > 0: strategy "group"; otherwise "channel"
  std::string format;               // "int-quantized" or "pack-quantized"
  CtActivations activations = CtActivations::none;  // 8-bit int input activations
  bool activations_symmetric = true;                 // static only: false stores input_zero_point
};

// The quantization_config JSON object: one config_groups entry per distinct
// scheme (targets = the exact module names, in order of first appearance),
// format = the one format used or "mixed-precision", ignore = `ignore`.
std::string quantization_config_json(const std::vector<CtModuleScheme>& modules,
                                     const std::vector<std::string>& ignore = {});

// Quantizes the planned weights (keys of `plan` are weight tensor names such
// as "model.layers.0.mlp.up_proj.weight"; a planned tensor must be 2-D and
// floating) and passes every other tensor through unchanged. Throws
// invalid_argument naming any plan key that is not an input.
// Kept tensors (any dtype, fp8 and unsigned included) pass through bit for
// bit; float16/bfloat16 casts refuse NaN, Inf and float16 overflow.
CompressedTensors compress_tensors(const std::vector<TensorToWrite>& inputs, const std::map<std::string, CtTensorPlan>& plan);

// A single .safetensors file: __metadata__ = {"format": "pt",
// "quantization_config": <json>, "monoquant": <json>} plus `metadata`.
void write_compressed_safetensors(const std::string& path, const std::vector<TensorToWrite>& inputs,
                                  const std::map<std::string, CtTensorPlan>& plan,
                                  const std::map<std::string, std::string>& metadata = {});

// Whether a config group's target names the module: an exact name or
// "re:REGEX" (matched from the start, as compressed-tensors' re.match).
// Throws format on a bad regular expression.
bool ct_target_matches(const std::string& target, const std::string& module);

// The inverse, with monoquant's dequantize: every quantized module's weight
// comes back as float32 `<m>.weight`; other tensors are copied as they are.
// `quantization_config` is the JSON object (from config.json or __metadata__).
std::vector<std::pair<std::string, Tensor>> decompress_tensors(const Checkpoint& ck, const std::string& quantization_config);

}  // namespace monoquant::io
