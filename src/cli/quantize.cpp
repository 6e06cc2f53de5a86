// `monoquant quantize MODEL -o OUT --bits 8|7|4|16 ...`: the checkpoint
// pipeline (src/pipeline) from the command line.
#include "cli/quantize.hpp"

#include <cstdio>
#include <set>

#include <nlohmann/json.hpp>

#include "cli/common.hpp"
#include "cli/exit_codes.hpp"
#include "cli/model_run.hpp"
#include "monoquant/calibration_stats.hpp"
#include "monoquant/error.hpp"
#include "monoquant/io/reader.hpp"
#include "monoquant/pipeline/compressed_layout.hpp"
#include "monoquant/pipeline/quantize_checkpoint.hpp"
#include "monoquant/pipeline/quantized_checkpoint.hpp"
#include "monoquant/thread_pool.hpp"

namespace monoquant::cli {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A checkpoint that already holds quantized layers (ours or another tool's).
std::string quantized_evidence(const io::Checkpoint& ck, const std::string& path) {
  if (ck.metadata.count("quantization_config")) return "its metadata has a quantization_config";
  if (is_directory(path) && exists(path + "/config.json")) {
    const auto cfg = nlohmann::json::parse(read_text(path + "/config.json"), nullptr, false);
    if (cfg.is_object() && cfg.contains("quantization_config")) return "its config.json has a quantization_config";
  }
  for (const auto& t : ck.tensors) {
    if (ends_with(t.name, ".weight_scale") || ends_with(t.name, ".weight_packed")) {
      return "it holds '" + t.name + "'";
    }
  }
  return "";
}

// The records of the layers an input already has quantized: monoquant's own
// metadata when present, else what its quantization_config says.
std::vector<pipeline::ModuleRecord> existing_records(const io::Checkpoint& ck, const std::string& path) {
  std::map<std::string, pipeline::ModuleRecord> ours;
  if (const auto it = ck.metadata.find("monoquant"); it != ck.metadata.end()) {
    const auto info = nlohmann::json::parse(it->second, nullptr, false);
    if (info.is_object() && info.value("format", std::string()) == "monoquant.model" && info.contains("modules")) {
      for (const auto& [name, rec] : info["modules"].items()) {
        pipeline::ModuleRecord r;
        r.name = name;
        r.scheme = pipeline::scheme_from_json(rec.at("scheme").dump());
        r.type = rec.value("type", std::string("Linear"));
        r.shape = rec.value("shape", Shape{});
        r.float_dtype = rec.value("float_dtype", std::string("float32"));
        nlohmann::json extra = rec;
        for (const char* k : {"type", "scheme", "shape", "float_dtype"}) extra.erase(k);
        r.extra_json = extra.dump();
        ours[name] = std::move(r);
      }
    }
  }
  std::vector<pipeline::ModuleRecord> out;
  for (const auto& m : pipeline::quantized_modules(ck, pipeline::quantization_config_of(path, ck))) {
    if (const auto it = ours.find(m.module); it != ours.end()) {
      out.push_back(it->second);
      continue;
    }
    if (!m.symmetric && !m.activations.empty() && m.activations != "none") {
      throw_unsupported("'" + m.module + "' has asymmetric weights with int8 activations, which --force cannot carry over");
    }
    pipeline::ModuleRecord r;
    r.name = m.module;
    r.scheme.format = m.bits == 4 ? WeightFormat::int4 : WeightFormat::int8;
    if (m.bits == 7) r.scheme.int8_bits = 7;
    r.scheme.mode = m.activations == "dynamic" ? LinearMode::dynamic_int8
                    : m.activations == "static" ? LinearMode::static_int8 : LinearMode::weight_only;
    r.scheme.group_size = m.bits == 4 ? (m.group_size > 0 ? m.group_size : (m.weight_shape.size() == 2 ? m.weight_shape[1] : 0)) : 0;
    r.scheme.act_symmetric = ck.find(m.module + ".input_zero_point") == nullptr;
    r.scheme.weight_symmetric = m.symmetric;
    r.shape = m.weight_shape;
    out.push_back(std::move(r));
  }
  return out;
}

// Never touch the input: the output may not be the input or one of its files.
void refuse_output_in_input(const std::string& input, const std::string& output) {
  if (output.empty()) return;
  if (same_path(input, output)) throw_invalid_argument("the output " + output + " is the input; choose another path");
  if (!is_directory(input)) return;
  std::set<std::string> files = {"model.safetensors", "model.safetensors.index.json", "config.json"};
  const std::string idx = input + "/model.safetensors.index.json";
  if (exists(idx)) {
    const auto index = nlohmann::json::parse(read_text(idx), nullptr, false);
    if (index.is_object() && index.contains("weight_map") && index["weight_map"].is_object()) {
      for (const auto& [k, v] : index["weight_map"].items()) {
        if (v.is_string()) files.insert(v.get<std::string>());
      }
    }
  }
  for (const auto& f : files) {
    if (same_path(input + "/" + f, output)) throw_invalid_argument("the output " + output + " is a file of the input");
  }
}

pipeline::LayerScheme scheme_from(const QuantizeOptions& o) {
  pipeline::LayerScheme s;
  const int modes = o.dynamic + o.weight_only + o.is_static;
  if (modes > 1) throw_invalid_argument("choose one of --dynamic, --weight-only or --static");
  if (o.bits == 16) {
    if (o.dynamic || o.is_static) throw_invalid_argument("--bits 16 stores float16/bfloat16 weights: no --dynamic or --static");
    if (!o.scale_method.empty() || o.group_size) throw_invalid_argument("--scale-method and --group-size apply to --bits 8 and 4");
    s.format = o.dtype == "bf16" ? WeightFormat::bf16 : WeightFormat::f16;
    s.mode = LinearMode::weight_only;
    return s;
  }
  if (!o.dtype.empty()) throw_invalid_argument("--dtype applies to --bits 16 only");
  // --bits 7: int8 codes in [-63, 63] (W7A8), for CPUs without VNNI.
  const bool int8 = o.bits == 8 || o.bits == 7;
  s.format = int8 ? WeightFormat::int8 : WeightFormat::int4;
  s.int8_bits = o.bits == 7 ? 7 : 8;
  if (o.bits == 7 && o.weight_only) {
    throw_invalid_argument("--bits 7 is for int8 activations (--dynamic or --static): weight-only takes --bits 8 or 4");
  }
  s.mode = o.is_static ? LinearMode::static_int8
           : o.weight_only ? LinearMode::weight_only
           : o.dynamic ? LinearMode::dynamic_int8
           : (int8 ? LinearMode::dynamic_int8 : LinearMode::weight_only);
  if (s.mode == LinearMode::static_int8 && o.calibration.empty()) {
    throw_invalid_argument("--static needs --calibration STATS (the file monoquant.save_calibration writes)");
  }
  if (s.mode != LinearMode::static_int8 && !o.calibration.empty()) {
    throw_invalid_argument("--calibration is only used with --static");
  }
  if (o.scheme == "asymmetric" && s.mode == LinearMode::dynamic_int8) {
    throw_unsupported("--scheme asymmetric applies to --weight-only (weights with a zero point per group / channel) "
                      "and to --static activations (a zero point per tensor); dynamic activations are symmetric per "
                      "token and their kernels take symmetric weights");
  }
  // As the Python API: static INT8 activations asymmetric unless asked
  // otherwise; weight-only --scheme asymmetric gives the weights zero points.
  s.act_symmetric = s.mode != LinearMode::static_int8 ? true
                    : o.scheme.empty()                ? !int8
                                                      : o.scheme == "symmetric";
  s.weight_symmetric = !(s.mode == LinearMode::weight_only && o.scheme == "asymmetric");
  s.group_size = o.bits == 4 ? (o.group_size ? o.group_size : 128) : 0;
  if (int8 && o.group_size) {
    throw_invalid_argument("--group-size applies to --bits 4 (int8 has one scale per output channel; "
                           "--act-group-size quantizes int8 weights and activations in groups)");
  }
  if (o.act_group_size) {
    if (!int8 || s.mode != LinearMode::dynamic_int8) {
      throw_invalid_argument("--act-group-size applies to --bits 8 (or 7) with dynamic activations");
    }
    s.group_size = o.act_group_size;
  }
  s.scale_method = o.scale_method.empty() ? (o.bits == 4 ? ScaleMethod::mse : ScaleMethod::absmax)
                                          : parse_scale_method(o.scale_method);
  s.full_range = o.int4_range == "full";
  s.validate();
  return s;
}

std::map<std::string, pipeline::ActivationParams> activations_from(const std::string& path, bool symmetric) {
  const CalibrationStats stats = load_calibration(path);
  std::map<std::string, pipeline::ActivationParams> out;
  for (const auto& e : stats.entries) {
    if (e.tensor != "input" || e.observer->count() == 0) continue;
    Tensor scales, zps;
    e.observer->calculate_qparams(8, symmetric ? Scheme::symmetric : Scheme::asymmetric, scales, zps);
    if (scales.numel() != 1) throw_unsupported(path + ": module '" + e.module + "' has per-channel statistics; static "
                                               "activations take one scale per tensor");
    pipeline::ActivationParams a;
    a.scale = scales.as<float>()[0];
    a.zero_point = zps.numel() ? zps.as<int32_t>()[0] : 0;
    out[e.module] = a;
  }
  if (out.empty()) throw_invalid_argument(path + ": no module has input statistics");
  return out;
}

io::OutputKind output_kind(const QuantizeOptions& o) {
  if (o.format.empty()) return io::output_kind_for_path(o.output);
  if (o.format == "safetensors") return io::OutputKind::safetensors;
  if (o.format == "pt") return io::OutputKind::pytorch;
  return io::OutputKind::directory;
}

std::string plan_json(const pipeline::Plan& plan) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& e : plan.entries) {
    nlohmann::ordered_json r = nlohmann::ordered_json::object();
    r["tensor"] = e.tensor;
    r["role"] = std::string(pipeline::name_of(e.role));
    r["shape"] = e.shape;
    r["quantize"] = e.quantize;
    r["scheme"] = e.quantize ? e.scheme.label() : "float";
    r["reason"] = e.reason;
    rows.push_back(r);
  }
  j["plan"] = rows;
  j["warnings"] = plan.warnings;
  j["notes"] = plan.notes;
  return j.dump(2);
}

}  // namespace

