// One error type for the whole library. The kind tells callers (the CLI's exit
// code, the Python exception class) how to react; the message tells the user
// what went wrong and what to do about it.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace monoquant {

enum class ErrorKind {
  invalid_argument,  // the caller passed something that cannot work (shape, flag, NaN)
  format,            // a file or buffer is malformed
  io,                // the operating system refused (open, read, write, rename)
  unsupported,       // well-formed, but not something monoquant does (yet)
};

std::string_view to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message);
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] void throw_invalid_argument(const std::string& message);
[[noreturn]] void throw_format_error(const std::string& message);
[[noreturn]] void throw_io_error(const std::string& message);
[[noreturn]] void throw_unsupported(const std::string& message);

}  // namespace monoquant
