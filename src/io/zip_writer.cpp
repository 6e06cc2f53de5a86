#include <cstring>

#include "monoquant/error.hpp"
#include "monoquant/io/atomic_file.hpp"
#include "monoquant/io/zip.hpp"

namespace monoquant::io {
namespace {

void put(std::string& s, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

constexpr uint64_t k32 = 0xFFFFFFFFu;

}  // namespace

void ZipWriter::add(const std::string& name, const void* data, std::size_t size) {
  const uint64_t offset = file_.position();
  const bool z64 = force_zip64_ || size >= k32 || offset >= k32;
  std::string h;
  put(h, 0x04034b50, 4);
  put(h, z64 ? 45 : 20, 2);  // version needed
  put(h, 0, 2);              // flags
  put(h, 0, 2);              // stored
  put(h, 0, 2);              // time
  put(h, 0x21, 2);           // date: 1980-01-01
  const uint32_t crc = crc32(data, size);
  put(h, crc, 4);
  put(h, z64 ? k32 : size, 4);
  put(h, z64 ? k32 : size, 4);
  put(h, name.size(), 2);
  std::string extra;
  if (z64) {
    put(extra, 0x0001, 2);
    put(extra, 16, 2);
    put(extra, size, 8);
    put(extra, size, 8);
  }
  // Pad the extra field so that the data starts on `alignment_`.
  const uint64_t unpadded = offset + 30 + name.size() + extra.size();
  std::size_t pad = static_cast<std::size_t>((alignment_ - unpadded % alignment_) % alignment_);
  if (pad > 0 && pad < 4) pad += alignment_;
  if (pad > 0) {
    put(extra, 0xFE00, 2);  // an unregistered id, as PyTorchStreamWriter uses ("FB" padding)
    put(extra, pad - 4, 2);
    extra.append(pad - 4, 'Z');
  }
  put(h, extra.size(), 2);
  h += name;
  h += extra;
  file_.write(h.data(), h.size());
  file_.write(data, size);
  entries_.push_back({name, offset, size, crc});
}

void ZipWriter::finish() {
  const uint64_t cd_offset = file_.position();
  std::string cd;
  for (const auto& e : entries_) {
    const bool z64 = force_zip64_ || e.size >= k32 || e.offset >= k32;
    put(cd, 0x02014b50, 4);
    put(cd, z64 ? 45 : 20, 2);  // made by
    put(cd, z64 ? 45 : 20, 2);  // needed
    put(cd, 0, 2);
    put(cd, 0, 2);
    put(cd, 0, 2);
    put(cd, 0x21, 2);
    put(cd, e.crc, 4);
    put(cd, z64 ? k32 : e.size, 4);
    put(cd, z64 ? k32 : e.size, 4);
    put(cd, e.name.size(), 2);
    put(cd, z64 ? 28 : 0, 2);
    put(cd, 0, 2);  // comment
    put(cd, 0, 2);  // disk
    put(cd, 0, 2);  // internal attributes
    put(cd, 0, 4);  // external attributes
    put(cd, z64 ? k32 : e.offset, 4);
    cd += e.name;
    if (z64) {
      put(cd, 0x0001, 2);
      put(cd, 24, 2);
      put(cd, e.size, 8);
      put(cd, e.size, 8);
      put(cd, e.offset, 8);
    }
  }
  const uint64_t cd_size = cd.size();
  const uint64_t n = entries_.size();
  const bool z64 = force_zip64_ || cd_offset >= k32 || cd_size >= k32 || n >= 0xFFFF;
  if (z64) {
    const uint64_t rec = cd_offset + cd_size;
    put(cd, 0x06064b50, 4);
    put(cd, 44, 8);
    put(cd, 45, 2);
    put(cd, 45, 2);
    put(cd, 0, 4);
    put(cd, 0, 4);
    put(cd, n, 8);
    put(cd, n, 8);
    put(cd, cd_size, 8);
    put(cd, cd_offset, 8);
    put(cd, 0x07064b50, 4);
    put(cd, 0, 4);
    put(cd, rec, 8);
    put(cd, 1, 4);
  }
  put(cd, 0x06054b50, 4);
  put(cd, 0, 2);
  put(cd, 0, 2);
  put(cd, z64 ? 0xFFFF : n, 2);
  put(cd, z64 ? 0xFFFF : n, 2);
  put(cd, z64 ? k32 : cd_size, 4);
  put(cd, z64 ? k32 : cd_offset, 4);
  put(cd, 0, 2);
  file_.write(cd.data(), cd.size());
}

}  // namespace monoquant::io
