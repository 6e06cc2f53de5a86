// A whole file mapped into memory, read-only from C++'s point of view.
// Mapped MAP_PRIVATE with write permission: a consumer that writes into a
// tensor (torch does, in place) gets copy-on-write pages, never the file.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace monoquant::io {

class MappedFile {
 public:
  // Throws ErrorKind::io naming the path when it cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  // Wraps memory the caller keeps alive (tests, fuzzers); nothing is freed.
  static std::shared_ptr<const MappedFile> borrow(const void* data, std::size_t size, std::string label);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool owned_ = false;
  std::string path_;
};

}  // namespace monoquant::io
