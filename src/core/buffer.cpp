#include "monoquant/buffer.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

namespace monoquant {

void Buffer::Free::operator()(std::byte* p) const noexcept {
  if (mapped) ::munmap(p, mapped);
  else std::free(p);
}

namespace {

// Large outputs (a 64 MiB dequantized weight) otherwise spend as long taking
// 4 KiB page faults as computing: back them with transparent huge pages.
constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kHugeThreshold = std::size_t{8} << 20;

// A 2 MiB-aligned private mapping of `rounded` bytes. Large buffers are mapped
// rather than taken from malloc: glibc raises its mmap threshold after each
// large free, so later large blocks would come from the heap and stay
// resident after they are freed; a mapping goes back to the system at once,
// which keeps the checkpoint pipeline's memory at one tensor's work.
std::byte* map_aligned(std::size_t rounded) {
  const std::size_t span = rounded + kHugePage;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (begin + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > begin) ::munmap(raw, aligned - begin);
  const uintptr_t end = begin + span, used_end = aligned + rounded;
  if (end > used_end) ::munmap(reinterpret_cast<void*>(used_end), end - used_end);
#ifdef MADV_HUGEPAGE
  ::madvise(reinterpret_cast<void*>(aligned), rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return reinterpret_cast<std::byte*>(aligned);
}

}  // namespace

Buffer::Buffer(std::size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  const std::size_t align = bytes >= kHugeThreshold ? kHugePage : alignment;
  // Sizes are rounded up to the alignment; rounding up must not wrap around to a small size.
  if (bytes > SIZE_MAX - 2 * kHugePage) throw std::bad_alloc();
  const std::size_t rounded = (bytes + align - 1) / align * align;
  if (align == kHugePage) {
    data_ = std::unique_ptr<std::byte[], Free>(map_aligned(rounded), Free{rounded});
    return;
  }
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) throw std::bad_alloc();
  data_.reset(static_cast<std::byte*>(p));
}

Buffer Buffer::zeros(std::size_t bytes) {
  Buffer b(bytes);
  // Fresh mappings are zero already.
  if (bytes != 0 && bytes < kHugeThreshold) std::memset(b.data(), 0, bytes);
  return b;
}

}  // namespace monoquant
