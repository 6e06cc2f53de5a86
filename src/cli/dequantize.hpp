#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace monoquant::cli {

struct DequantizeOptions {
  std::string input, output, dtype = "f32";
  bool quiet = false;
};

CLI::App* add_dequantize(CLI::App& app, DequantizeOptions& options);
int run_dequantize(const DequantizeOptions& options);  // throws monoquant::Error

}  // namespace monoquant::cli