CLI::App* add_quantize(CLI::App& app, QuantizeOptions& o) {
  auto* sub = app.add_subcommand("quantize", "Quantize a checkpoint (.safetensors, .pt, model directory) to int8/int4/fp16/bf16");
  sub->add_option("model", o.model, "Input: a .safetensors file, a .pt/.pth state_dict or a model directory");
  sub->add_option("--model", o.model_flag, "The input, as a flag");
  sub->add_option("-o,--output", o.output, "Output: .safetensors, .pt, or a directory");
  sub->add_option("--bits", o.bits,
                  "8 (int8 per channel), 7 (int8 codes in [-63, 63]: W7A8, faster on CPUs without VNNI), 4 (int4 "
                  "groups) or 16 (float16/bfloat16)")
      ->check(CLI::IsMember({8, 7, 4, 16}));
  auto* dyn = sub->add_flag("--dynamic", o.dynamic, "Activations quantized per token at run time (default for --bits 8)");
  auto* wo = sub->add_flag("--weight-only", o.weight_only, "Float activations (default for --bits 4 and 16)");
  auto* st = sub->add_flag("--static", o.is_static, "Calibrated activations (needs --calibration)");
  dyn->excludes(wo)->excludes(st);
  wo->excludes(st);
  sub->add_option("--calibration", o.calibration, "Calibration statistics (monoquant.save_calibration)");
  sub->add_option("--scheme", o.scheme, "symmetric|asymmetric: of the weights with --weight-only (a zero point per group / "
                  "channel), of the activations with --static")
      ->check(CLI::IsMember({"symmetric", "asymmetric"}));
  sub->add_option("--group-size", o.group_size, "int4: elements of K per scale (default 128)")->check(CLI::PositiveNumber);
  sub->add_option("--scale-method", o.scale_method, "absmax|mse|hqq (default mse for --bits 4)")
      ->check(CLI::IsMember({"absmax", "mse", "hqq"}));
  sub->add_option("--act-group-size", o.act_group_size,
                  "--bits 8 --dynamic: int8 weights and per-token activations both in groups of this many along K "
                  "(32, 64, 128), integer dots per group (llama.cpp's Q8_0 idea)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--int4-range", o.int4_range,
                  "full: codes [-8, 7], scale absmax/7.5 (compressed-tensors' convention, the default); "
                  "restricted: [-7, 7], absmax/7")
      ->check(CLI::IsMember({"full", "restricted"}));
  sub->add_option("--dtype", o.dtype, "--bits 16: f16|bf16 (default f16)")->check(CLI::IsMember({"f16", "bf16"}));
  sub->add_option("--skip", o.skip, "Keep this module or tensor (NAME or re:REGEX); repeatable");
  sub->add_option("--only", o.only, "Quantize only these (NAME or re:REGEX); repeatable");
  sub->add_option("--override", o.overrides, "PATTERN=BITS, e.g. 're:.*down_proj.*=8'; repeatable");
  sub->add_option("--recipe", o.recipe,
                  "Per-layer schemes: a JSON file {NAME | re:REGEX | type:NAME: \"float\" | {bits, mode, group_size, "
                  "scale_method, int4_range, act_group_size, dtype, scheme}}; the first matching rule wins");
  sub->add_option("--min-params", o.min_params, "Keep tensors with fewer parameters (default 512 for --bits 4)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--quantize-embeddings", o.quantize_embeddings, "Also quantize embeddings (weight-only)");
  sub->add_option("--format", o.format, "safetensors|pt|dir (default: from the output path)")
      ->check(CLI::IsMember({"safetensors", "pt", "dir"}));
  sub->add_option("--max-shard-size", o.max_shard_size, "Directory output: shard size, e.g. 5GB");
  sub->add_option("--threads", o.threads, "Worker threads")->check(CLI::Range(1, 4096));
  sub->add_flag("--json", o.json, "Print the report (or the plan) as JSON");
  sub->add_flag("--quiet", o.quiet, "No progress and no table");
  sub->add_flag("--dry-run", o.dry_run, "Print the plan with reasons; write nothing");
  sub->add_flag("--strict", o.strict, "Warnings are errors (exit 8; nothing is written)");
  sub->add_flag("--force", o.force, "Re-quantize a checkpoint that is already quantized");
  sub->add_option("--method", o.method,
                  "rtn (round to nearest, the default) | gptq | awq: gptq and awq run the model (a directory with a "
                  "config.json) on --calibration-data, through the Python API")
      ->check(CLI::IsMember({"rtn", "gptq", "awq"}));
  sub->add_option("--calibration-data", o.calibration_data,
                  "Tokenized calibration inputs: a .safetensors or .pt file of tensors with one sample per row (e.g. "
                  "input_ids, attention_mask), passed to the model's forward as keyword arguments; runs the model in "
                  "Python (for --method, --smoothquant, or --static ranges from data)");
  sub->add_option("--calibration-batch-size", o.calibration_batch_size, "Rows of --calibration-data per forward pass (default 8)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--calibration-samples", o.calibration_samples, "Use at most this many rows of --calibration-data")
      ->check(CLI::PositiveNumber);
  sub->add_option("--observer", o.observer, "--static with --calibration-data: the range estimator (default histogram)")
      ->check(CLI::IsMember({"histogram", "minmax", "moving_average", "percentile", "mse", "auto"}));
  sub->add_flag("--act-order", o.act_order, "--method gptq: quantize columns in order of decreasing Hessian diagonal");
  sub->add_option("--smoothquant", o.smoothquant,
                  "SmoothQuant alpha in (0, 1), e.g. 0.5: move activation outliers into the weights (int8 activations; "
                  "needs --calibration-data)")
      ->check(CLI::Range(0.0, 1.0));
  return sub;
}

