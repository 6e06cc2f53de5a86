#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "monoquant/error.hpp"
#include "monoquant/io/atomic_file.hpp"
#include "monoquant/io/pytorch.hpp"
#include "monoquant/io/zip.hpp"

using namespace monoquant;
using namespace monoquant::io;

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/mq_zip_" + std::to_string(::getpid()) + "_" + name;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST(Zip, Crc32KnownValue) {
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(crc32("", 0), 0u);
}

TEST(Zip, WriterOutputReadsBackAligned) {
  const std::string path = temp_path("a.zip");
  {
    AtomicFile f(path);
    ZipWriter z(f);
    z.add("arch/one", "hello", 5);
    z.add("arch/two", "", 0);
    z.finish();
    f.commit();
  }
  const std::string bytes = slurp(path);
  const auto entries = read_zip_directory(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), path);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, "arch/one");
  EXPECT_EQ(entries[0].data_offset % 64, 0u);
  EXPECT_EQ(bytes.substr(entries[0].data_offset, 5), "hello");
  EXPECT_EQ(entries[0].crc32, crc32("hello", 5));
  EXPECT_EQ(entries[1].size, 0u);
  ::unlink(path.c_str());
}

TEST(Zip, Zip64RecordsReadBack) {
  const std::string path = temp_path("z64.zip");
  {
    AtomicFile f(path);
    ZipWriter z(f);
    z.force_zip64(true);
    z.add("arch/one", "hello", 5);
    z.add("arch/two", "world!", 6);
    z.finish();
    f.commit();
  }
  const std::string bytes = slurp(path);
  const auto entries = read_zip_directory(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), path);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(bytes.substr(entries[1].data_offset, entries[1].size), "world!");
  EXPECT_EQ(entries[1].data_offset % 64, 0u);
  // Every truncation of the zip64 structures is an error, never a crash.
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(read_zip_directory(reinterpret_cast<const std::byte*>(bytes.data()), n, "t"), Error) << n;
  }
  ::unlink(path.c_str());
}

TEST(Zip, PtWriterRoundTripsAndEveryTruncationFailsCleanly) {
  std::vector<float> w = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> u = {65535, 7};
  const std::string path = temp_path("m.pt");
  write_pt(path, {{"w", FileDType::f32, {2, 3}, reinterpret_cast<const std::byte*>(w.data())},
                  {"u", FileDType::u16, {2}, reinterpret_cast<const std::byte*>(u.data())}});
  PtContents c = read_pt(path);
  ASSERT_EQ(c.checkpoint.tensors.size(), 2u);
  const TensorRecord* rw = c.checkpoint.find("w");
  ASSERT_NE(rw, nullptr);
  EXPECT_EQ(rw->shape, (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(rw->data(), w.data(), 24), 0);
  const TensorRecord* ru = c.checkpoint.find("u");
  ASSERT_NE(ru, nullptr);
  EXPECT_EQ(ru->dtype, FileDType::u16);
  EXPECT_EQ(std::memcmp(ru->data(), u.data(), 4), 0);

  const std::string bytes = slurp(path);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    try {
      read_pt_memory(reinterpret_cast<const std::byte*>(bytes.data()), n, "trunc");
      ADD_FAILURE() << "truncation at " << n << " was accepted";
    } catch (const Error&) {
    }
  }
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0xFF);
    try {
      read_pt_memory(reinterpret_cast<const std::byte*>(bad.data()), bad.size(), "flip");
    } catch (const Error&) {
    }
  }
  ::unlink(path.c_str());
}

TEST(Zip, LegacyAndNonZipInputsGetClearErrors) {
  const std::string legacy = "\x80\x02\x8a\x0alegacy";
  try {
    read_pt_memory(reinterpret_cast<const std::byte*>(legacy.data()), legacy.size(), "old.pt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("legacy"), std::string::npos);
  }
  const std::string junk = "hello world, not a zip";
  EXPECT_THROW(read_pt_memory(reinterpret_cast<const std::byte*>(junk.data()), junk.size(), "junk"), Error);
}
