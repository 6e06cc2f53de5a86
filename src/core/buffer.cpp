#include "monoquant/buffer.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace monoquant {

void Buffer::Free::operator()(std::byte* p) const noexcept { std::free(p); }

Buffer::Buffer(std::size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  // aligned_alloc wants a size that is a multiple of the alignment; rounding
  // up must not wrap around to a small size.
  if (bytes > SIZE_MAX - alignment) throw std::bad_alloc();
  const std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  void* p = std::aligned_alloc(alignment, rounded);
  if (p == nullptr) throw std::bad_alloc();
  data_.reset(static_cast<std::byte*>(p));
}

Buffer Buffer::zeros(std::size_t bytes) {
  Buffer b(bytes);
  if (bytes != 0) std::memset(b.data(), 0, bytes);
  return b;
}

}  // namespace monoquant