int run_quantize(const QuantizeOptions& o) {
  if (!o.model.empty() && !o.model_flag.empty() && o.model != o.model_flag) {
    throw_invalid_argument("give the input once: as MODEL or as --model");
  }
  const std::string input = o.model.empty() ? o.model_flag : o.model;
  if (input.empty()) throw_invalid_argument("no input: monoquant quantize MODEL -o OUT");
  if (o.output.empty() && !o.dry_run) throw_invalid_argument("no output: pass -o OUT (or --dry-run)");
  if (o.threads > 0) set_num_threads(o.threads);
  if (!exists(input)) throw_io_error(input + ": no such file or directory");
  refuse_output_in_input(input, o.output);
  io::CheckpointContents contents = io::read_checkpoint(input);
  const io::Checkpoint& ck = contents.checkpoint;
  const std::string evidence = quantized_evidence(ck, input);
  if (needs_model_run(o)) {
    if (!evidence.empty()) throw_invalid_argument(input + " is already quantized (" + evidence + "); a model run needs a float model");
    run_model_methods(o, input);
  }
  const pipeline::LayerScheme scheme = scheme_from(o);
  if (!evidence.empty() && !o.force) {
    throw_invalid_argument(input + " is already quantized (" + evidence + "); pass --force to quantize its float tensors too");
  }
  // --force: the input's quantized layers are kept as they are and stay described in the output.
  const std::vector<pipeline::ModuleRecord> existing = evidence.empty() ? std::vector<pipeline::ModuleRecord>{}
                                                                        : existing_records(ck, input);

  pipeline::PlanRules rules;
  rules.scheme = scheme;
  rules.skip = o.skip;
  rules.only = o.only;
  for (const auto& text : o.overrides) rules.overrides.push_back(pipeline::parse_override(text));
  if (!o.recipe.empty()) {
    if (!exists(o.recipe)) throw_io_error("--recipe " + o.recipe + ": no such file");
    rules.recipe = pipeline::parse_recipe(read_text(o.recipe), scheme);
    for (const auto& r : rules.recipe) {
      if (!r.method.empty() && r.method != "rtn") {
        throw_invalid_argument("--recipe: rule '" + r.match + "' asks for method '" + r.method +
                               "', which runs the model on calibration data: pass --method " + r.method +
                               " --calibration-data FILE with a model directory");
      }
    }
  }
  rules.min_params = o.min_params;
  rules.quantize_embeddings = o.quantize_embeddings;
  rules.explicit_group_size = o.group_size > 0 || o.act_group_size > 0;
  for (const auto& r : existing) rules.already_quantized.insert(r.name);
  if (scheme.mode == LinearMode::static_int8) rules.activations = activations_from(o.calibration, scheme.act_symmetric);
  std::vector<pipeline::TensorInfo> infos;
  for (const auto& t : ck.tensors) infos.push_back({t.name, t.dtype, t.shape, std::nullopt});
  const pipeline::Plan plan = pipeline::make_plan(infos, rules);

  if (o.dry_run) {
    if (o.json) {
      std::printf("%s\n", plan_json(plan).c_str());
    } else {
      uint64_t after = 0;
      for (const auto& e : plan.entries) {
        for (const auto& s : pipeline::output_specs(e)) after += io::checked_nbytes(s.dtype, s.shape, s.name);
        std::printf("%-60s %-16s %s\n", e.tensor.c_str(), e.quantize ? e.scheme.label().c_str() : "keep",
                    e.reason.c_str());
      }
      uint64_t before = 0;
      for (const auto& t : ck.tensors) before += t.nbytes();
      std::printf("\ndry run: %llu -> %llu bytes of tensor data; nothing was written\n",
                  static_cast<unsigned long long>(before), static_cast<unsigned long long>(after));
      for (const auto& w : plan.warnings) std::printf("warning: %s\n", w.c_str());
      for (const auto& n : plan.notes) std::printf("note: %s\n", n.c_str());
    }
    return o.strict && !plan.warnings.empty() ? warnings_as_errors : ok;
  }
  if (o.strict && !plan.warnings.empty()) {
    for (const auto& w : plan.warnings) std::fprintf(stderr, "monoquant: warning: %s\n", w.c_str());
    std::fprintf(stderr, "monoquant: --strict: warnings are errors; nothing was written\n");
    return warnings_as_errors;
  }

  pipeline::WriteOptions w;
  w.output = o.output;
  w.kind = output_kind(o);
  w.max_shard_bytes = o.max_shard_size.empty() ? 0 : parse_size(o.max_shard_size);
  if (!o.max_shard_size.empty() && w.kind != io::OutputKind::directory) {
    throw_invalid_argument("--max-shard-size applies to directory output");
  }
  if (is_directory(input) && w.kind == io::OutputKind::directory) {
    if (exists(input + "/config.json")) w.config_json = read_text(input + "/config.json");
    w.files = companion_files(input);
  }
  w.extra_records = existing;
  if (!rules.recipe.empty()) w.recipe_json = pipeline::recipe_to_json(rules.recipe);
  if (o.strict) w.accept = [](const pipeline::QuantizeReport& r) { return r.warnings.empty(); };
  Progress progress(o.quiet || o.json);
  const pipeline::QuantizeReport report = pipeline::quantize_checkpoint(
      ck, plan, w, [&](std::size_t i, std::size_t n, const pipeline::TensorReport& t) {
        check_interrupted();
        progress.step(i, n, t.name + (t.quantized ? " -> " + t.scheme : ""));
      });
  progress.done();
  if (!report.committed) {
    for (const auto& msg : report.warnings) std::fprintf(stderr, "monoquant: warning: %s\n", msg.c_str());
    std::fprintf(stderr, "monoquant: --strict: warnings are errors; nothing was written\n");
    return warnings_as_errors;
  }
  if (o.json) std::printf("%s\n", report.to_json().c_str());
  else if (!o.quiet) std::printf("%s", report.to_table().c_str());
  else for (const auto& msg : report.warnings) std::fprintf(stderr, "monoquant: warning: %s\n", msg.c_str());
  return ok;
}

}  // namespace monoquant::cli
