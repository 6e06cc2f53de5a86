#include <gtest/gtest.h>

#include <string>

#include "monoquant/error.hpp"
#include "monoquant/io/pickle.hpp"

using namespace monoquant;
using namespace monoquant::io;
using namespace std::string_literals;

namespace {

std::string error_of(const std::string& pickle) {
  try {
    unpickle(reinterpret_cast<const std::byte*>(pickle.data()), pickle.size(), "data.pkl");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string binunicode(const std::string& s) {
  std::string out = "X";
  const uint32_t n = static_cast<uint32_t>(s.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  return out + s;
}

}  // namespace

TEST(Unpickler, ReadsContainersAndScalars) {
  // {'a': [1, -2, 300, 70000], 'b': (True, None), 'c': 'x'}
  const std::string p = "\x80\x02}q\x00("s + binunicode("a") + "](K\x01J\xfe\xff\xff\xffM\x2c\x01J\x70\x11\x01\x00"s + "e" +
                        binunicode("b") + "\x88N\x86" + binunicode("c") + binunicode("x") + "u.";
  const Unpickled u = unpickle(reinterpret_cast<const std::byte*>(p.data()), p.size(), "t");
  const auto& root = u.objects[u.root];
  ASSERT_EQ(root.kind, PickleObject::Kind::dict);
  ASSERT_EQ(root.items.size(), 6u);
  const auto& list = u.objects[root.items[1]];
  ASSERT_EQ(list.items.size(), 4u);
  EXPECT_EQ(u.objects[list.items[1]].i, -2);
  EXPECT_EQ(u.objects[list.items[3]].i, 70000);
}

TEST(Unpickler, RefusesDangerousGlobalsByName) {
  // GLOBAL + REDUCE (what pickle emits for os.system via __reduce__)
  std::string e = error_of("\x80\x02" "cos\nsystem\n" + binunicode("echo hi") + "\x85R.");
  EXPECT_NE(e.find("refused global 'os.system'"), std::string::npos) << e;
  e = error_of("cposix\nsystem\n(S'id'\ntR.");
  EXPECT_NE(e.find("posix.system"), std::string::npos) << e;
  e = error_of("\x80\x04" + std::string("\x8c\x08" "builtins\x8c\x04" "eval\x93") + "\x8c\x01" "1\x85R.");
  EXPECT_NE(e.find("builtins.eval"), std::string::npos) << e;  // STACK_GLOBAL
  e = error_of("(" + binunicode("ls") + "ios\nsystem\n.");
  EXPECT_NE(e.find("os.system"), std::string::npos) << e;  // INST
  e = error_of("\x80\x02(cbuiltins\nexec\n" + binunicode("x") + "o.");
  EXPECT_NE(e.find("builtins.exec"), std::string::npos) << e;  // GLOBAL refused before OBJ
  e = error_of("\x80\x02}(" + binunicode("k") + "](csubprocess\ncheck_output\n" + "e" + "u.");
  EXPECT_NE(e.find("subprocess.check_output"), std::string::npos) << e;  // nested in containers
  e = error_of("\x80\x02" "ctorch\nload\n)R.");
  EXPECT_NE(e.find("torch.load"), std::string::npos) << e;  // unknown torch global
  e = error_of("\x80\x02" "ctorch._utils\n_rebuild_device_tensor_from_numpy\n)R.");
  EXPECT_NE(e.find("does not rebuild"), std::string::npos) << e;
}

TEST(Unpickler, MalformedStreamsGiveErrors) {
  EXPECT_NE(error_of(""), "");
  EXPECT_NE(error_of("\x80\x02"), "");           // no STOP
  EXPECT_NE(error_of("\x80\x02t."), "");         // TUPLE without MARK
  EXPECT_NE(error_of("\x80\x02h\x05."), "");     // memo key never stored
  EXPECT_NE(error_of("\x80\x02" "a."), "");      // APPEND on empty stack
  EXPECT_NE(error_of("\x80\x02X\xff\xff\xff\x7f" "abc."), "");
  // string longer than the data
  EXPECT_NE(error_of("\x80\x02K\x01K\x02s."), "");  // SETITEM on an int
  EXPECT_NE(error_of("\x80\x02\xff."), "");      // unknown opcode
  EXPECT_NE(error_of("\x80\x02" "Q."), "");      // BINPERSID without a pid
  EXPECT_NE(error_of("\x80\x02" "X\x02\x00\x00\x00\xc3\x28."s), "");  // invalid UTF-8
}

TEST(Unpickler, RebuildsATensorFromTheTorchOpcodeShape) {
  const std::string p = std::string("\x80\x02}(") + binunicode("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" +
                        binunicode("storage") + "ctorch\nHalfStorage\n" + binunicode("0") + binunicode("cpu") +
                        "K\x06tQK\x01K\x02K\x02\x86K\x01K\x02\x86\x89" "ccollections\nOrderedDict\n)RtRu.";
  const Unpickled u = unpickle(reinterpret_cast<const std::byte*>(p.data()), p.size(), "t");
  ASSERT_EQ(u.tensors.size(), 1u);
  EXPECT_EQ(u.tensors[0].dtype, FileDType::f16);
  EXPECT_EQ(u.tensors[0].storage_offset, 1);
  EXPECT_EQ(u.tensors[0].shape, (Shape{2, 2}));
  EXPECT_EQ(u.tensors[0].strides, (Shape{1, 2}));
  ASSERT_EQ(u.storages.size(), 1u);
  EXPECT_EQ(u.storages[0].numel, 6);
}
