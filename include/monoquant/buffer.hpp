// Owned, 64-byte aligned memory. Moves, never copies by accident.
#pragma once

#include <cstddef>
#include <memory>

namespace monoquant {

class Buffer {
 public:
  static constexpr std::size_t alignment = 64;

  Buffer() = default;
  // Uninitialised storage of `bytes` bytes; zero-sized buffers hold no memory.
  explicit Buffer(std::size_t bytes);
  static Buffer zeros(std::size_t bytes);

  std::byte* data() noexcept { return data_.get(); }
  const std::byte* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }

  template <class T>
  T* as() noexcept { return reinterpret_cast<T*>(data_.get()); }
  template <class T>
  const T* as() const noexcept { return reinterpret_cast<const T*>(data_.get()); }

 private:
  struct Free {
    Free() noexcept : mapped(0) {}
    explicit Free(std::size_t bytes) noexcept : mapped(bytes) {}
    std::size_t mapped;  // bytes of a private mapping (large buffers); 0: from malloc
    void operator()(std::byte* p) const noexcept;
  };
  std::unique_ptr<std::byte[], Free> data_;
  std::size_t size_ = 0;
};

}  // namespace monoquant
