#include "monoquant/pipeline/recipe.hpp"

#include <set>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/pipeline/model_metadata.hpp"

namespace monoquant::pipeline {
namespace {

using json = nlohmann::ordered_json;

const std::set<std::string> kSettings = {"bits", "mode", "group_size", "scale_method", "int4_range",
                                         "act_group_size", "dtype", "method", "scheme"};

std::string allowed_settings() {
  std::string s;
  for (const auto& k : kSettings) s += (s.empty() ? "" : ", ") + k;
  return s;
}

int64_t positive_int(const json& spec, const char* name, const std::string& where) {
  const json& v = spec.at(name);
  if (!v.is_number_integer() || v.get<int64_t>() <= 0) {
    throw_invalid_argument(where + ": " + name + " must be a positive integer, got " + v.dump());
  }
  return v.get<int64_t>();
}

std::string text_of(const json& spec, const char* name, const std::string& where) {
  const json& v = spec.at(name);
  if (!v.is_string()) throw_invalid_argument(where + ": " + name + " must be a string, got " + v.dump());
  return v.get<std::string>();
}

// The mode a rule gets when it names none: the call's for the same bits; for
// other bits the call's dynamic / weight-only choice, and where the call is
// static (its calibration covers its own bits) dynamic for 8 bits and
// weight-only for 4; 16 bits is weight-only.
LinearMode default_mode(int bits, const LayerScheme& call) {
  if (bits == 16) return LinearMode::weight_only;
  if (bits == call.bits()) return call.mode;
  if (call.mode == LinearMode::static_int8) return bits != 4 ? LinearMode::dynamic_int8 : LinearMode::weight_only;
  return call.mode;
}

}  // namespace

RecipeRule resolve_recipe_rule(const std::string& key, const std::string& spec_json, const LayerScheme& call) {
  const std::string where = "recipe['" + key + "']";
  if (key.empty()) throw_invalid_argument("recipe: a rule's key is empty (use a module name, 're:REGEX' or 'type:NAME')");
  json spec;
  try {
    spec = json::parse(spec_json);
  } catch (const json::exception& e) {
    throw_invalid_argument(where + " is not valid JSON: " + e.what());
  }
  RecipeRule r;
  r.match = key;
  if (spec.is_null() || (spec.is_string() && spec.get<std::string>() == "float")) return r;
  if (!spec.is_object()) {
    throw_invalid_argument(where + " must be \"float\" or an object of " + allowed_settings() + ", got " + spec.dump());
  }
  for (const auto& [k, v] : spec.items()) {
    if (!kSettings.count(k)) throw_invalid_argument(where + ": unknown setting '" + k + "' (settings: " + allowed_settings() + ")");
  }
  int bits = call.bits();
  if (spec.contains("bits")) {
    const json& b = spec["bits"];
    if (!b.is_number_integer() || (b.get<int>() != 4 && b.get<int>() != 7 && b.get<int>() != 8 && b.get<int>() != 16)) {
      throw_invalid_argument(where + ": bits must be 4, 7, 8 or 16, got " + b.dump());
    }
    bits = b.get<int>();
  }
  LayerScheme s;
  s.mode = default_mode(bits, call);
  if (spec.contains("mode")) {
    const std::string m = text_of(spec, "mode", where);
    if (m != "dynamic" && m != "weight_only" && m != "static") {
      throw_invalid_argument(where + ": mode must be 'dynamic', 'weight_only' or 'static', got '" + m + "'");
    }
    s.mode = parse_linear_mode(m);
    if (s.mode == LinearMode::static_int8 && call.mode != LinearMode::static_int8) {
      throw_invalid_argument(where + ": static layers need a static call (calibrated activations)");
    }
  }
  if (bits == 16) {
    s.format = call.is_half() ? call.format : WeightFormat::f16;
    if (spec.contains("dtype")) {
      const std::string d = text_of(spec, "dtype", where);
      if (d != "float16" && d != "bfloat16" && d != "f16" && d != "bf16") {
        throw_invalid_argument(where + ": dtype must be 'float16' or 'bfloat16', got '" + d + "'");
      }
      s.format = d[0] == 'b' ? WeightFormat::bf16 : WeightFormat::f16;
    }
    for (const char* k : {"group_size", "scale_method", "int4_range", "act_group_size", "scheme"}) {
      if (spec.contains(k)) throw_invalid_argument(where + ": " + k + " applies to bits 8 and 4, not 16");
    }
    if (s.mode != LinearMode::weight_only) throw_invalid_argument(where + ": 16-bit weights run weight-only");
    s.group_size = 0;
  } else {
    if (spec.contains("dtype")) throw_invalid_argument(where + ": dtype applies to bits 16 only");
    s.format = bits == 4 ? WeightFormat::int4 : WeightFormat::int8;
    if (bits == 7) s.int8_bits = 7;
    if (bits == 4) {
      if (spec.contains("act_group_size")) {
        throw_invalid_argument(where + ": act_group_size applies to bits 8 (dynamic W8A8 with activation groups)");
      }
      s.group_size = spec.contains("group_size") ? positive_int(spec, "group_size", where)
                                                  : (call.format == WeightFormat::int4 ? call.group_size : 128);
      r.explicit_group_size = spec.contains("group_size");
    } else {
      if (spec.contains("group_size")) {
        throw_invalid_argument(where + ": int8 weights take one scale per output channel; group_size applies to "
                               "bits 4 (act_group_size gives W8A8 activation groups)");
      }
      if (spec.contains("act_group_size")) {
        s.group_size = positive_int(spec, "act_group_size", where);
        r.explicit_group_size = true;
        if (s.mode != LinearMode::dynamic_int8) {
          throw_invalid_argument(where + ": act_group_size needs dynamic activations (mode 'dynamic')");
        }
      }
    }
    s.scale_method = bits == call.bits() ? call.scale_method : (bits == 4 ? ScaleMethod::mse : ScaleMethod::absmax);
    if (spec.contains("scale_method")) {
      const std::string m = text_of(spec, "scale_method", where);
      try {
        s.scale_method = parse_scale_method(m);
      } catch (const Error&) {
        throw_invalid_argument(where + ": scale_method must be 'absmax', 'mse' or 'hqq', got '" + m + "'");
      }
    }
    s.full_range = call.full_range;
    if (spec.contains("int4_range")) {
      const std::string g = text_of(spec, "int4_range", where);
      if (g != "full" && g != "restricted") {
        throw_invalid_argument(where + ": int4_range must be 'full' or 'restricted', got '" + g + "'");
      }
      s.full_range = g == "full";
    }
    // Static activations: the call's scheme for its own 8-bit layers, else
    // asymmetric for 8 bits (a zero point per tensor) and symmetric for 4 (the
    // W4A8 kernels take no zero point).
    s.act_symmetric = true;
    if (s.mode == LinearMode::static_int8 && bits != 4) {
      s.act_symmetric = call.format == WeightFormat::int8 && call.mode == LinearMode::static_int8 ? call.act_symmetric
                                                                                                  : false;
    }
    // Weight-only layers take the call's weight scheme (asymmetric weights
    // with a zero point, or symmetric); others are symmetric.
    s.weight_symmetric = s.mode != LinearMode::weight_only || call.weight_symmetric;
    if (spec.contains("scheme")) {
      // As quantize(scheme=...): the weights' of a weight-only layer, the
      // activations' of a static 8-bit one.
      const std::string v = text_of(spec, "scheme", where);
      if (v != "symmetric" && v != "asymmetric") {
        throw_invalid_argument(where + ": scheme must be 'symmetric' or 'asymmetric', got '" + v + "'");
      }
      const bool sym = v == "symmetric";
      if (s.mode == LinearMode::weight_only) {
        s.weight_symmetric = sym;
      } else if (s.mode == LinearMode::static_int8 && bits != 4) {
        s.act_symmetric = sym;
      } else if (!sym) {
        throw_invalid_argument(where + ": scheme 'asymmetric' applies to weight-only layers (weights with a zero "
                               "point) and to static 8-bit ones (activations with a zero point), not to " +
                               s.label());
      }
    }
  }
  if (spec.contains("method")) {
    r.method = text_of(spec, "method", where);
    if (r.method != "rtn" && r.method != "gptq" && r.method != "awq") {
      throw_invalid_argument(where + ": method must be 'rtn', 'gptq' or 'awq', got '" + r.method + "'");
    }
  }
  try {
    s.validate();
  } catch (const Error& e) {
    throw_invalid_argument(where + ": " + e.what());
  }
  r.scheme = s;
  return r;
}

std::vector<RecipeRule> parse_recipe(const std::string& json_text, const LayerScheme& call) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw_invalid_argument(std::string("the recipe is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) {
    throw_invalid_argument("the recipe must be a JSON object mapping layer names, 're:' patterns or 'type:' names "
                           "to \"float\" or a scheme, got " + std::string(j.type_name()));
  }
  std::vector<RecipeRule> rules;
  for (const auto& [key, spec] : j.items()) rules.push_back(resolve_recipe_rule(key, spec.dump(), call));
  return rules;
}

std::string recipe_to_json(const std::vector<RecipeRule>& rules) {
  json out = json::array();
  for (const RecipeRule& r : rules) {
    json item = json::object();
    item["match"] = r.match;
    item["scheme"] = r.scheme ? json::parse(scheme_to_json(*r.scheme)) : json("float");
    if (!r.method.empty()) item["method"] = r.method;
    out.push_back(std::move(item));
  }
  return out.dump();
}

}  // namespace monoquant::pipeline
