// See model_run.hpp. The options travel as one JSON argument, so the runner
// never re-parses flags: this file decides what the CLI accepts.
#include "cli/model_run.hpp"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/common.hpp"
#include "monoquant/error.hpp"
#include "monoquant/io/stream_writer.hpp"
#include "monoquant/thread_pool.hpp"

namespace monoquant::cli {
namespace {

// The Python to run: MONOQUANT_PYTHON, else the python3 beside this binary
// (a virtual environment's bin/, where setup installs both), else python3 on PATH.
std::string python_executable() {
  if (const char* p = std::getenv("MONOQUANT_PYTHON"); p != nullptr && *p) return p;
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    std::string dir(self, static_cast<std::size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    for (const char* name : {"/python3", "/python"}) {
      if (access((dir + name).c_str(), X_OK) == 0) return dir + name;
    }
  }
  return "python3";
}

void refuse(bool given, const std::string& flag, const std::string& why) {
  if (given) throw_invalid_argument(flag + " does not apply with --method / --calibration-data: " + why);
}

}  // namespace

bool needs_model_run(const QuantizeOptions& o) {
  return o.method != "rtn" || !o.calibration_data.empty() || o.smoothquant >= 0;
}

void run_model_methods(const QuantizeOptions& o, const std::string& input) {
  // What the checkpoint pipeline has and the Python API does not take (or
  // takes differently): refused by name rather than silently dropped.
  refuse(!o.calibration.empty(), "--calibration", "the ranges come from --calibration-data");
  refuse(!o.overrides.empty(), "--override", "give per-layer bits with --recipe");
  refuse(o.min_params >= 0, "--min-params", "the Python API's quality defaults choose the small layers");
  refuse(o.quantize_embeddings, "--quantize-embeddings", "embeddings follow the Python API's defaults");
  refuse(o.dry_run, "--dry-run", "the plan of a model run depends on the run");
  refuse(o.force, "--force", "the input must be a float model");
  if (o.method != "rtn" && o.calibration_data.empty()) {
    throw_invalid_argument("--method " + o.method + " runs the model on calibration data: pass --calibration-data FILE "
                           "(a .safetensors or .pt file of tokenized tensors, e.g. input_ids and attention_mask)");
  }
  if (o.smoothquant >= 0 && o.calibration_data.empty()) {
    throw_invalid_argument("--smoothquant chooses its factors from activations: pass --calibration-data FILE");
  }
  if (o.act_order && o.method != "gptq") throw_invalid_argument("--act-order applies to --method gptq");
  if (!(is_directory(input) && exists(input + "/config.json"))) {
    throw_invalid_argument(input + ": a model run needs a model directory with a transformers config.json (a bare "
                           "checkpoint names no architecture to run)");
  }
  if (!exists(o.calibration_data)) throw_io_error("--calibration-data " + o.calibration_data + ": no such file");
  if (!o.recipe.empty() && !exists(o.recipe)) throw_io_error("--recipe " + o.recipe + ": no such file");
  if (!o.format.empty()) {
    const io::OutputKind from_path = io::output_kind_for_path(o.output);
    const io::OutputKind asked = o.format == "safetensors" ? io::OutputKind::safetensors
                                 : o.format == "pt"        ? io::OutputKind::pytorch
                                                           : io::OutputKind::directory;
    if (asked != from_path) {
      throw_invalid_argument("--format " + o.format + " with --method: the output kind follows the path (" + o.output +
                             "); name the output accordingly");
    }
  }
  const uint64_t shard = o.max_shard_size.empty() ? 0 : parse_size(o.max_shard_size);
  if (shard && io::output_kind_for_path(o.output) != io::OutputKind::directory) {
    throw_invalid_argument("--max-shard-size applies to directory output");
  }

  nlohmann::json j;
  j["model"] = input;
  j["output"] = o.output;
  j["bits"] = o.bits;
  j["mode"] = o.dynamic ? "dynamic" : o.weight_only ? "weight_only" : o.is_static ? "static" : "";
  j["scheme"] = o.scheme;
  j["group_size"] = o.group_size;
  j["act_group_size"] = o.act_group_size;
  j["scale_method"] = o.scale_method;
  j["int4_range"] = o.int4_range;
  j["dtype"] = o.dtype;
  j["skip"] = o.skip;
  j["only"] = o.only;
  j["recipe"] = o.recipe;
  j["method"] = o.method;
  j["act_order"] = o.act_order;
  j["smoothquant"] = o.smoothquant >= 0 ? nlohmann::json(o.smoothquant) : nlohmann::json();
  j["calibration_data"] = o.calibration_data;
  j["calibration_batch_size"] = o.calibration_batch_size;
  j["calibration_samples"] = o.calibration_samples;
  j["observer"] = o.observer;
  j["max_shard_size"] = shard;
  j["threads"] = o.threads > 0 ? o.threads : num_threads();  // the global --threads and MONOQUANT_NUM_THREADS too
  j["json"] = o.json;
  j["quiet"] = o.quiet;
  j["strict"] = o.strict;
  const std::string python = python_executable();
  const std::string options = j.dump();
  // A Python without monoquant would die with a traceback and exit 1 (a "bug"); say what is missing instead.
  const char* bootstrap =
      "import sys\n"
      "try:\n"
      "    from monoquant.cli_runner import main\n"
      "except ImportError as e:\n"
      "    print(f'monoquant: unsupported: --method / --calibration-data run the model in Python, and '\n"
      "          f'{sys.executable} cannot import monoquant ({e}); set MONOQUANT_PYTHON to a Python that has '\n"
      "          f'monoquant, torch and transformers', file=sys.stderr)\n"
      "    sys.exit(6)\n"
      "sys.exit(main(sys.argv[1:]))\n";
  std::vector<const char*> argv = {python.c_str(), "-c", bootstrap, options.c_str(), nullptr};
  std::fflush(stdout);
  std::fflush(stderr);
  execvp(python.c_str(), const_cast<char* const*>(argv.data()));
  throw_unsupported("--method / --calibration-data run the model in Python, and " + python + " could not be run (" +
                    std::strerror(errno) + "); set MONOQUANT_PYTHON to a Python that has monoquant, torch and "
                    "transformers");
}

}  // namespace monoquant::cli
