// The checkpoint pipeline: plan -> quantize -> stream-write -> report.
// Tensors are read from the mapped input, quantized (in parallel within a
// tensor) and written one at a time at their place in the output, so the
// peak memory is the largest tensor's work plus a small constant, whatever
// the checkpoint's size. Nothing is visible until every tensor is written.
#pragma once

#include <functional>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "monoquant/io/checkpoint.hpp"
#include "monoquant/io/stream_writer.hpp"
#include "monoquant/pipeline/model_metadata.hpp"
#include "monoquant/pipeline/plan.hpp"

namespace monoquant::pipeline {

struct TensorReport {
  std::string name;
  std::string role;
  Shape shape;
  std::string scheme;  // "W8A8-dynamic", ... or "float"
  bool quantized = false;
  std::string reason;
  uint64_t bytes_before = 0;  // the input tensor
  uint64_t bytes_after = 0;   // codes + scales as stored (quantized), else the tensor
  double sqnr_db = 0;         // quantized only
  double seconds = 0;
};

struct QuantizeReport {
  std::vector<TensorReport> tensors;
  uint64_t file_bytes_before = 0;  // tensor data read
  uint64_t file_bytes_after = 0;   // tensor data written
  double seconds = 0;
  int64_t peak_rss_bytes = 0;
  std::vector<std::string> warnings;
  std::vector<std::string> notes;
  bool committed = false;  // false when WriteOptions::accept refused the result (nothing was written)

  double compression_ratio() const;
  double bits_per_weight() const;  // over quantized weights, scales counted
  double min_sqnr_db() const;
  double mean_sqnr_db() const;
  int quantized_count() const;
  std::string to_json() const;
  std::string to_table() const;    // per tensor, then the summary line
};

struct WriteOptions {
  std::string output;
  io::OutputKind kind = io::OutputKind::safetensors;
  uint64_t max_shard_bytes = 0;
  std::string config_json;                      // directory output: the input's config.json ("" when none)
  std::map<std::string, std::string> files;     // directory output: more files to copy (tokenizer, ...)
  std::vector<ModuleRecord> extra_records;      // modules the input had already quantized (--force)
  std::string recipe_json;                      // the recipe used (recipe_to_json), recorded in the metadata
  // Called with the finished report before anything becomes visible; false
  // drops the output (--strict refusing warnings).
  std::function<bool(const QuantizeReport&)> accept;
};

//: Weight SQNR under these figures gives a warning / a critical warning (as the Python API).
inline constexpr double kSqnrWarnDb = 20.0;
inline constexpr double kSqnrCriticalDb = 10.0;

// Called after each tensor: (index, count, the tensor's report).
using ProgressFn = std::function<void(std::size_t, std::size_t, const TensorReport&)>;

// Records for model_metadata from a plan's quantized entries.
std::vector<ModuleRecord> module_records(const Plan& plan);

// The writer of a quantized checkpoint: model_metadata(records) in every
// file's metadata (a directory keeps quantization_config in config.json,
// which is options.config_json with it merged, plus options.files).
std::unique_ptr<io::CheckpointStreamWriter> open_quantized_writer(const WriteOptions& options,
                                                                  std::vector<io::TensorSpec> specs,
                                                                  const std::vector<ModuleRecord>& records);

QuantizeReport quantize_checkpoint(const io::Checkpoint& input, const Plan& plan, const WriteOptions& options,
                                   const ProgressFn& progress = {});

// Peak resident memory of this process so far (getrusage), bytes.
int64_t peak_rss_bytes();

}  // namespace monoquant::pipeline
