#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "monoquant/error.hpp"
#include "monoquant/io/safetensors.hpp"

using namespace monoquant;
using namespace monoquant::io;

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/mq_st_" + std::to_string(::getpid()) + "_" + name;
}

std::string file_bytes(const std::string& header_json, const std::string& buffer) {
  std::string out(8, '\0');
  const uint64_t n = header_json.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header_json + buffer;
}

std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), "test.safetensors");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::format) << e.what();
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, WriteThenReadRoundTripsWithReferenceLayout) {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  std::vector<int8_t> b = {-1, 2, -3};
  std::vector<int64_t> c = {1ll << 40};
  std::vector<TensorToWrite> ts = {
      {"b", FileDType::i8, {3}, reinterpret_cast<const std::byte*>(b.data())},
      {"a", FileDType::f32, {2, 3}, reinterpret_cast<const std::byte*>(a.data())},
      {"c", FileDType::i64, {}, reinterpret_cast<const std::byte*>(c.data())},
      {"empty", FileDType::f16, {0, 4}, nullptr},
  };
  const std::string path = temp_path("rt.safetensors");
  write_safetensors(path, ts, {{"format", "pt"}});
  Checkpoint ck = read_safetensors(path);
  ASSERT_EQ(ck.tensors.size(), 4u);
  EXPECT_EQ(ck.metadata.at("format"), "pt");
  // Reference order: dtype descending (I64 > F32 > F16 > I8), then name.
  EXPECT_EQ(ck.tensors[0].name, "c");
  EXPECT_EQ(ck.tensors[1].name, "a");
  EXPECT_EQ(ck.tensors[2].name, "empty");
  EXPECT_EQ(ck.tensors[3].name, "b");
  for (const auto& t : ck.tensors) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % element_size(t.dtype), 0u) << t.name;
  }
  const TensorRecord* ra = ck.find("a");
  ASSERT_NE(ra, nullptr);
  EXPECT_EQ(ra->shape, (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(ra->data(), a.data(), 24), 0);
  EXPECT_EQ(std::memcmp(ck.find("b")->data(), b.data(), 3), 0);
  EXPECT_EQ(*reinterpret_cast<const int64_t*>(ck.find("c")->data()), 1ll << 40);
  ::unlink(path.c_str());
}

TEST(Safetensors, WriterRejectsDuplicateNamesAndLeavesNoFile) {
  std::vector<float> a = {1};
  std::vector<TensorToWrite> ts = {{"x", FileDType::f32, {1}, reinterpret_cast<const std::byte*>(a.data())},
                                   {"x", FileDType::f32, {1}, reinterpret_cast<const std::byte*>(a.data())}};
  const std::string path = temp_path("dup.safetensors");
  EXPECT_THROW(write_safetensors(path, ts, {}), Error);
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

TEST(Safetensors, AcceptsPaddingLeadingSpaceRankZeroEmptyAndFp8) {
  EXPECT_EQ(parse_error(file_bytes(R"({"a":{"dtype":"F8_E4M3","shape":[],"data_offsets":[0,1]}}   )", "x")), "");
  EXPECT_EQ(parse_error(file_bytes(R"(  {"a":{"dtype":"U16","shape":[0],"data_offsets":[0,0]}})", "")), "");
  EXPECT_EQ(parse_error(file_bytes(R"({"__metadata__":{"k":"v"},"a":{"dtype":"U64","shape":[1],"data_offsets":[0,8]}})",
                                   std::string(8, 'x'))),
            "");
}

TEST(Safetensors, RejectsTheReferenceChecklist) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NE(parse_error("1234567"), "");                                           // < 8 bytes
  EXPECT_NE(parse_error(std::string("\x00\xe2\xf5\x05\x00\x00\x00\x00", 8) + "{}"), "");  // > 100 MB
  EXPECT_NE(parse_error(file_bytes(ok, "1234567")), "");                            // short buffer
  EXPECT_NE(parse_error(file_bytes(ok, "123456789")), "");                          // trailing bytes
  EXPECT_NE(parse_error(file_bytes("{\"a\xff\":1}", "")), "");                       // not UTF-8
  EXPECT_NE(parse_error(file_bytes("{nope", "")), "");                              // not JSON
  EXPECT_NE(parse_error(file_bytes("[]", "")), "");                                 // not an object
  EXPECT_NE(parse_error(file_bytes(R"({"__metadata__":{"k":1}})", "")), "");        // non-string metadata
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                   std::string(8, 'x'))),
            "");  // duplicate key
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, 'x'))), "");
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                   std::string(8, 'x'))),
            "");  // overlap
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", std::string(8, 'x'))), "");
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x'))), "");
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
                                   std::string(8, 'x'))),
            "");  // overflow
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", "xx")), "");  // 12 bits
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", "x")), "");
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "xxxx")), "");
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "xxxx")), "");
  EXPECT_NE(parse_error(file_bytes(std::string(100, '[') + std::string(100, ']'), "")), "");  // deep nesting
  const std::string msg = parse_error(file_bytes(ok, "123456789"));
  EXPECT_NE(msg.find("test.safetensors"), std::string::npos) << msg;
}

TEST(Safetensors, EveryTruncationAndByteFlipFailsCleanly) {
  const std::string good = file_bytes(
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"I8","shape":[3],"data_offsets":[16,19]}})",
      std::string(19, '\x11'));
  EXPECT_EQ(parse_error(good), "");
  for (std::size_t n = 0; n < good.size(); ++n) {
    EXPECT_NE(parse_error(good.substr(0, n)), "") << "truncated at " << n;
  }
  for (std::size_t i = 0; i < good.size() - 19; ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5A);
    parse_error(bad);  // must not crash; most flips are errors
  }
}
