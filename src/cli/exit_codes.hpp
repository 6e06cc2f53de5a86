// The monoquant binary's exit codes (documented in README.md). Scripts can
// tell a bad flag from a bad file from a full disk without parsing messages.
#pragma once

#include "monoquant/error.hpp"

namespace monoquant::cli {

enum ExitCode : int {
  ok = 0,
  internal_error = 1,  // a bug: please report it
  usage_error = 2,     // bad flags or arguments
  invalid_input = 3,   // ErrorKind::invalid_argument
  format_error = 4,    // ErrorKind::format
  io_error = 5,        // ErrorKind::io
  unsupported = 6,     // ErrorKind::unsupported
  validation_failed = 7,   // `validate` / `compare` found a problem
  warnings_as_errors = 8,  // --strict and there were warnings (nothing was written)
};

inline int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return invalid_input;
    case ErrorKind::format: return format_error;
    case ErrorKind::io: return io_error;
    case ErrorKind::unsupported: return unsupported;
  }
  return internal_error;
}

}  // namespace monoquant::cli
