#include "monoquant/pipeline/plan.hpp"

#include <algorithm>
#include <regex>
#include <set>

#include "monoquant/error.hpp"

namespace monoquant::pipeline {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string last_part(const std::string& module) {
  const auto dot = module.find_last_of('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

bool is_floating(io::FileDType d) {
  return d == io::FileDType::f32 || d == io::FileDType::f16 || d == io::FileDType::bf16 || d == io::FileDType::f64;
}

// One compiled rule list ("name" or "re:REGEX"), remembering which regexes matched.
class Rules {
 public:
  Rules(const std::vector<std::string>& texts, std::string what) : what_(std::move(what)) {
    for (const auto& t : texts) {
      if (t.rfind("re:", 0) == 0) {
        try {
          patterns_.emplace_back(t, std::regex(t.substr(3), std::regex::ECMAScript));
        } catch (const std::regex_error& e) {
          throw_invalid_argument(what_ + " rule '" + t + "' is not a valid regular expression: " + e.what());
        }
      } else if (t.empty()) {
        throw_invalid_argument(what_ + " rule is empty");
      } else {
        names_.insert(t);
      }
    }
  }

  bool empty() const { return names_.empty() && patterns_.empty(); }

  // The rule that matches the module (or its tensor), or "".
  std::string match(const std::string& module, const std::string& tensor) {
    if (names_.count(module)) return "named in " + what_;
    if (names_.count(tensor)) return "named in " + what_;
    for (auto& [text, re] : patterns_) {
      if (std::regex_search(module, re, std::regex_constants::match_continuous) ||
          std::regex_search(tensor, re, std::regex_constants::match_continuous)) {
        used_.insert(text);
        return "matches " + what_ + " '" + text + "'";
      }
    }
    return "";
  }

  void check_names(const std::set<std::string>& known) const {
    for (const auto& n : names_) {
      if (known.count(n)) continue;
      std::vector<std::string> close;
      for (const auto& k : known) {
        if (k.find(n) != std::string::npos && close.size() < 3) close.push_back(k);
      }
      std::string hint = "; names are the checkpoint's module names (tensor names without .weight), or use 're:REGEX'";
      if (!close.empty()) {
        hint = "; did you mean";
        for (std::size_t i = 0; i < close.size(); ++i) hint += (i ? ", '" : " '") + close[i] + "'";
        hint += "?";
      }
      throw_invalid_argument(what_ + ": the checkpoint has no module or tensor named '" + n + "'" + hint);
    }
  }

  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const auto& [text, re] : patterns_) {
      if (!used_.count(text)) out.push_back(what_ + " rule '" + text + "' matched nothing");
    }
    return out;
  }

 private:
  std::string what_;
  std::set<std::string> names_;
  std::vector<std::pair<std::string, std::regex>> patterns_;
  std::set<std::string> used_;
};

LayerScheme with_bits(const LayerScheme& base, int bits) {
  LayerScheme s = base;
  if (bits == 16) {
    s.format = base.is_half() ? base.format : WeightFormat::f16;
    s.mode = LinearMode::weight_only;
    s.group_size = 0;
  } else if (bits == 8) {
    s.format = WeightFormat::int8;
    s.int8_bits = 8;
    if (base.is_half()) s.mode = LinearMode::weight_only;
    s.group_size = 0;
  } else {
    s.format = WeightFormat::int4;
    if (base.is_half()) s.mode = LinearMode::weight_only;
    s.group_size = base.group_size > 0 ? base.group_size : 128;
    if (s.mode == LinearMode::static_int8) s.act_symmetric = true;
  }
  return s;
}

std::string group_hint(int64_t k, int64_t g, const std::string& module) {
  int64_t best = 0;
  for (int64_t d = 8; d <= std::min(k, g); d += 8) {
    if (k % d == 0) best = d;
  }
  if (best) return "try --group-size " + std::to_string(best) + ", or --skip " + module;
  return "no group size (a multiple of 8) divides " + std::to_string(k) + ": --skip " + module;
}

}  // namespace

std::string_view name_of(TensorRole role) {
  switch (role) {
    case TensorRole::linear_weight: return "linear weight";
    case TensorRole::conv_weight: return "conv weight";
    case TensorRole::embedding: return "embedding";
    case TensorRole::norm: return "norm";
    case TensorRole::bias: return "bias";
    case TensorRole::output_head: return "output head";
    case TensorRole::vector: return "vector";
    case TensorRole::other: return "other";
  }
  return "?";
}

int64_t PlanEntry::cols() const {
  int64_t k = 1;
  for (std::size_t i = 1; i < shape.size(); ++i) k *= shape[i];
  return shape.empty() ? 0 : k;
}

