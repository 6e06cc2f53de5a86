// Zip reading (APPNOTE.TXT 4.3): end of central directory (+ zip64 locator
// and record), central directory entries, local headers. Data offsets come
// from local headers; sizes from the central directory.
#include <cstring>
#include <set>

#include "monoquant/error.hpp"
#include "monoquant/io/checkpoint.hpp"
#include "monoquant/io/zip.hpp"

namespace monoquant::io {
namespace {

uint64_t rd(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

std::vector<ZipEntry> read_zip_directory(const std::byte* data, std::size_t size, const std::string& label) {
  auto fail = [&](const std::string& what) -> void { throw_format_error(label + ": invalid zip archive: " + what); };
  if (size < 22) fail("too small (" + std::to_string(size) + " bytes)");
  // The end-of-central-directory record is the last 22 bytes plus a comment
  // of up to 65535 bytes; scan back for its signature.
  std::size_t eocd = std::string::npos;
  const std::size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (std::size_t i = size - 22 + 1; i-- > lowest;) {
    if (rd(data + i, 4) == 0x06054b50 && i + 22 + rd(data + i + 20, 2) == size) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos) fail("no end of central directory record (truncated file?)");
  uint64_t count = rd(data + eocd + 10, 2);
  uint64_t cd_size = rd(data + eocd + 12, 4);
  uint64_t cd_offset = rd(data + eocd + 16, 4);
  if (rd(data + eocd + 4, 2) != 0 || rd(data + eocd + 6, 2) != 0) fail("multi-disk archives are not supported");
  if (eocd >= 20 && rd(data + eocd - 20, 4) == 0x07064b50) {
    const uint64_t z64 = rd(data + eocd - 20 + 8, 8);
    if (z64 > size || size - z64 < 56 || z64 > eocd - 20) fail("zip64 end record offset out of range");
    const std::byte* r = data + z64;
    if (rd(r, 4) != 0x06064b50) fail("bad zip64 end record signature");
    count = rd(r + 32, 8);
    cd_size = rd(r + 40, 8);
    cd_offset = rd(r + 48, 8);
  }
  if (cd_offset > size || cd_size > size - cd_offset) fail("central directory out of range");
  if (count > cd_size / 46) fail("central directory too small for " + std::to_string(count) + " entries");
  std::vector<ZipEntry> entries;
  entries.reserve(static_cast<std::size_t>(count));
  std::set<std::string> names;
  const std::byte* p = data + cd_offset;
  const std::byte* end = p + cd_size;
  for (uint64_t e = 0; e < count; ++e) {
    if (end - p < 46 || rd(p, 4) != 0x02014b50) fail("bad central directory entry " + std::to_string(e));
    const uint64_t flags = rd(p + 8, 2), method = rd(p + 10, 2);
    ZipEntry z;
    z.crc32 = static_cast<uint32_t>(rd(p + 16, 4));
    uint64_t csize = rd(p + 20, 4), usize = rd(p + 24, 4);
    const uint64_t nlen = rd(p + 28, 2), xlen = rd(p + 30, 2), clen = rd(p + 32, 2);
    uint64_t local = rd(p + 42, 4);
    if (static_cast<uint64_t>(end - p) < 46 + nlen + xlen + clen) fail("central directory entry " + std::to_string(e) + " runs past its end");
    z.name.assign(reinterpret_cast<const char*>(p + 46), static_cast<std::size_t>(nlen));
    const std::string shown = printable(z.name);
    // zip64 extended information: only the fields that are 0xFFFFFFFF, in order.
    const std::byte* x = p + 46 + nlen;
    const std::byte* xend = x + xlen;
    while (xend - x >= 4) {
      const uint64_t id = rd(x, 2), len = rd(x + 2, 2);
      if (static_cast<uint64_t>(xend - x - 4) < len) fail("extra field of '" + shown + "' runs past its end");
      if (id == 0x0001) {
        const std::byte* f = x + 4;
        uint64_t left = len;
        auto take = [&](uint64_t& v) {
          if (v != 0xFFFFFFFF) return;
          if (left < 8) fail("short zip64 field in '" + shown + "'");
          v = rd(f, 8);
          f += 8;
          left -= 8;
        };
        take(usize);
        take(csize);
        take(local);
      }
      x += 4 + len;
    }
    if (flags & 1) throw_unsupported(label + ": zip entry '" + shown + "' is encrypted");
    if (method != 0) {
      throw_unsupported(label + ": zip entry '" + shown + "' is compressed (method " + std::to_string(method) +
                        "); torch.save writes stored entries only");
    }
    if (csize != usize) fail("stored entry '" + shown + "' has different compressed and uncompressed sizes");
    if (local > size || size - local < 30 || rd(data + local, 4) != 0x04034b50) fail("bad local header for '" + shown + "'");
    const uint64_t lnlen = rd(data + local + 26, 2), lxlen = rd(data + local + 28, 2);
    const uint64_t start = local + 30 + lnlen + lxlen;
    if (start > size || usize > size - start) fail("data of '" + shown + "' runs past the end of the file");
    z.data_offset = start;
    z.size = usize;
    if (!names.insert(z.name).second) fail("duplicate entry '" + shown + "'");
    entries.push_back(std::move(z));
    p += 46 + nlen + xlen + clen;
  }
  return entries;
}

namespace {

struct CrcTable {
  uint32_t t[8][256];
  CrcTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
  }
};

}  // namespace

uint32_t crc32(const void* data, std::size_t size, uint32_t crc) {
  static const CrcTable table;
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  // Slicing by 8: eight table lookups per 8 bytes.
  while (size >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= crc;
    crc = table.t[7][lo & 0xFF] ^ table.t[6][(lo >> 8) & 0xFF] ^ table.t[5][(lo >> 16) & 0xFF] ^ table.t[4][lo >> 24] ^
          table.t[3][hi & 0xFF] ^ table.t[2][(hi >> 8) & 0xFF] ^ table.t[1][(hi >> 16) & 0xFF] ^ table.t[0][hi >> 24];
    p += 8;
    size -= 8;
  }
  while (size--) crc = table.t[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

}  // namespace monoquant::io
