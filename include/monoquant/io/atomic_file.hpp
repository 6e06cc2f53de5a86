// Writes a file so that readers see either the old file or the complete new
// one, never a partial one: an unnamed temporary file (O_TMPFILE; a named
// one where the filesystem lacks it) in the same directory, fsync, a name,
// rename over the target, fsync of the directory. A process killed before
// commit leaves nothing behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace monoquant::io {

class AtomicFile {
 public:
  // temp_dir: where the temporary lives until commit (default: the target's
  // directory, which must then exist; another directory on the same
  // filesystem lets a writer create the target's directory only at commit).
  explicit AtomicFile(std::string path, std::string temp_dir = "");  // throws io
  ~AtomicFile();                          // removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t size);
  void write_zeros(std::size_t size);
  // Random access for writers that know the layout up front: set the file's
  // size (sparse until written), then write ranges at their offsets.
  void reserve(uint64_t size);
  void write_at(uint64_t offset, const void* data, std::size_t size);
  const std::string& path() const { return path_; }
  uint64_t position() const { return position_; }
  // fsync, rename, fsync the directory. Throws io; the target is untouched then.
  void commit();

 private:
  std::string path_, temp_path_;
  int fd_ = -1;
  uint64_t position_ = 0;
  bool committed_ = false;
  bool unnamed_ = false;  // O_TMPFILE: no name until commit
};

// Writes a small text file atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace monoquant::io
