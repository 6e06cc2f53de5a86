#include "monoquant/error.hpp"

namespace monoquant {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return "invalid argument";
    case ErrorKind::format: return "format error";
    case ErrorKind::io: return "I/O error";
    case ErrorKind::unsupported: return "unsupported";
  }
  return "error";
}

Error::Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}

void throw_invalid_argument(const std::string& message) { throw Error(ErrorKind::invalid_argument, message); }
void throw_format_error(const std::string& message) { throw Error(ErrorKind::format, message); }
void throw_io_error(const std::string& message) { throw Error(ErrorKind::io, message); }
void throw_unsupported(const std::string& message) { throw Error(ErrorKind::unsupported, message); }

}  // namespace monoquant
