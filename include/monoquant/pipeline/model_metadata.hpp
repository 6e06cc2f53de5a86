// The metadata a quantized checkpoint carries (docs/FORMAT.md, "The monoquant
// metadata of a model"): compressed-tensors' quantization_config for the int
// layers, and monoquant's own record of every quantized module.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "monoquant/pipeline/scheme.hpp"

namespace monoquant::pipeline {

struct ModuleRecord {
  std::string name;        // module name ("encoder.layer.0.attention.self.query")
  LayerScheme scheme;
  std::string type = "Linear";    // the float module replaced: Linear, Conv1D, Conv1d, Conv2d, Embedding
  Shape shape;                    // the weight as quantized, [N, K]
  std::string float_dtype = "float32";
  std::string extra_json = "{}";  // more fields of the record (conv geometry, padding_idx), a JSON object
};

std::string scheme_to_json(const LayerScheme& s);          // {"format": "int8", "mode": "dynamic", ...}
LayerScheme scheme_from_json(const std::string& json);     // the inverse (throws format)

// {"quantization_config": ... (only when some layer has int weights), "monoquant": ...}.
// Records are written sorted by module name, whatever order they come in, so
// that the CLI and the Python API write the same bytes. `recipe_json`, when
// given (recipe_to_json), is kept as monoquant's "recipe".
std::map<std::string, std::string> model_metadata(const std::vector<ModuleRecord>& modules,
                                                  const std::string& recipe_json = "");

// config.json for a directory: `base` (a transformers config object as JSON,
// or "" / "{}") with quantization_config set (or removed when none).
std::string config_json_with_quantization(const std::string& base, const std::map<std::string, std::string>& metadata);

}  // namespace monoquant::pipeline
