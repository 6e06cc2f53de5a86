#include "monoquant/io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "monoquant/error.hpp"

namespace monoquant::io {
namespace {

std::string directory_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(std::string path, std::string temp_dir) : path_(std::move(path)) {
  if (temp_dir.empty()) temp_dir = directory_of(path_);
#ifdef O_TMPFILE
  // An unnamed file: if the process dies (SIGKILL, a crash, SIGXFSZ) before
  // commit, the kernel frees it and nothing is left.
  fd_ = ::open(temp_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
  if (fd_ >= 0) {
    unnamed_ = true;
    return;
  }
#endif
  const auto slash = path_.find_last_of('/');
  temp_path_ = temp_dir + "/" + (slash == std::string::npos ? path_ : path_.substr(slash + 1)) + ".tmp.XXXXXX";
  std::vector<char> name(temp_path_.begin(), temp_path_.end());
  name.push_back('\0');
  fd_ = ::mkstemp(name.data());
  if (fd_ < 0) throw_io_error(path_ + ": cannot create a temporary file beside it: " + std::strerror(errno));
  temp_path_.assign(name.data());
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const std::size_t chunk = size < (std::size_t{1} << 30) ? size : (std::size_t{1} << 30);
    const ssize_t n = ::write(fd_, p, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io_error(path_ + ": write failed: " + std::strerror(errno));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    position_ += static_cast<uint64_t>(n);
  }
}

void AtomicFile::write_zeros(std::size_t size) {
  static const char zeros[4096] = {};
  while (size > 0) {
    const std::size_t n = size < sizeof(zeros) ? size : sizeof(zeros);
    write(zeros, n);
    size -= n;
  }
}

void AtomicFile::reserve(uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    throw_io_error(path_ + ": cannot reserve " + std::to_string(size) + " bytes: " + std::strerror(errno));
  }
}

void AtomicFile::write_at(uint64_t offset, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const std::size_t chunk = size < (std::size_t{1} << 30) ? size : (std::size_t{1} << 30);
    const ssize_t n = ::pwrite(fd_, p, chunk, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io_error(path_ + ": write failed: " + std::strerror(errno));
    }
    p += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<std::size_t>(n);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) throw_io_error(path_ + ": fsync failed: " + std::strerror(errno));
  if (unnamed_) {
    // Give the unnamed file a temporary name (linkat cannot replace a file),
    // then rename it over the target: readers see the old or the new file.
    const std::string proc = "/proc/self/fd/" + std::to_string(fd_);
    for (int attempt = 0;; ++attempt) {
      temp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(attempt);
      if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, temp_path_.c_str(), AT_SYMLINK_FOLLOW) == 0) break;
      if (errno != EEXIST || attempt > 100) {
        const int err = errno;
        temp_path_.clear();
        ::close(fd_);
        fd_ = -1;
        throw_io_error(path_ + ": cannot link the temporary file into place: " + std::strerror(err));
      }
    }
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw_io_error(path_ + ": close failed: " + std::strerror(errno));
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    throw_io_error(path_ + ": cannot rename the temporary file into place: " + std::strerror(errno));
  }
  committed_ = true;
  const int dir = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents.data(), contents.size());
  f.commit();
}

}  // namespace monoquant::io
