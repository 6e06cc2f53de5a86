#include "monoquant/buffer.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

namespace monoquant {

void Buffer::Free::operator()(std::byte* p) const noexcept { std::free(p); }

namespace {

// Large outputs (a 64 MiB dequantized weight) otherwise spend as long taking
// 4 KiB page faults as computing: back them with transparent huge pages.
constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kHugeThreshold = std::size_t{8} << 20;

}  // namespace

Buffer::Buffer(std::size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  const std::size_t align = bytes >= kHugeThreshold ? kHugePage : alignment;
  // aligned_alloc wants a size that is a multiple of the alignment; rounding
  // up must not wrap around to a small size.
  if (bytes > SIZE_MAX - align) throw std::bad_alloc();
  const std::size_t rounded = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (align == kHugePage) ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  data_.reset(static_cast<std::byte*>(p));
}

Buffer Buffer::zeros(std::size_t bytes) {
  Buffer b(bytes);
  if (bytes != 0) std::memset(b.data(), 0, bytes);
  return b;
}

}  // namespace monoquant
