// `monoquant validate` and `monoquant compare`: checking quantized
// checkpoints, on their own (integrity of every quantized tensor) and
// against a float original (per-layer SQNR), or any two checkpoints against
// each other. Both look at checkpoints as float tensors: quantized layers
// are dequantized with monoquant's dequantize first.
#include <cmath>
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/check.hpp"
#include "cli/common.hpp"
#include "cli/exit_codes.hpp"
#include "monoquant/error.hpp"
#include "monoquant/io/compressed_tensors.hpp"
#include "monoquant/io/reader.hpp"
#include "monoquant/metrics.hpp"
#include "monoquant/pipeline/quantize_checkpoint.hpp"
#include "monoquant/pipeline/quantized_checkpoint.hpp"

namespace monoquant::cli {
namespace {

using json = nlohmann::ordered_json;

struct FloatView {
  std::map<std::string, Tensor> tensors;   // floating tensors as float32 (quantized layers dequantized)
  std::map<std::string, uint64_t> bytes;   // per tensor or module: bytes as stored
  std::vector<pipeline::QuantizedModuleInfo> modules;
  io::CheckpointContents contents;
};

FloatView float_view(const std::string& path) {
  FloatView v;
  v.contents = io::read_checkpoint(path);
  const io::Checkpoint& ck = v.contents.checkpoint;
  const std::string qcfg = pipeline::quantization_config_of(path, ck);
  v.modules = pipeline::quantized_modules(ck, qcfg);
  std::map<std::string, std::string> owner;  // tensor -> its quantized module
  for (const auto& m : v.modules) {
    for (const auto& t : ck.tensors) {
      if (t.name.rfind(m.module + ".", 0) == 0 && t.name.find('.', m.module.size() + 1) == std::string::npos &&
          t.name != m.module + ".bias") {
        owner[t.name] = m.module;
      }
    }
  }
  for (const auto& t : ck.tensors) {
    const auto it = owner.find(t.name);
    v.bytes[it == owner.end() ? t.name : it->second + ".weight"] += t.nbytes();
  }
  if (!qcfg.empty()) {
    for (auto& [name, t] : io::decompress_tensors(ck, qcfg)) {
      if (is_floating(t.dtype())) v.tensors[name] = to_contiguous_f32(t.view());
    }
  } else {
    for (const auto& r : ck.tensors) {
      const auto core = io::to_core(r.dtype);
      if (core && is_floating(*core)) v.tensors[r.name] = to_contiguous_f32(r.view());
    }
  }
  return v;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::isinf(v) ? (v > 0 ? "inf" : "-inf") : "%.2f", v);
  return buf;
}

}  // namespace

CLI::App* add_validate(CLI::App& app, ValidateOptions& o) {
  auto* sub = app.add_subcommand("validate", "Check a quantized checkpoint: every quantized tensor's integrity; "
                                             "with --original, per-layer SQNR and warnings");
  sub->add_option("quantized", o.input, "A quantized .safetensors, .pt or model directory")->required();
  sub->add_option("--original", o.original, "The float checkpoint it was made from");
  sub->add_flag("--json", o.json, "The result as JSON");
  sub->add_flag("--strict", o.strict, "Warnings (SQNR under 20 dB) are errors: exit 8");
  return sub;
}

int run_validate(const ValidateOptions& o) {
  const io::CheckpointContents c = io::read_checkpoint(o.input);
  const io::Checkpoint& ck = c.checkpoint;
  const auto modules = pipeline::quantized_modules(ck, pipeline::quantization_config_of(o.input, ck));
  std::vector<std::string> problems = pipeline::check_integrity(ck, modules);
  if (modules.empty()) problems.push_back("no quantized layer found (no weight_scale tensors and no monoquant FP16 layers)");
  std::vector<std::string> warnings;
  json layers = json::array();
  if (!o.original.empty() && problems.empty()) {
    const FloatView q = float_view(o.input);
    const FloatView f = float_view(o.original);
    for (const auto& m : modules) {
      const std::string w = m.module + ".weight";
      const auto qi = q.tensors.find(w);
      const auto fi = f.tensors.find(w);
      if (fi == f.tensors.end()) {
        problems.push_back("'" + m.module + "': the original has no " + w);
        continue;
      }
      if (qi == q.tensors.end() || qi->second.numel() != fi->second.numel()) {
        problems.push_back("'" + m.module + "': shape differs from the original's " + shape_to_string(fi->second.shape()));
        continue;
      }
      const ErrorMetrics e = compare(fi->second.view(), TensorView(qi->second.data(), DType::f32, fi->second.shape()));
      layers.push_back({{"module", m.module}, {"scheme", m.label}, {"sqnr_db", std::isfinite(e.sqnr_db) ? json(e.sqnr_db) : json("inf")},
                        {"cosine", e.cosine_similarity}, {"max_abs_error", e.max_abs_error}});
      if (e.sqnr_db < pipeline::kSqnrWarnDb) {
        warnings.push_back("'" + m.module + "' weight SQNR " + num(e.sqnr_db) + " dB (< 20 dB)" +
                           (e.sqnr_db < pipeline::kSqnrCriticalDb ? ": CRITICAL" : ": accuracy at risk"));
      }
    }
  }
  const int rc = !problems.empty() ? validation_failed : (o.strict && !warnings.empty() ? warnings_as_errors : ok);
  if (o.json) {
    json j = {{"path", o.input}, {"ok", problems.empty()}, {"quantized_layers", modules.size()},
              {"problems", problems}, {"warnings", warnings}, {"layers", layers}};
    std::printf("%s\n", j.dump(2).c_str());
    return rc;
  }
  for (const auto& l : layers) {
    std::printf("%-60s %-18s SQNR %8s dB  cosine %.6f\n", l["module"].get<std::string>().c_str(),
                l["scheme"].get<std::string>().c_str(),
                l["sqnr_db"].is_string() ? "inf" : num(l["sqnr_db"].get<double>()).c_str(), l["cosine"].get<double>());
  }
  for (const auto& p : problems) std::printf("problem: %s\n", p.c_str());
  for (const auto& w : warnings) std::printf("warning: %s\n", w.c_str());
  std::printf("%s: %zu quantized layers, %s\n", o.input.c_str(), modules.size(),
              problems.empty() ? "valid" : (std::to_string(problems.size()) + " problems: INVALID").c_str());
  return rc;
}

