// `monoquant inspect <checkpoint>`: the tensors of a .safetensors file, model
// directory or .pt archive (name, dtype, shape, bytes), its metadata, the
// quantization config and the scheme of each quantized layer.
#include "cli/inspect.hpp"

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/io/reader.hpp"
#include "monoquant/pipeline/model_metadata.hpp"
#include "monoquant/pipeline/quantized_checkpoint.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant::cli {
namespace {

// The recipe a quantized file was made with (monoquant metadata "recipe",
// pipeline/recipe.hpp's canonical form), or null.
nlohmann::ordered_json recipe_of(const io::Checkpoint& ck) {
  const auto it = ck.metadata.find("monoquant");
  if (it == ck.metadata.end()) return nullptr;
  const auto info = nlohmann::ordered_json::parse(it->second, nullptr, false);
  if (!info.is_object() || !info.contains("recipe") || !info["recipe"].is_array()) return nullptr;
  return info["recipe"];
}

// "W4A16-g128", "float", or "?" for a rule this version cannot read.
std::string rule_label(const nlohmann::ordered_json& rule) {
  if (!rule.is_object() || !rule.contains("scheme")) return "?";
  const auto& s = rule["scheme"];
  if (s.is_string()) return s.get<std::string>();
  try {
    return pipeline::scheme_from_json(s.dump()).label();
  } catch (const Error&) {
    return "?";
  }
}

}  // namespace

CLI::App* add_inspect(CLI::App& app, InspectOptions& options) {
  auto* sub = app.add_subcommand("inspect", "List the tensors, dtypes, shapes, metadata and quantized layers of a checkpoint");
  sub->add_option("checkpoint", options.path, ".safetensors file, model directory or .pt/.pth archive")->required();
  sub->add_flag("--summary", options.summary, "Only the totals and the quantized layers, not one line per tensor");
  sub->add_flag("--json", options.json, "Everything as JSON");
  return sub;
}

int run_inspect(const InspectOptions& options) {
  const io::CheckpointContents c = io::read_checkpoint(options.path);
  const io::Checkpoint& ck = c.checkpoint;
  const char* kind = c.pickle ? "torch.save archive" : "safetensors";
  uint64_t total = 0;
  for (const auto& t : ck.tensors) total += t.nbytes();
  const std::string qcfg = pipeline::quantization_config_of(options.path, ck);
  const auto modules = pipeline::quantized_modules(ck, qcfg);
  auto dtype_name = [](io::FileDType d) {
    return std::string(io::torch_name(d).empty() ? io::safetensors_name(d) : io::torch_name(d));
  };
  if (options.json) {
    using json = nlohmann::ordered_json;
    json j = json::object();
    j["path"] = options.path;
    j["kind"] = kind;
    j["tensor_bytes"] = total;
    json meta = json::object();
    for (const auto& [k, v] : ck.metadata) meta[io::printable(k)] = io::printable(v);
    j["metadata"] = meta;
    j["quantization_config"] = qcfg.empty() ? json(nullptr) : json::parse(qcfg, nullptr, false);
    json layers = json::array();
    for (const auto& m : modules) {
      layers.push_back({{"module", m.module}, {"scheme", m.label}, {"format", m.format}, {"bits", m.bits},
                        {"group_size", m.group_size}, {"symmetric", m.symmetric}, {"activations", m.activations},
                        {"shape", m.weight_shape}, {"bytes", m.bytes}});
    }
    j["quantized_layers"] = layers;
    j["recipe"] = recipe_of(ck);
    json tensors = json::array();
    for (const auto& t : ck.tensors) {
      tensors.push_back({{"name", io::printable(t.name)}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape},
                         {"bytes", t.nbytes()}, {"contiguous", t.is_contiguous()}});
    }
    j["tensors"] = tensors;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s: %s, %zu tensors, %llu bytes of tensor data\n", options.path.c_str(), kind, ck.tensors.size(),
              static_cast<unsigned long long>(total));
  for (const auto& [k, v] : ck.metadata) {
    const std::string shown = v.size() > 200 ? v.substr(0, 200) + "..." : v;
    std::printf("metadata %s = %s\n", io::printable(k).c_str(), io::printable(shown).c_str());
  }
  if (!modules.empty()) {
    std::printf("%zu quantized layers:\n", modules.size());
    for (const auto& m : modules) {
      std::printf("  %-56s %-20s %-16s %-16s %12llu\n", io::printable(m.module).c_str(), m.label.c_str(),
                  m.format.c_str(), shape_to_string(m.weight_shape).c_str(), static_cast<unsigned long long>(m.bytes));
    }
  }
  if (const auto recipe = recipe_of(ck); recipe.is_array()) {
    std::printf("recipe (%zu rules, the first match wins):\n", recipe.size());
    for (const auto& rule : recipe) {
      const std::string match = rule.is_object() && rule.contains("match") && rule["match"].is_string()
                                    ? rule["match"].get<std::string>() : "?";
      std::string method;
      if (rule.is_object() && rule.contains("method") && rule["method"].is_string()) {
        method = " (method " + rule["method"].get<std::string>() + ")";
      }
      std::printf("  %-56s %s%s\n", io::printable(match).c_str(), rule_label(rule).c_str(), method.c_str());
    }
  }
  if (options.summary) return 0;
  for (const auto& t : ck.tensors) {
    std::printf("%-60s %-14s %-20s %12zu%s\n", io::printable(t.name).c_str(), dtype_name(t.dtype).c_str(),
                shape_to_string(t.shape).c_str(), t.nbytes(), t.is_contiguous() ? "" : " (strided view)");
  }
  return 0;
}

}  // namespace monoquant::cli