TensorRole role_from_name(const std::string& name, const Shape& shape, io::FileDType dtype) {
  if (!is_floating(dtype)) return TensorRole::other;
  const bool weight = ends_with(name, ".weight") || name == "weight";
  const std::string module = weight ? name.substr(0, name.size() - std::min<std::size_t>(name.size(), 7)) : name;
  const std::string last = lower(last_part(module.empty() ? name : module));
  if (ends_with(name, ".bias") || name == "bias") return TensorRole::bias;
  if (shape.size() <= 1) {
    if (last.find("norm") != std::string::npos || last.rfind("ln", 0) == 0) return TensorRole::norm;
    return TensorRole::vector;
  }
  if (!weight) return TensorRole::other;
  if (last == "lm_head" || last == "output_projection" || last == "embed_out") return TensorRole::output_head;
  for (const char* e : {"embed", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type_embeddings",
                        "shared"}) {
    if (last.find(e) != std::string::npos) return TensorRole::embedding;
  }
  if (shape.size() == 2) return TensorRole::linear_weight;
  if (shape.size() == 3 || shape.size() == 4) return TensorRole::conv_weight;
  return TensorRole::other;
}

std::pair<std::string, int> parse_override(const std::string& text) {
  const auto eq = text.find_last_of('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    throw_invalid_argument("--override takes PATTERN=BITS (e.g. 're:.*down_proj.*=8'), got '" + text + "'");
  }
  const std::string bits = text.substr(eq + 1);
  if (bits != "4" && bits != "8" && bits != "16") {
    throw_invalid_argument("--override '" + text + "': bits must be 4, 8 or 16");
  }
  return {text.substr(0, eq), std::stoi(bits)};
}

namespace {

// Whether a recipe's "type:NAME" key names the module class a tensor of this
// role and rank comes from. A checkpoint has no classes: Linear covers 2-D
// weights and output heads, ConvNd the weights of rank N + 2.
bool type_matches(const std::string& type, TensorRole role, std::size_t rank) {
  if (type == "Linear") return role == TensorRole::linear_weight || role == TensorRole::output_head;
  if (type == "Embedding") return role == TensorRole::embedding;
  if (type == "Conv1d") return role == TensorRole::conv_weight && rank == 3;
  if (type == "Conv2d") return role == TensorRole::conv_weight && rank == 4;
  if (type == "Conv3d") return role == TensorRole::conv_weight && rank == 5;
  throw_invalid_argument("recipe key 'type:" + type + "': a checkpoint knows the types Linear, Embedding, Conv1d, "
                         "Conv2d and Conv3d; other module classes need the nn.Module (the Python API)");
}

}  // namespace

