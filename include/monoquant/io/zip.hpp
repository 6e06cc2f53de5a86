// The subset of zip that torch.save archives use: stored (uncompressed)
// entries, zip64 when large. The reader trusts nothing: every offset and size
// is bounds-checked against the mapped file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace monoquant::io {

class AtomicFile;

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // of the entry's bytes in the file
  uint64_t size = 0;
  uint32_t crc32 = 0;
};

// Entries of a zip held in memory, from its central directory. Throws
// ErrorKind::format (starting with `label`) on any inconsistency, and
// unsupported on compressed or encrypted entries.
std::vector<ZipEntry> read_zip_directory(const std::byte* data, std::size_t size, const std::string& label);

uint32_t crc32(const void* data, std::size_t size, uint32_t crc = 0);

// Writes stored entries with their data aligned to `alignment` bytes (the
// padding goes in the local header's extra field, as PyTorchStreamWriter
// does), zip64 records when offsets or sizes need them.
class ZipWriter {
 public:
  ZipWriter(AtomicFile& file, std::size_t alignment = 64) : file_(file), alignment_(alignment) {}
  // Writes zip64 records even for small entries (tests: the > 4 GiB path).
  void force_zip64(bool on) { force_zip64_ = on; }
  void add(const std::string& name, const void* data, std::size_t size);
  void finish();

 private:
  struct Central {
    std::string name;
    uint64_t offset, size;
    uint32_t crc;
  };
  AtomicFile& file_;
  std::size_t alignment_;
  bool force_zip64_ = false;
  std::vector<Central> entries_;
};

}  // namespace monoquant::io
