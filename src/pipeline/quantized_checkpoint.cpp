#include "monoquant/pipeline/quantized_checkpoint.hpp"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/half.hpp"
#include "monoquant/io/compressed_tensors.hpp"

namespace monoquant::pipeline {
namespace {

using json = nlohmann::json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string label_of(const QuantizedModuleInfo& m) {
  if (m.format == "float16") return "FP16";
  if (m.format == "bfloat16") return "BF16";
  std::string s = "W" + std::to_string(m.bits) + (m.activations == "none" ? "A16" : "A8");
  if (m.activations != "none") s += "-" + m.activations;
  if (m.group_size > 0) s += "-g" + std::to_string(m.group_size);
  if (!m.symmetric) s += "-asym";
  return s;
}

double as_double(const io::TensorRecord& r, int64_t i) {
  const std::byte* p = r.data() + static_cast<std::size_t>(i) * io::element_size(r.dtype);
  switch (r.dtype) {
    case io::FileDType::f32: { float v; std::memcpy(&v, p, 4); return v; }
    case io::FileDType::f64: { double v; std::memcpy(&v, p, 8); return v; }
    case io::FileDType::f16: { uint16_t v; std::memcpy(&v, p, 2); return f16_bits_to_f32(v); }
    case io::FileDType::bf16: { uint16_t v; std::memcpy(&v, p, 2); return bf16_bits_to_f32(v); }
    case io::FileDType::i8: return static_cast<double>(static_cast<int8_t>(*p));
    case io::FileDType::u8: return static_cast<double>(static_cast<uint8_t>(*p));
    case io::FileDType::i32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case io::FileDType::i64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    default: throw_format_error("tensor '" + r.name + "' has an unexpected dtype");
  }
}

}  // namespace

std::string quantization_config_of(const std::string& path, const io::Checkpoint& ck) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    std::ifstream f(path + "/config.json");
    if (f) {
      std::ostringstream s;
      s << f.rdbuf();
      const json cfg = json::parse(s.str(), nullptr, false);
      if (cfg.is_object() && cfg.contains("quantization_config")) return cfg["quantization_config"].dump();
    }
  }
  const auto it = ck.metadata.find("quantization_config");
  return it == ck.metadata.end() ? "" : it->second;
}

