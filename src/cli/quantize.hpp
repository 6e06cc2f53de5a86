#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace monoquant::cli {

struct QuantizeOptions {
  std::string model, model_flag, output;
  int bits = 8;
  bool dynamic = false, weight_only = false, is_static = false;
  std::string calibration;
  std::string scheme;         // "" = default
  int64_t group_size = 0;     // 0 = default (128)
  int64_t act_group_size = 0; // --bits 8 --dynamic: weights and activations in groups of K (0 = per channel / token)
  std::string scale_method;   // "" = default
  std::string int4_range = "full";  // full: [-8, 7], absmax / 7.5; restricted: [-7, 7], absmax / 7
  std::string dtype;          // bits 16: f16 | bf16
  std::vector<std::string> skip, only, overrides;
  std::string recipe;         // a JSON recipe file (pipeline/recipe.hpp)
  int64_t min_params = -1;
  bool quantize_embeddings = false;
  std::string format;         // safetensors | pt | dir ("" = from the output path)
  std::string max_shard_size;
  int threads = 0;
  bool json = false, quiet = false, dry_run = false, strict = false, force = false;
  // Methods that run the model (cli/model_run.hpp): handed to the Python API.
  std::string method = "rtn";       // rtn | gptq | awq
  std::string calibration_data;     // tokenized tensors (.safetensors / .pt), split into batches along dim 0
  int64_t calibration_batch_size = 8;
  int64_t calibration_samples = 0;  // 0 = every sample
  std::string observer;             // static ranges: histogram (default), minmax, ...
  bool act_order = false;
  double smoothquant = -1;          // alpha in (0, 1); < 0 = not given
};

CLI::App* add_quantize(CLI::App& app, QuantizeOptions& options);
int run_quantize(const QuantizeOptions& options);  // throws monoquant::Error

}  // namespace monoquant::cli
