// A recipe: per-layer schemes, as `quantize(model, recipe=...)` and
// `monoquant quantize --recipe FILE` take them (docs/FORMAT.md, "Recipes").
//
//   {"re:.*attention.*": {"bits": 8}, "pooler.dense": "float", "type:Linear": {"bits": 4, "group_size": 32}}
//
// Keys are module names, "re:REGEX" (matched from the start of the name, as
// --skip) or "type:NAME" (the module's class: Linear, Embedding, Conv1d,
// Conv2d, Conv3d in a checkpoint; any class name in the Python API). The first
// rule that matches a layer gives its scheme, in the recipe's order. A rule's
// settings are bits, mode, group_size, scale_method, int4_range,
// act_group_size, dtype and method; what it leaves out comes from the call.
// One resolver serves the CLI and the Python API, so both give the same
// schemes and the same file bytes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "monoquant/pipeline/scheme.hpp"

namespace monoquant::pipeline {

struct RecipeRule {
  std::string match;                  // the key
  std::optional<LayerScheme> scheme;  // nullopt: the layer stays float
  bool explicit_group_size = false;   // a group size that does not divide K is then an error, not a skip
  std::string method;                 // "rtn", "gptq", "awq", or "" (the call's)
};

// One rule: `spec_json` is "\"float\"" (or null) or an object of settings.
// Throws invalid_argument naming the key and the setting.
RecipeRule resolve_recipe_rule(const std::string& key, const std::string& spec_json, const LayerScheme& call);

// A whole recipe: a JSON object, rules in its order (throws invalid_argument
// for text that is not one, naming the problem).
std::vector<RecipeRule> parse_recipe(const std::string& json_text, const LayerScheme& call);

// The canonical form stored in a file's monoquant metadata and printed by
// `monoquant inspect`: [{"match": KEY, "scheme": {...} | "float", "method": ...}].
std::string recipe_to_json(const std::vector<RecipeRule>& rules);

}  // namespace monoquant::pipeline
