// safetensors: length prefix + JSON header + offsets against the buffer.
#include <cstddef>
#include <cstdint>

#include "monoquant/error.hpp"
#include "monoquant/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    monoquant::io::parse_safetensors(reinterpret_cast<const std::byte*>(data), size, "fuzz");
  } catch (const monoquant::Error&) {
  }
  return 0;
}
