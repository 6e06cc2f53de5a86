// The zip central directory / local header reader.
#include <cstddef>
#include <cstdint>

#include "monoquant/error.hpp"
#include "monoquant/io/zip.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto entries = monoquant::io::read_zip_directory(reinterpret_cast<const std::byte*>(data), size, "fuzz");
    volatile uint64_t sum = 0;
    for (const auto& e : entries) {
      // Touch the first and last byte of every entry: they must be in range.
      if (e.size > 0) sum = sum + data[e.data_offset] + data[e.data_offset + e.size - 1];
    }
  } catch (const monoquant::Error&) {
  }
  return 0;
}