Plan make_plan(const std::vector<TensorInfo>& tensors, const PlanRules& rules) {
  rules.scheme.validate();
  // Recipe rules: names and patterns through Rules (which checks names and
  // notes unused patterns), types by role.
  std::vector<std::unique_ptr<Rules>> recipe_rules;
  std::vector<bool> recipe_used(rules.recipe.size(), false);
  for (const RecipeRule& r : rules.recipe) {
    if (r.match.rfind("type:", 0) == 0) {
      type_matches(r.match.substr(5), TensorRole::linear_weight, 2);  // an unknown type fails now
      recipe_rules.push_back(nullptr);
    } else {
      recipe_rules.push_back(std::make_unique<Rules>(std::vector<std::string>{r.match}, "recipe"));
    }
  }
  Rules skip(rules.skip, "--skip"), only(rules.only, "--only"), include(rules.include, "include");
  std::vector<std::pair<std::string, int>> overrides;
  std::vector<std::unique_ptr<Rules>> override_rules;
  for (const auto& [pattern, bits] : rules.overrides) {
    if (bits != 4 && bits != 8 && bits != 16) throw_invalid_argument("--override bits must be 4, 8 or 16");
    override_rules.push_back(std::make_unique<Rules>(std::vector<std::string>{pattern}, "--override"));
  }
  std::set<std::string> known;
  for (const auto& t : tensors) {
    known.insert(t.name);
    if (ends_with(t.name, ".weight")) known.insert(t.name.substr(0, t.name.size() - 7));
  }
  skip.check_names(known);
  only.check_names(known);
  include.check_names(known);
  const bool int4 = rules.scheme.format == WeightFormat::int4;
  const int64_t min_params = rules.min_params >= 0 ? rules.min_params : (int4 && rules.quality_defaults ? 512 : 0);

  Plan plan;
  for (const auto& t : tensors) {
    PlanEntry e;
    e.tensor = t.name;
    e.module = ends_with(t.name, ".weight") ? t.name.substr(0, t.name.size() - 7) : t.name;
    e.role = t.role ? *t.role : role_from_name(t.name, t.shape, t.dtype);
    e.dtype = t.dtype;
    e.shape = t.shape;
    auto keep = [&](std::string why) {
      e.quantize = false;
      e.reason = std::move(why);
      plan.entries.push_back(e);
    };
    if (const auto dot = t.name.find_last_of('.');
        dot != std::string::npos && rules.already_quantized.count(t.name.substr(0, dot))) {
      keep("already quantized (kept as it is)");
      continue;
    }
    switch (e.role) {
      case TensorRole::bias: keep("bias (stays float)"); continue;
      case TensorRole::norm: keep("norm (stays float)"); continue;
      case TensorRole::vector: keep("1-D tensor (stays float)"); continue;
      case TensorRole::other:
        keep(is_floating(t.dtype) ? "not a weight matrix" : "not floating point (passed through)");
        continue;
      default: break;
    }
    const RecipeRule* hit = nullptr;
    for (std::size_t i = 0; i < rules.recipe.size() && !hit; ++i) {
      const bool match = recipe_rules[i] ? !recipe_rules[i]->match(e.module, e.tensor).empty()
                                         : type_matches(rules.recipe[i].match.substr(5), e.role, e.shape.size());
      if (match) {
        hit = &rules.recipe[i];
        recipe_used[i] = true;
      }
    }
    if (hit && !hit->scheme) {
      keep("recipe '" + hit->match + "': float");
      continue;
    }
    if (const std::string why = hit ? "" : skip.match(e.module, e.tensor); !why.empty()) {
      keep(why);
      continue;
    }
    const bool in_only = !hit && !only.empty() && !only.match(e.module, e.tensor).empty();
    if (!hit && !only.empty() && !in_only) {
      keep("not matched by --only");
      continue;
    }
    const bool asked = hit || in_only || !include.match(e.module, e.tensor).empty();
    if (rules.quality_defaults && !asked) {
      if (e.role == TensorRole::output_head) {
        keep("output head (lm_head); name it in --only to quantize it");
        continue;
      }
      if (e.role == TensorRole::embedding && !rules.quantize_embeddings) {
        keep("embedding (by name); --quantize-embeddings or --only to quantize it");
        continue;
      }
    }
    const int64_t params = numel_of(e.shape);
    if (!hit && params < min_params) {
      keep(std::to_string(params) + " parameters (< --min-params " + std::to_string(min_params) + ": too small to gain)");
      continue;
    }
    LayerScheme s = hit ? *hit->scheme : rules.scheme;
    for (std::size_t i = 0; i < override_rules.size() && !hit; ++i) {
      if (!override_rules[i]->match(e.module, e.tensor).empty()) s = with_bits(rules.scheme, rules.overrides[i].second);
    }
    if (e.role == TensorRole::embedding && !s.is_half()) {
      s.mode = LinearMode::weight_only;  // looked up, not multiplied
      if (s.format == WeightFormat::int8) s.group_size = 0;  // activation groups mean nothing there
      s.int8_bits = 8;  // 7-bit codes only speed up int8 x int8 products
    }
    if (e.role == TensorRole::embedding || e.role == TensorRole::conv_weight) {
      // The zero points' share is subtracted by linear layers only (as the
      // Python modules): lookups and convolutions keep symmetric weights.
      s.weight_symmetric = true;
    }
    if (e.role == TensorRole::embedding && s.is_half()) {
      keep("embedding: stored float16/bfloat16 only as a plain cast (not quantized)");
      continue;
    }
    if (s.group_size > 0 && e.cols() % s.group_size != 0) {
      const std::string msg = "K = " + std::to_string(e.cols()) + " is not a multiple of the group size " +
                              std::to_string(s.group_size) + " (compressed-tensors readers refuse ragged groups)";
      if (hit ? hit->explicit_group_size : rules.explicit_group_size) throw_invalid_argument("tensor '" + e.tensor + "': " + msg + "; " + group_hint(e.cols(), s.group_size, e.module));
      keep(msg);
      continue;
    }
    if (s.mode == LinearMode::static_int8) {
      const auto it = rules.activations.find(e.module);
      if (it == rules.activations.end()) {
        plan.warnings.push_back("no calibration statistics for '" + e.module + "': it runs dynamic (per-token) instead");
        s.mode = LinearMode::dynamic_int8;
      } else {
        e.activation = it->second;
      }
    }
    e.quantize = true;
    e.scheme = s;
    e.reason = hit ? "recipe '" + hit->match + "': " + s.label()
                   : std::string(name_of(e.role)) + (asked ? " (quantized on request)" : "");
    if (asked && rules.quality_defaults &&
        (e.role == TensorRole::output_head || (e.role == TensorRole::embedding && !rules.quantize_embeddings))) {
      plan.warnings.push_back("sensitive tensor '" + e.tensor + "' (" + std::string(name_of(e.role)) + ") quantized on request");
    }
    plan.entries.push_back(std::move(e));
  }
  for (auto& n : skip.unused()) plan.notes.push_back(std::move(n));
  for (auto& n : only.unused()) plan.notes.push_back(std::move(n));
  for (auto& n : include.unused()) plan.notes.push_back(std::move(n));
  for (auto& r : override_rules) {
    for (auto& n : r->unused()) plan.notes.push_back(std::move(n));
  }
  for (std::size_t i = 0; i < rules.recipe.size(); ++i) {
    if (!recipe_used[i]) plan.notes.push_back("recipe rule '" + rules.recipe[i].match + "' matched no layer");
  }
  return plan;
}

}  // namespace monoquant::pipeline
