// The safe unpickler on arbitrary opcode streams.
#include <cstddef>
#include <cstdint>

#include "monoquant/error.hpp"
#include "monoquant/io/pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    monoquant::io::unpickle(reinterpret_cast<const std::byte*>(data), size, "fuzz");
  } catch (const monoquant::Error&) {
  }
  return 0;
}
