// Writes {name: tensor} as torch.save does (protocol 2 pickle, zip of stored
// records aligned to 64 bytes), for torch.load(weights_only=True).
#include <set>

#include "monoquant/error.hpp"
#include "monoquant/io/atomic_file.hpp"
#include "monoquant/io/pytorch.hpp"
#include "monoquant/io/zip.hpp"

namespace monoquant::io {
namespace {

const char* storage_class(FileDType d) {
  switch (d) {
    case FileDType::f64: return "DoubleStorage";
    case FileDType::f32: return "FloatStorage";
    case FileDType::f16: return "HalfStorage";
    case FileDType::bf16: return "BFloat16Storage";
    case FileDType::i64: return "LongStorage";
    case FileDType::i32: return "IntStorage";
    case FileDType::i16: return "ShortStorage";
    case FileDType::i8: return "CharStorage";
    case FileDType::u8: return "ByteStorage";
    case FileDType::boolean: return "BoolStorage";
    case FileDType::c64: return "ComplexFloatStorage";
    case FileDType::c128: return "ComplexDoubleStorage";
    default: return nullptr;  // needs _rebuild_tensor_v3 + UntypedStorage
  }
}

class PickleWriter {
 public:
  std::string out;
  void op(char c) { out.push_back(c); }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      out.push_back(static_cast<char>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      raw(static_cast<uint64_t>(static_cast<uint32_t>(static_cast<int32_t>(v))), 4);
    } else {
      out.push_back(static_cast<char>(0x8a));
      out.push_back(8);
      raw(static_cast<uint64_t>(v), 8);
    }
  }
  void text(const std::string& s) {
    op('X');
    raw(s.size(), 4);
    out += s;
  }
  void global(const char* module, const std::string& name) {
    op('c');
    out += module;
    out += '\n';
    out += name;
    out += '\n';
  }
  void tuple_of(const Shape& v) {
    op('(');
    for (int64_t x : v) integer(x);
    op('t');
  }
  void raw(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
};

}  // namespace

void write_pt(const std::string& path, const std::vector<TensorToWrite>& tensors,
              const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  PickleWriter p;
  p.out = "\x80\x02";
  p.op('}');
  if (!tensors.empty()) p.op('(');
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (!names.insert(t.name).second) throw_invalid_argument(path + ": duplicate tensor name '" + t.name + "'");
    if (torch_name(t.dtype).empty()) throw_unsupported(path + ": tensor '" + t.name + "' has a dtype torch cannot hold");
    const std::size_t bytes = checked_nbytes(t.dtype, t.shape, t.name);
    const char* cls = storage_class(t.dtype);
    p.text(t.name);
    p.global("torch._utils", cls ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3");
    p.op('(');
    p.op('(');
    p.text("storage");
    if (cls) p.global("torch", cls);
    else p.global("torch.storage", "UntypedStorage");
    p.text(std::to_string(i));
    p.text("cpu");
    p.integer(static_cast<int64_t>(cls ? bytes / element_size(t.dtype) : bytes));
    p.op('t');
    p.op('Q');  // BINPERSID
    p.integer(0);
    p.tuple_of(t.shape);
    p.tuple_of(contiguous_strides(t.shape));
    p.op(static_cast<char>(0x89));  // requires_grad = False
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');
    if (!cls) p.global("torch", std::string(torch_name(t.dtype)));
    p.op('t');
    p.op('R');
  }
  if (!metadata.empty()) {
    if (names.count("__metadata__")) throw_invalid_argument(path + ": a tensor is named '__metadata__'");
    if (tensors.empty()) p.op('(');
    p.text("__metadata__");
    p.op('}');
    p.op('(');
    for (const auto& [k, v] : metadata) {
      p.text(k);
      p.text(v);
    }
    p.op('u');
  }
  if (!tensors.empty() || !metadata.empty()) p.op('u');
  p.op('.');
  AtomicFile file(path);
  ZipWriter zip(file);
  const std::string prefix = "archive/";
  zip.add(prefix + "data.pkl", p.out.data(), p.out.size());
  zip.add(prefix + ".format_version", "1", 1);
  zip.add(prefix + ".storage_alignment", "64", 2);
  zip.add(prefix + "byteorder", "little", 6);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    zip.add(prefix + "data/" + std::to_string(i), t.data, checked_nbytes(t.dtype, t.shape, t.name));
  }
  zip.add(prefix + "version", "3\n", 2);
  zip.finish();
  file.commit();
}

}  // namespace monoquant::io
