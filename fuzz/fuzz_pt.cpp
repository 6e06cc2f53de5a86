// A whole torch.save archive: zip + pickle + storage/tensor range checks.
// Every tensor the reader accepts is read end to end (ASan checks the bounds).
#include <cstddef>
#include <cstdint>

#include "monoquant/error.hpp"
#include "monoquant/io/pytorch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto c = monoquant::io::read_pt_memory(reinterpret_cast<const std::byte*>(data), size, "fuzz");
    volatile uint8_t sink = 0;
    for (const auto& t : c.checkpoint.tensors) {
      for (std::size_t i = 0; i < t.storage_bytes; ++i) sink = sink ^ static_cast<uint8_t>(t.storage[i]);
    }
  } catch (const monoquant::Error&) {
  }
  return 0;
}
