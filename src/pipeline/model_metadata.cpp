#include "monoquant/pipeline/model_metadata.hpp"

#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/io/compressed_tensors.hpp"
#include "monoquant/version.hpp"

namespace monoquant::pipeline {
namespace {

using json = nlohmann::ordered_json;

const char* mode_name(LinearMode m) {
  switch (m) {
    case LinearMode::weight_only: return "weight_only";
    case LinearMode::dynamic_int8: return "dynamic";
    case LinearMode::static_int8: return "static";
  }
  return "?";
}

json scheme_object(const LayerScheme& s) {
  json j = json::object();
  j["format"] = std::string(name_of(s.format));
  j["mode"] = mode_name(s.mode);
  j["group_size"] = s.group_size;
  j["scale_method"] = std::string(name_of(s.scale_method));
  j["act_symmetric"] = s.act_symmetric;
  if (s.format == WeightFormat::int4) j["full_range"] = s.full_range;  // [-8, 7] / 7.5 or [-7, 7] / 7
  if (!s.weight_symmetric) j["weight_symmetric"] = false;              // absent: symmetric (older files)
  if (s.format == WeightFormat::int8 && s.int8_bits != 8) j["int8_bits"] = s.int8_bits;  // absent: 8
  return j;
}

}  // namespace

std::string scheme_to_json(const LayerScheme& s) { return scheme_object(s).dump(); }

LayerScheme scheme_from_json(const std::string& text) {
  try {
    const json j = json::parse(text);
    LayerScheme s;
    s.format = parse_weight_format(j.at("format").get<std::string>());
    s.mode = parse_linear_mode(j.value("mode", std::string("weight_only")));
    s.group_size = j.value("group_size", int64_t{0});
    s.scale_method = parse_scale_method(j.value("scale_method", std::string("absmax")));
    s.act_symmetric = j.value("act_symmetric", true);
    s.full_range = j.value("full_range", true);
    s.weight_symmetric = j.value("weight_symmetric", true);
    s.int8_bits = j.value("int8_bits", 8);
    if (s.int8_bits != 8 && s.int8_bits != 7) {
      throw_format_error("a layer scheme records int8_bits " + std::to_string(s.int8_bits) + "; int8 weights have 8 or 7");
    }
    return s;
  } catch (const json::exception& e) {
    throw_format_error(std::string("a layer scheme is not valid JSON of the expected form: ") + e.what());
  }
}

std::map<std::string, std::string> model_metadata(const std::vector<ModuleRecord>& modules,
                                                  const std::string& recipe_json) {
  std::vector<io::CtModuleScheme> ct;
  json records = json::object();
  std::vector<const ModuleRecord*> sorted;
  for (const ModuleRecord& m : modules) sorted.push_back(&m);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const ModuleRecord* a, const ModuleRecord* b) { return a->name < b->name; });
  for (const ModuleRecord* mp : sorted) {
    const ModuleRecord& m = *mp;
    json r = json::object();
    r["type"] = m.type;
    r["scheme"] = scheme_object(m.scheme);
    r["shape"] = m.shape;
    r["float_dtype"] = m.float_dtype;
    json extra;
    try {
      extra = json::parse(m.extra_json.empty() ? std::string("{}") : m.extra_json);
    } catch (const json::exception& e) {
      throw_invalid_argument("module '" + m.name + "': extra record fields are not JSON: " + e.what());
    }
    if (!extra.is_object()) throw_invalid_argument("module '" + m.name + "': extra record fields must be an object");
    for (auto& [k, v] : extra.items()) r[k] = v;
    records[m.name] = r;
    if (m.scheme.is_half()) continue;
    io::CtModuleScheme c;
    c.module = m.name;
    c.weight_bits = m.scheme.bits();
    c.weight_symmetric = m.scheme.weight_symmetric;
    c.group_size = m.scheme.group_size > 0 ? m.scheme.group_size : -1;
    c.format = m.scheme.ct_format();
    c.activations = m.scheme.mode == LinearMode::weight_only   ? io::CtActivations::none
                    : m.scheme.mode == LinearMode::dynamic_int8
                        ? (m.scheme.format == WeightFormat::int8 && m.scheme.group_size > 0
                               ? io::CtActivations::dynamic_per_group
                               : io::CtActivations::dynamic_per_token)
                                                                : io::CtActivations::static_per_tensor;
    c.activations_symmetric = m.scheme.act_symmetric;
    ct.push_back(std::move(c));
  }
  json info = json::object();
  info["format"] = "monoquant.model";
  info["version"] = 1;
  info["monoquant_version"] = std::string(version);
  info["modules"] = records;
  if (!recipe_json.empty()) {
    try {
      info["recipe"] = json::parse(recipe_json);
    } catch (const json::exception& e) {
      throw_invalid_argument(std::string("the recipe to record is not JSON: ") + e.what());
    }
  }
  std::map<std::string, std::string> out;
  out["monoquant"] = info.dump();
  if (!ct.empty()) out["quantization_config"] = io::quantization_config_json(ct);
  return out;
}

std::string config_json_with_quantization(const std::string& base, const std::map<std::string, std::string>& metadata) {
  json config = json::object();
  if (!base.empty()) {
    try {
      config = json::parse(base);
    } catch (const json::exception& e) {
      throw_format_error(std::string("config.json is not valid JSON: ") + e.what());
    }
    if (!config.is_object()) throw_format_error("config.json is not a JSON object");
  }
  config.erase("quantization_config");
  if (const auto it = metadata.find("quantization_config"); it != metadata.end()) {
    config["quantization_config"] = json::parse(it->second);
  }
  return config.dump(2) + "\n";
}

}  // namespace monoquant::pipeline
