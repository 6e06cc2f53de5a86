// Writes a file so that readers see either the old file or the complete new
// one, never a partial one: a temporary file in the same directory, fsync,
// rename over the target, fsync of the directory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace monoquant::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // throws io
  ~AtomicFile();                          // removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t size);
  void write_zeros(std::size_t size);
  uint64_t position() const { return position_; }
  // fsync, rename, fsync the directory. Throws io; the target is untouched then.
  void commit();

 private:
  std::string path_, temp_path_;
  int fd_ = -1;
  uint64_t position_ = 0;
  bool committed_ = false;
};

// Writes a small text file atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace monoquant::io