std::vector<QuantizedModuleInfo> quantized_modules(const io::Checkpoint& ck, const std::string& quantization_config) {
  struct Group {
    std::vector<std::string> targets;
    QuantizedModuleInfo args;
  };
  std::vector<Group> groups;
  if (!quantization_config.empty()) {
    const json cfg = json::parse(quantization_config, nullptr, false);
    if (!cfg.is_object()) throw_format_error("quantization_config is not a JSON object");
    const std::string top = cfg.value("format", std::string());
    if (cfg.contains("config_groups") && cfg["config_groups"].is_object()) {
      for (const auto& [name, g] : cfg["config_groups"].items()) {
        if (!g.is_object() || !g.contains("weights") || !g["weights"].is_object()) continue;
        Group gr;
        const auto& w = g["weights"];
        gr.args.bits = w.value("num_bits", 8);
        gr.args.symmetric = w.value("symmetric", true);
        gr.args.group_size = w.contains("group_size") && w["group_size"].is_number_integer() ? w["group_size"].get<int64_t>() : -1;
        gr.args.format = g.contains("format") && g["format"].is_string() ? g["format"].get<std::string>() : top;
        if (g.contains("input_activations") && g["input_activations"].is_object()) {
          gr.args.activations = g["input_activations"].value("dynamic", false) ? "dynamic" : "static";
        }
        if (g.contains("targets") && g["targets"].is_array()) {
          for (const auto& t : g["targets"]) {
            if (t.is_string()) gr.targets.push_back(t.get<std::string>());
          }
        }
        groups.push_back(std::move(gr));
      }
    }
  }
  // monoquant's own record of float16/bfloat16 layers (compressed-tensors has no scheme for them).
  std::map<std::string, std::string> half_modules;
  if (const auto it = ck.metadata.find("monoquant"); it != ck.metadata.end()) {
    const json info = json::parse(it->second, nullptr, false);
    if (info.is_object() && info.value("format", std::string()) == "monoquant.model" && info.contains("modules") &&
        info["modules"].is_object()) {
      for (const auto& [name, rec] : info["modules"].items()) {
        if (rec.is_object() && rec.contains("scheme") && rec["scheme"].is_object()) {
          const std::string f = rec["scheme"].value("format", std::string());
          if (f == "float16" || f == "bfloat16") half_modules[name] = f;
        }
      }
    }
  }
  std::vector<QuantizedModuleInfo> out;
  for (const auto& r : ck.tensors) {
    std::string module;
    if (ends_with(r.name, ".weight_scale")) module = r.name.substr(0, r.name.size() - 13);
    else if (ends_with(r.name, ".weight") && half_modules.count(r.name.substr(0, r.name.size() - 7))) {
      module = r.name.substr(0, r.name.size() - 7);
    } else {
      continue;
    }
    QuantizedModuleInfo m;
    if (const auto h = half_modules.find(module); h != half_modules.end()) {
      m.format = h->second;
      m.bits = 16;
      m.weight_shape = r.shape;
    } else {
      const Group* found = nullptr;
      for (const auto& g : groups) {
        for (const auto& t : g.targets) {
          if (io::ct_target_matches(t, module)) found = &g;
        }
        if (found) break;
      }
      if (!found && groups.size() == 1) found = &groups[0];  // class-name targets ("Linear")
      if (!found) throw_format_error("module '" + module + "' has a weight_scale but no config group describes it");
      m = found->args;
      const io::TensorRecord* shape = ck.find(module + ".weight_shape");
      const io::TensorRecord* weight = ck.find(module + ".weight");
      if (shape && shape->numel() == 2) m.weight_shape = {static_cast<int64_t>(as_double(*shape, 0)), static_cast<int64_t>(as_double(*shape, 1))};
      else if (weight) m.weight_shape = weight->shape;
    }
    m.module = module;
    m.label = label_of(m);
    for (const auto& t : ck.tensors) {
      if (t.name.rfind(module + ".", 0) == 0 && t.name.find('.', module.size() + 1) == std::string::npos) m.bytes += t.nbytes();
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<std::string> check_integrity(const io::Checkpoint& ck, const std::vector<QuantizedModuleInfo>& modules) {
  std::vector<std::string> problems;
  auto bad = [&](const std::string& module, const std::string& what) { problems.push_back("'" + module + "': " + what); };
  for (const auto& m : modules) {
    if (m.bits == 16) continue;
    const std::string p = m.module + ".";
    const io::TensorRecord* scale = ck.find(p + "weight_scale");
    const io::TensorRecord* weight = ck.find(p + "weight");
    const io::TensorRecord* packed = ck.find(p + "weight_packed");
    if (m.weight_shape.size() != 2) {
      bad(m.module, "no 2-D weight shape (weight_shape or weight)");
      continue;
    }
    const int64_t n = m.weight_shape[0], k = m.weight_shape[1];
    if (n <= 0 || k <= 0) {
      bad(m.module, "weight shape " + shape_to_string(m.weight_shape) + " is empty or negative");
      continue;
    }
    if (m.bits != 4 && m.bits != 8 && m.bits != 7) bad(m.module, std::to_string(m.bits) + "-bit weights");
    if (m.bits == 7 && packed) bad(m.module, "7-bit weights packed into int32 words (they are stored as int8 tensors)");
    // The signed range of the codes and zero points: [-8, 7], [-64, 63], [-128, 127].
    const int lo = m.bits >= 4 && m.bits <= 8 ? -(1 << (m.bits - 1)) : -128, hi = -lo - 1;
    const int64_t groups = m.group_size > 0 ? (k + m.group_size - 1) / m.group_size : 1;
    if (m.group_size > 0 && k % m.group_size) bad(m.module, "K = " + std::to_string(k) + " is not a multiple of group_size " + std::to_string(m.group_size));
    if (!scale || !(scale->dtype == io::FileDType::f32 || scale->dtype == io::FileDType::f16 || scale->dtype == io::FileDType::bf16)) {
      bad(m.module, "weight_scale missing or not floating point");
    } else if (scale->numel() != n * groups && scale->numel() != 1) {
      bad(m.module, "weight_scale " + shape_to_string(scale->shape) + " does not fit " + std::to_string(n) + " x " + std::to_string(groups) + " scales");
    } else {
      for (int64_t i = 0; i < scale->numel(); ++i) {
        const double s = as_double(*scale, i);
        if (!std::isfinite(s) || s <= 0) {
          bad(m.module, "weight_scale element " + std::to_string(i) + " is " + std::to_string(s) + " (scales must be finite and > 0)");
          break;
        }
      }
    }
    if (packed) {
      const int64_t per_word = 32 / std::max(1, m.bits);
      if (packed->dtype != io::FileDType::i32 || packed->shape != Shape{n, (k + per_word - 1) / per_word}) {
        bad(m.module, "weight_packed " + shape_to_string(packed->shape) + " does not fit weight_shape [" + std::to_string(n) + ", " + std::to_string(k) + "]");
      }
    } else if (weight) {
      if (weight->dtype != io::FileDType::i8 || weight->shape != Shape{n, k}) {
        bad(m.module, "weight must be int8 [N, K], got " + shape_to_string(weight->shape));
      } else if (m.bits != 8 || m.symmetric) {
        for (int64_t i = 0; i < weight->numel(); ++i) {
          const double q = as_double(*weight, i);
          if (q < lo || q > hi) {
            bad(m.module, "code " + std::to_string(static_cast<int>(q)) + " at element " + std::to_string(i) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
            break;
          }
        }
      }
    } else {
      bad(m.module, "neither weight nor weight_packed");
    }
    if (const io::TensorRecord* zp = ck.find(p + "weight_zero_point"); zp && !packed) {
      for (int64_t i = 0; i < zp->numel(); ++i) {
        const double z = as_double(*zp, i);
        if (z < lo || z > hi) {
          bad(m.module, "weight_zero_point " + std::to_string(static_cast<int>(z)) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
          break;
        }
      }
    }
    if (m.activations == "static") {
      const io::TensorRecord* is = ck.find(p + "input_scale");
      if (!is || is->numel() < 1) {
        bad(m.module, "static activations without input_scale");
      } else {
        const double s = as_double(*is, 0);
        if (!std::isfinite(s) || s <= 0) bad(m.module, "input_scale is " + std::to_string(s) + " (must be finite and > 0)");
      }
      if (const io::TensorRecord* iz = ck.find(p + "input_zero_point"); iz && iz->numel() >= 1) {
        const double z = as_double(*iz, 0);
        if (z < -128 || z > 127) bad(m.module, "input_zero_point " + std::to_string(static_cast<int>(z)) + " is outside [-128, 127]");
      }
    }
  }
  return problems;
}

}  // namespace monoquant::pipeline
