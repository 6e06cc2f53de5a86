#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace monoquant::cli {

struct InspectOptions {
  std::string path;
  bool summary = false;
  bool json = false;
};

CLI::App* add_inspect(CLI::App& app, InspectOptions& options);
int run_inspect(const InspectOptions& options);  // throws monoquant::Error

}  // namespace monoquant::cli
