#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace monoquant::cli {

struct ValidateOptions {
  std::string input, original;
  bool json = false, strict = false;
};

CLI::App* add_validate(CLI::App& app, ValidateOptions& options);
int run_validate(const ValidateOptions& options);  // throws monoquant::Error

// `monoquant compare A B`: per-tensor SQNR, max error, cosine and sizes.
struct CompareOptions {
  std::string a, b;
  bool json = false;
};

CLI::App* add_compare(CLI::App& app, CompareOptions& options);
int run_compare(const CompareOptions& options);

}  // namespace monoquant::cli
