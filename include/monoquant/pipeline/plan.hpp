// The plan of a checkpoint quantization: rules -> one entry per tensor with
// its scheme (or why it is kept). Tensor roles come from names and shapes
// (2-D linear weights, 3-D/4-D conv weights, embeddings, norms, biases,
// output heads, vectors), or from the caller (Python knows module types).
//
// Rules, in order: --skip (names or re:), --only (when given, nothing else is
// quantized), the quality defaults (output heads, norms, biases and vectors
// stay float; embeddings only when asked; for INT4 tensors under
// --min-params, default 512), a group size that does not divide K (an error
// when the group size was given, else kept), then --override pattern=bits.
// A recipe rule that matches a weight tensor (the first, in order) decides
// before all of these: its scheme, or float.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "monoquant/io/checkpoint.hpp"
#include "monoquant/pipeline/recipe.hpp"
#include "monoquant/pipeline/scheme.hpp"

namespace monoquant::pipeline {

enum class TensorRole { linear_weight, conv_weight, embedding, norm, bias, output_head, vector, other };
std::string_view name_of(TensorRole role);

struct TensorInfo {
  std::string name;
  io::FileDType dtype = io::FileDType::f32;
  Shape shape;
  std::optional<TensorRole> role;  // derived from name and shape when absent
};

// Static activation parameters of one module (from a calibration file).
struct ActivationParams {
  float scale = 0.0f;
  int32_t zero_point = 0;
};

struct PlanRules {
  LayerScheme scheme;                              // what quantized tensors get
  std::vector<std::string> skip;                   // module or tensor names, or "re:REGEX" (re.match semantics)
  std::vector<std::string> only;                   // when non-empty: only these are quantized (defaults waived)
  std::vector<std::string> include;                // quantized even where a quality default would keep them
  std::vector<std::pair<std::string, int>> overrides;  // pattern -> bits (8, 4 or 16), last match wins
  std::vector<RecipeRule> recipe;                  // per-layer schemes, first match wins (recipe.hpp)
  int64_t min_params = -1;                         // -1: 512 for INT4, 0 otherwise
  bool quality_defaults = true;
  bool quantize_embeddings = false;
  bool explicit_group_size = false;                // a group size that does not divide K is then an error
  std::map<std::string, ActivationParams> activations;  // static: module -> parameters
  std::set<std::string> already_quantized;         // modules whose tensors are kept as they are (--force)
};

struct PlanEntry {
  std::string tensor;   // "model.layers.0.mlp.up_proj.weight"
  std::string module;   // "model.layers.0.mlp.up_proj" (the tensor name without ".weight")
  TensorRole role = TensorRole::other;
  io::FileDType dtype = io::FileDType::f32;
  Shape shape;
  bool quantize = false;
  LayerScheme scheme;   // quantized entries only
  ActivationParams activation;  // static entries only
  std::string reason;   // why quantized or why kept
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const;  // K: the product of the other dimensions
};

struct Plan {
  std::vector<PlanEntry> entries;  // input order
  std::vector<std::string> warnings;
  std::vector<std::string> notes;  // rules that matched nothing
};

TensorRole role_from_name(const std::string& name, const Shape& shape, io::FileDType dtype);

// Throws invalid_argument naming the problem: an unknown exact --skip/--only
// name (with suggestions), a bad regex or override, a group size that does not
// divide a tensor's K when explicit_group_size.
Plan make_plan(const std::vector<TensorInfo>& tensors, const PlanRules& rules);

// The per-tensor bits of an override rule "PATTERN=BITS" ("re:.*down_proj.*=8").
std::pair<std::string, int> parse_override(const std::string& text);

}  // namespace monoquant::pipeline
