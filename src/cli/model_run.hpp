// `monoquant quantize` with a method that must run the model on calibration
// data (GPTQ, AWQ, SmoothQuant, static ranges from data): the binary has no
// model runtime, so it hands the run to Python (monoquant.cli_runner.main,
// the Python API on the same options) and returns its exit code.
#pragma once

#include <string>

#include "cli/quantize.hpp"

namespace monoquant::cli {

// Whether the options ask for a run of the model: --method other than rtn,
// --calibration-data or --smoothquant.
bool needs_model_run(const QuantizeOptions& o);

// Checks the options and the input, then replaces this process with the
// Python runner (so its exit code is ours). Returns only on an error, which
// it throws; exec failing (no Python) is an unsupported error naming
// MONOQUANT_PYTHON.
[[noreturn]] void run_model_methods(const QuantizeOptions& o, const std::string& input);

}  // namespace monoquant::cli