CLI::App* add_compare(CLI::App& app, CompareOptions& o) {
  auto* sub = app.add_subcommand("compare", "Compare two checkpoints tensor by tensor (SQNR, max error, cosine, sizes)");
  sub->add_option("a", o.a, "The reference checkpoint")->required();
  sub->add_option("b", o.b, "The checkpoint to compare with it")->required();
  sub->add_flag("--json", o.json, "The result as JSON");
  return sub;
}

int run_compare(const CompareOptions& o) {
  const FloatView a = float_view(o.a);
  const FloatView b = float_view(o.b);
  json rows = json::array();
  std::vector<std::string> only_a, only_b, mismatched;
  double ref_energy = 0, err_energy = 0;
  for (const auto& [name, ta] : a.tensors) {
    const auto it = b.tensors.find(name);
    if (it == b.tensors.end()) {
      only_a.push_back(name);
      continue;
    }
    if (it->second.shape() != ta.shape()) {
      mismatched.push_back(name + " " + shape_to_string(ta.shape()) + " vs " + shape_to_string(it->second.shape()));
      continue;
    }
    const ErrorMetrics e = compare(ta.view(), it->second.view());
    ref_energy += e.reference_energy;
    err_energy += e.error_energy;
    const auto ba = a.bytes.find(name), bb = b.bytes.find(name);
    rows.push_back({{"tensor", name}, {"shape", ta.shape()},
                    {"sqnr_db", std::isfinite(e.sqnr_db) ? json(e.sqnr_db) : json(e.sqnr_db > 0 ? "inf" : "-inf")},
                    {"max_abs_error", e.max_abs_error}, {"cosine", e.cosine_similarity},
                    {"bytes_a", ba == a.bytes.end() ? 0 : ba->second}, {"bytes_b", bb == b.bytes.end() ? 0 : bb->second}});
  }
  for (const auto& [name, tb] : b.tensors) {
    if (!a.tensors.count(name)) only_b.push_back(name);
  }
  const double total = err_energy > 0 ? 10 * std::log10(ref_energy / err_energy) : INFINITY;
  if (o.json) {
    json j = {{"a", o.a}, {"b", o.b}, {"tensors", rows}, {"only_in_a", only_a}, {"only_in_b", only_b},
              {"shape_mismatch", mismatched}, {"total_sqnr_db", std::isfinite(total) ? json(total) : json("inf")}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%-60s %10s %12s %10s %12s %12s\n", "tensor", "SQNR dB", "max error", "cosine", "bytes A", "bytes B");
    for (const auto& r : rows) {
      std::printf("%-60s %10s %12.4g %10.6f %12llu %12llu\n", r["tensor"].get<std::string>().c_str(),
                  r["sqnr_db"].is_string() ? r["sqnr_db"].get<std::string>().c_str() : num(r["sqnr_db"].get<double>()).c_str(),
                  r["max_abs_error"].get<double>(), r["cosine"].get<double>(),
                  static_cast<unsigned long long>(r["bytes_a"].get<uint64_t>()),
                  static_cast<unsigned long long>(r["bytes_b"].get<uint64_t>()));
    }
    for (const auto& n : only_a) std::printf("only in %s: %s\n", o.a.c_str(), n.c_str());
    for (const auto& n : only_b) std::printf("only in %s: %s\n", o.b.c_str(), n.c_str());
    for (const auto& n : mismatched) std::printf("shapes differ: %s\n", n.c_str());
    std::printf("%zu tensors compared; SQNR over all of them %s dB\n", rows.size(), num(total).c_str());
  }
  return mismatched.empty() ? ok : validation_failed;
}

}  // namespace monoquant::cli
