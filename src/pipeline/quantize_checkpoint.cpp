#include "monoquant/pipeline/quantize_checkpoint.hpp"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/io/file_dtype.hpp"
#include "monoquant/pipeline/compressed_layout.hpp"

namespace monoquant::pipeline {
namespace {

// Drops the input's pages from this process once a tensor is done: mapped
// file pages count as resident memory while mapped, and would otherwise add
// up to the whole checkpoint. The data stays in the page cache.
void release_pages(const io::TensorRecord& r) {
  if (r.storage == nullptr || r.storage_bytes == 0) return;
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(r.storage);
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + r.storage_bytes) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

std::string human(uint64_t n) {
  char buf[32];
  if (n >= (uint64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(n) / (1 << 30));
  else if (n >= (uint64_t{1} << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(n) / (1 << 20));
  else if (n >= 1024) std::snprintf(buf, sizeof buf, "%.2f KiB", static_cast<double>(n) / 1024);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

// What to try for tensors whose weight SQNR is low, from their schemes.
std::string remedies(const std::vector<const PlanEntry*>& hit) {
  bool int4 = false, absmax4 = false, coarse = false;
  for (const PlanEntry* e : hit) {
    if (e->scheme.format != WeightFormat::int4) continue;
    int4 = true;
    absmax4 = absmax4 || e->scheme.scale_method == ScaleMethod::absmax;
    coarse = coarse || e->scheme.group_size > 32;
  }
  std::string out = "consider --skip for them";
  if (absmax4) out += ", --scale-method mse";
  if (coarse) out += ", a smaller --group-size";
  out += int4 ? ", or --bits 8" : ", or --bits 16";
  return out;
}

// One warning per severity, naming the first few tensors (as the Python API does).
void add_sqnr_warnings(QuantizeReport& report, const Plan& plan) {
  for (const bool critical : {true, false}) {
    std::vector<const TensorReport*> hit;
    std::vector<const PlanEntry*> entries;
    for (std::size_t i = 0; i < report.tensors.size(); ++i) {
      const TensorReport& t = report.tensors[i];
      if (!t.quantized) continue;
      if (critical ? t.sqnr_db < kSqnrCriticalDb : (t.sqnr_db >= kSqnrCriticalDb && t.sqnr_db < kSqnrWarnDb)) {
        hit.push_back(&t);
        entries.push_back(&plan.entries[i]);
      }
    }
    if (hit.empty()) continue;
    char buf[64];
    std::string msg = std::to_string(hit.size()) + " tensors with " +
                      (critical ? "CRITICAL: weight SQNR under 10 dB, the layer is badly damaged"
                                : "weight SQNR under 20 dB, accuracy at risk") + ": ";
    for (std::size_t i = 0; i < hit.size() && i < 4; ++i) {
      std::snprintf(buf, sizeof buf, " (%.1f dB)", hit[i]->sqnr_db);
      msg += (i ? ", '" : "'") + hit[i]->name + "'" + buf;
    }
    if (hit.size() > 4) msg += " and " + std::to_string(hit.size() - 4) + " more";
    report.warnings.push_back(msg + "; " + remedies(entries));
  }
}

}  // namespace

int64_t peak_rss_bytes() {
  // VmHWM is this address space's own high-water mark; getrusage's ru_maxrss
  // would include the parent's peak for a process started with fork + exec.
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long long kb = -1;
    while (std::fgets(line, sizeof line, f)) {
      if (std::sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
    }
    std::fclose(f);
    if (kb >= 0) return static_cast<int64_t>(kb) * 1024;
  }
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

double QuantizeReport::compression_ratio() const {
  return file_bytes_after ? static_cast<double>(file_bytes_before) / static_cast<double>(file_bytes_after)
                          : std::numeric_limits<double>::quiet_NaN();
}

double QuantizeReport::bits_per_weight() const {
  uint64_t bytes = 0;
  int64_t params = 0;
  for (const auto& t : tensors) {
    if (!t.quantized) continue;
    bytes += t.bytes_after;
    params += numel_of(t.shape);
  }
  return params ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : std::numeric_limits<double>::quiet_NaN();
}

double QuantizeReport::min_sqnr_db() const {
  double m = std::numeric_limits<double>::infinity();
  for (const auto& t : tensors) {
    if (t.quantized) m = std::min(m, t.sqnr_db);
  }
  return m;
}

double QuantizeReport::mean_sqnr_db() const {
  double sum = 0;
  int n = 0;
  for (const auto& t : tensors) {
    if (t.quantized && std::isfinite(t.sqnr_db)) {
      sum += t.sqnr_db;
      ++n;
    }
  }
  return n ? sum / n : std::numeric_limits<double>::quiet_NaN();
}

int QuantizeReport::quantized_count() const {
  int n = 0;
  for (const auto& t : tensors) n += t.quantized;
  return n;
}

std::string QuantizeReport::to_json() const {
  using json = nlohmann::ordered_json;
  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(v > 0 ? "inf" : (v < 0 ? "-inf" : "nan")); };
  json j = json::object();
  json rows = json::array();
  for (const auto& t : tensors) {
    json r = json::object();
    r["name"] = t.name;
    r["role"] = t.role;
    r["shape"] = t.shape;
    r["scheme"] = t.scheme;
    r["quantized"] = t.quantized;
    r["reason"] = t.reason;
    r["bytes_before"] = t.bytes_before;
    r["bytes_after"] = t.bytes_after;
    r["sqnr_db"] = t.quantized ? num(t.sqnr_db) : json(nullptr);
    r["seconds"] = t.seconds;
    rows.push_back(r);
  }
  j["tensors"] = rows;
  json totals = json::object();
  totals["tensors_quantized"] = quantized_count();
  totals["tensors_kept"] = static_cast<int>(tensors.size()) - quantized_count();
  totals["bytes_before"] = file_bytes_before;
  totals["bytes_after"] = file_bytes_after;
  totals["compression_ratio"] = num(compression_ratio());
  totals["bits_per_weight"] = quantized_count() ? num(bits_per_weight()) : json(nullptr);
  totals["min_sqnr_db"] = quantized_count() ? num(min_sqnr_db()) : json(nullptr);
  totals["mean_sqnr_db"] = quantized_count() ? num(mean_sqnr_db()) : json(nullptr);
  totals["seconds"] = seconds;
  totals["peak_rss_bytes"] = peak_rss_bytes;
  j["totals"] = totals;
  j["warnings"] = warnings;
  j["notes"] = notes;
  return j.dump(2);
}

std::string QuantizeReport::to_table() const {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-56s %-14s %-18s %11s %11s %8s  %s\n", "tensor", "scheme", "shape", "before",
                "after", "SQNR dB", "note");
  out += line;
  for (const auto& t : tensors) {
    char sq[16] = "";
    if (t.quantized) std::snprintf(sq, sizeof sq, std::isinf(t.sqnr_db) ? "inf" : "%.1f", t.sqnr_db);
    std::snprintf(line, sizeof line, "%-56s %-14s %-18s %11s %11s %8s  %s\n", t.name.c_str(), t.scheme.c_str(),
                  shape_to_string(t.shape).c_str(), human(t.bytes_before).c_str(), human(t.bytes_after).c_str(), sq,
                  t.quantized ? "" : t.reason.c_str());
    out += line;
  }
  std::snprintf(line, sizeof line,
                "\n%d tensors quantized, %d kept; %s -> %s (%.2fx)", quantized_count(),
                static_cast<int>(tensors.size()) - quantized_count(), human(file_bytes_before).c_str(),
                human(file_bytes_after).c_str(), compression_ratio());
  out += line;
  if (quantized_count()) {
    std::snprintf(line, sizeof line, ", %.2f bits per quantized weight; SQNR min %.1f dB, mean %.1f dB",
                  bits_per_weight(), min_sqnr_db(), mean_sqnr_db());
    out += line;
  }
  std::snprintf(line, sizeof line, "; %.2f s, peak memory %s\n", seconds, human(static_cast<uint64_t>(peak_rss_bytes)).c_str());
  out += line;
  for (const auto& w : warnings) out += "warning: " + w + "\n";
  for (const auto& n : notes) out += "note: " + n + "\n";
  return out;
}

std::vector<ModuleRecord> module_records(const Plan& plan) {
  std::vector<ModuleRecord> out;
  for (const auto& e : plan.entries) {
    if (!e.quantize) continue;
    ModuleRecord r;
    r.name = e.module;
    r.scheme = e.scheme;
    r.type = e.role == TensorRole::embedding ? "Embedding"
             : e.role == TensorRole::conv_weight ? (e.shape.size() == 3 ? "Conv1d" : "Conv2d")
                                                 : "Linear";
    r.shape = Shape{e.rows(), e.cols()};  // as quantized; a conv's geometry comes from the model at load
    const auto core = io::to_core(e.dtype);
    r.float_dtype = core ? std::string(name_of(*core)) : "float32";
    out.push_back(std::move(r));
  }
  return out;
}

std::unique_ptr<io::CheckpointStreamWriter> open_quantized_writer(const WriteOptions& options,
                                                                  std::vector<io::TensorSpec> specs,
                                                                  const std::vector<ModuleRecord>& records) {
  const auto metadata = model_metadata(records, options.recipe_json);
  const bool dir = options.kind == io::OutputKind::directory;
  auto writer = std::make_unique<io::CheckpointStreamWriter>(
      options.output, options.kind, std::move(specs),
      dir ? std::map<std::string, std::string>{{"monoquant", metadata.at("monoquant")}} : metadata,
      options.max_shard_bytes);
  if (dir) {
    // compressed-tensors reads quantization_config from config.json in a directory.
    writer->add_file("config.json", config_json_with_quantization(options.config_json, metadata));
    for (const auto& [name, text] : options.files) {
      if (name != "config.json") writer->add_file(name, text);
    }
  }
  return writer;
}

QuantizeReport quantize_checkpoint(const io::Checkpoint& input, const Plan& plan, const WriteOptions& options,
                                   const ProgressFn& progress) {
  const auto start = std::chrono::steady_clock::now();
  if (plan.entries.size() != input.tensors.size()) throw_invalid_argument("the plan does not describe this checkpoint");
  std::vector<io::TensorSpec> specs;
  std::vector<std::size_t> first_spec;
  for (const auto& e : plan.entries) {
    first_spec.push_back(specs.size());
    for (auto& s : output_specs(e)) specs.push_back(std::move(s));
  }
  std::vector<ModuleRecord> records = module_records(plan);
  records.insert(records.end(), options.extra_records.begin(), options.extra_records.end());
  auto writer_ptr = open_quantized_writer(options, std::move(specs), records);
  io::CheckpointStreamWriter& writer = *writer_ptr;
  QuantizeReport report;
  Scratch scratch;
  report.warnings = plan.warnings;
  report.notes = plan.notes;
  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const PlanEntry& e = plan.entries[i];
    const io::TensorRecord& r = input.tensors[i];
    if (r.name != e.tensor) throw_invalid_argument("the plan does not describe this checkpoint (order)");
    const auto t0 = std::chrono::steady_clock::now();
    const EntryStats out = stream_outputs(e, r, scratch, [&](std::size_t j, uint64_t offset, const void* data, std::size_t size) {
      writer.write_part(first_spec[i] + j, offset, data, size);
    });
    TensorReport t;
    t.name = e.tensor;
    t.role = std::string(name_of(e.role));
    t.shape = e.shape;
    t.scheme = e.quantize ? e.scheme.label() : "float";
    t.quantized = e.quantize;
    t.reason = e.reason;
    t.bytes_before = r.nbytes();
    t.bytes_after = out.weight_bytes;
    t.sqnr_db = out.sqnr_db;
    t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.file_bytes_before += r.nbytes();
    release_pages(r);
    if (progress) progress(i, plan.entries.size(), t);
    report.tensors.push_back(std::move(t));
  }
  add_sqnr_warnings(report, plan);
  report.file_bytes_after = writer.data_bytes();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.peak_rss_bytes = peak_rss_bytes();
  if (options.accept && !options.accept(report)) return report;  // the writer drops its files
  writer.commit();
  report.committed = true;
  return report;
}

}  // namespace monoquant::pipeline
