// The safe unpickler (see pickle.hpp). Opcode semantics follow CPython's
// Lib/pickle.py; the global allowlist follows torch/_weights_only_unpickler.py.
#include <cstring>
#include <unordered_map>

#include "monoquant/error.hpp"
#include "monoquant/io/checkpoint.hpp"
#include "monoquant/io/pickle.hpp"

namespace monoquant::io {
namespace {

using Kind = PickleObject::Kind;

// Globals a torch.save'd state dict may name, and what each one is.
enum class Callable {
  not_callable,  // dtypes, storage classes: values, not functions
  ordered_dict, rebuild_tensor, rebuild_tensor_v2, rebuild_tensor_v3, rebuild_parameter,
  rebuild_parameter_with_state, rebuild_from_type_v2, torch_size, torch_device, codecs_encode,
  bytearray, set, known_unsupported,
};

struct StorageClass {
  const char* name;
  FileDType dtype;
};
constexpr StorageClass kStorageClasses[] = {
    {"torch.DoubleStorage", FileDType::f64},       {"torch.FloatStorage", FileDType::f32},
    {"torch.HalfStorage", FileDType::f16},         {"torch.BFloat16Storage", FileDType::bf16},
    {"torch.LongStorage", FileDType::i64},         {"torch.IntStorage", FileDType::i32},
    {"torch.ShortStorage", FileDType::i16},        {"torch.CharStorage", FileDType::i8},
    {"torch.ByteStorage", FileDType::u8},          {"torch.BoolStorage", FileDType::boolean},
    {"torch.ComplexFloatStorage", FileDType::c64}, {"torch.ComplexDoubleStorage", FileDType::c128},
    {"torch.storage.UntypedStorage", FileDType::u8}, {"torch.UntypedStorage", FileDType::u8},
};

const char* const kKnownUnsupported[] = {
    "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor", "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_wrapper_subclass",
    "torch._utils._rebuild_device_tensor_from_numpy", "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._utils._rebuild_xla_tensor", "torch._utils._rebuild_mtia_tensor", "torch._utils._rebuild_tensor_from_numpy",
    "torch.serialization._get_layout", "collections.Counter", "builtins.complex", "torch.Tensor",
    "torch.QInt8Storage", "torch.QUInt8Storage", "torch.QInt32Storage", "torch.QUInt4x2Storage", "torch.QUInt2x4Storage",
    "torch.per_tensor_affine", "torch.per_tensor_symmetric", "torch.per_channel_affine", "torch.per_channel_symmetric",
    "torch.per_channel_affine_float_qparams",
};

std::optional<FileDType> storage_dtype(const std::string& name) {
  for (const auto& s : kStorageClasses) {
    if (name == s.name) return s.dtype;
  }
  return std::nullopt;
}

bool is_torch_dtype(const std::string& name) {
  return name.rfind("torch.", 0) == 0 && parse_torch_name(std::string_view(name).substr(6)).has_value();
}

Callable classify(const std::string& name) {
  static const std::unordered_map<std::string, Callable> table = {
      {"collections.OrderedDict", Callable::ordered_dict},
      {"torch._utils._rebuild_tensor", Callable::rebuild_tensor},
      {"torch._utils._rebuild_tensor_v2", Callable::rebuild_tensor_v2},
      {"torch._utils._rebuild_tensor_v3", Callable::rebuild_tensor_v3},
      {"torch._utils._rebuild_parameter", Callable::rebuild_parameter},
      {"torch._utils._rebuild_parameter_with_state", Callable::rebuild_parameter_with_state},
      {"torch._tensor._rebuild_from_type_v2", Callable::rebuild_from_type_v2},
      {"torch.nn.parameter.Parameter", Callable::known_unsupported},
      {"torch.Size", Callable::torch_size},
      {"torch.device", Callable::torch_device},
      {"_codecs.encode", Callable::codecs_encode},
      {"builtins.bytearray", Callable::bytearray},
      {"builtins.set", Callable::set},
  };
  const auto it = table.find(name);
  if (it != table.end()) return it->second;
  if (storage_dtype(name) || is_torch_dtype(name)) return Callable::not_callable;
  for (const char* k : kKnownUnsupported) {
    if (name == k) return Callable::known_unsupported;
  }
  throw std::out_of_range(name);
}

bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    int extra;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c >> 5) == 0x6) { extra = 1; cp = c & 0x1F; }
    else if ((c >> 4) == 0xE) { extra = 2; cp = c & 0x0F; }
    else if ((c >> 3) == 0x1E) { extra = 3; cp = c & 0x07; }
    else return false;
    if (n - i <= static_cast<std::size_t>(extra)) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned cc = p[i + static_cast<std::size_t>(k)];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += static_cast<std::size_t>(extra) + 1;
  }
  return true;
}

class Unpickler {
 public:
  Unpickler(const std::byte* data, std::size_t size, const std::string& label)
      : p_(reinterpret_cast<const uint8_t*>(data)), size_(size), label_(label) {}

  Unpickled run() {
    while (true) {
      const std::size_t at = pos_;
      const uint8_t op = u8();
      op_at_ = at;
      switch (op) {
        case 0x80: u8(); break;        // PROTO
        case 0x95: bytes(8); break;    // FRAME: framing is a reader hint only
        case '.': return finish();     // STOP
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case 'N': push(make(Kind::none)); break;
        case 0x88: push(boolean(true)); break;
        case 0x89: push(boolean(false)); break;
        case 'J': { int32_t v; std::memcpy(&v, bytes(4), 4); push(integer(v)); break; }
        case 'K': push(integer(u8())); break;
        case 'M': { uint16_t v; std::memcpy(&v, bytes(2), 2); push(integer(v)); break; }
        case 0x8a: long1(); break;
        case 'G': binfloat(); break;
        case 'X': push(text(le(4))); break;
        case 0x8c: push(text(u8())); break;
        case 0x8d: push(text(le(8))); break;
        case 'U': push(text(u8())); break;  // SHORT_BINSTRING: py2 str, decoded as text
        case 'B': push(blob(le(4))); break;
        case 'C': push(blob(u8())); break;
        case 0x8e: push(blob(le(8))); break;
        case ')': push(make(Kind::tuple)); break;
        case 't': { auto items = pop_mark(); push(container(Kind::tuple, std::move(items))); break; }
        case 0x85: tuple_n(1); break;
        case 0x86: tuple_n(2); break;
        case 0x87: tuple_n(3); break;
        case ']': push(make(Kind::list)); break;
        case '}': push(make(Kind::dict)); break;
        case 0x8f: push(make(Kind::list)); break;  // EMPTY_SET: a set is kept as a list
        case 'a': { const uint32_t v = pop(); append_to(top(), {v}); break; }
        case 'e': { auto items = pop_mark(); append_to(top(), items); break; }
        case 0x90: { auto items = pop_mark(); append_to(top(), items); break; }  // ADDITEMS
        case 's': { const uint32_t v = pop(), k = pop(); setitems(top(), {k, v}); break; }
        case 'u': { auto items = pop_mark(); setitems(top(), items); break; }
        case 'q': memo_[u8()] = top(); break;
        case 'r': memo_[static_cast<uint32_t>(le(4))] = top(); break;
        case 0x94: memo_[static_cast<uint32_t>(memo_.size())] = top(); break;  // MEMOIZE
        case 'h': push(memo_get(u8())); break;
        case 'j': push(memo_get(static_cast<uint32_t>(le(4)))); break;
        case '0': pop(); break;  // POP
        case 'c': { std::string m = line(), n = line(); push(global(m + "." + n)); break; }
        case 0x93: {  // STACK_GLOBAL: the same allowlist, names taken from the stack
          const uint32_t n = pop(), m = pop();
          if (obj(m).kind != Kind::string || obj(n).kind != Kind::string) fail("STACK_GLOBAL needs two strings");
          push(global(obj(m).s + "." + obj(n).s));
          break;
        }
        case 'i': {  // INST: module and name inline; never instantiated
          std::string m = line(), n = line();
          refuse(m + "." + n, "INST");
        }
        case 'o': {  // OBJ: builds an instance of a class from the stack
          auto items = pop_mark();
          const std::string name = !items.empty() && obj(items[0]).kind == Kind::global ? obj(items[0]).s : "<object>";
          refuse(name, "OBJ");
        }
        case 'R': reduce(); break;
        case 0x81: newobj(); break;
        case 'b': build(); break;
        case 'Q': persistent_id(); break;
        default: {
          char buf[80];
          std::snprintf(buf, sizeof buf, "unsupported pickle opcode 0x%02x at byte %zu", op, at);
          fail(buf);
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw_format_error(label_ + ": " + what); }
  [[noreturn]] void refuse(const std::string& name, const char* how) const {
    throw_format_error(label_ + ": refused global '" + printable(name) + "' (" + how +
                       " at byte " + std::to_string(op_at_) +
                       "): not allowed by the weights_only allowlist; nothing was executed");
  }

  const uint8_t* bytes(std::size_t n) {
    if (n > size_ - pos_) fail("truncated pickle (needs " + std::to_string(n) + " more bytes at byte " + std::to_string(pos_) + ")");
    const uint8_t* r = p_ + pos_;
    pos_ += n;
    return r;
  }
  uint8_t u8() { return *bytes(1); }
  uint64_t le(int n) {
    const uint8_t* b = bytes(static_cast<std::size_t>(n));
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[i];
    return v;
  }
  std::string line() {
    const std::size_t start = pos_;
    while (pos_ < size_ && p_[pos_] != '\n') {
      if (pos_ - start > 1024) fail("GLOBAL name too long");
      ++pos_;
    }
    if (pos_ >= size_) fail("truncated GLOBAL");
    std::string s(reinterpret_cast<const char*>(p_ + start), pos_ - start);
    ++pos_;
    return s;
  }

  uint32_t make(Kind k) {
    if (objects_.size() >= 0xFFFFFFF0u) fail("too many objects");
    objects_.emplace_back();
    objects_.back().kind = k;
    return static_cast<uint32_t>(objects_.size() - 1);
  }
  PickleObject& obj(uint32_t i) { return objects_[i]; }
  uint32_t boolean(bool b) { const uint32_t i = make(Kind::boolean); obj(i).i = b; return i; }
  uint32_t integer(int64_t v) { const uint32_t i = make(Kind::integer); obj(i).i = v; return i; }
  uint32_t text(uint64_t n) {
    if (n > size_) fail("string length " + std::to_string(n) + " exceeds the pickle");
    const uint8_t* b = bytes(static_cast<std::size_t>(n));
    const uint32_t i = make(Kind::string);
    obj(i).s.assign(reinterpret_cast<const char*>(b), static_cast<std::size_t>(n));
    if (!valid_utf8(obj(i).s)) fail("string at byte " + std::to_string(op_at_) + " is not valid UTF-8");
    return i;
  }
  uint32_t blob(uint64_t n) {
    if (n > size_) fail("bytes length " + std::to_string(n) + " exceeds the pickle");
    const uint8_t* b = bytes(static_cast<std::size_t>(n));
    const uint32_t i = make(Kind::bytes);
    obj(i).s.assign(reinterpret_cast<const char*>(b), static_cast<std::size_t>(n));
    return i;
  }
  uint32_t container(Kind k, std::vector<uint32_t> items) {
    const uint32_t i = make(k);
    obj(i).items = std::move(items);
    return i;
  }
  void long1() {
    const uint8_t n = u8();
    if (n > 8) fail("integer of " + std::to_string(n) + " bytes is too large");
    const uint8_t* b = bytes(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[i];
    if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    push(integer(static_cast<int64_t>(v)));
  }
  void binfloat() {
    const uint8_t* b = bytes(8);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | b[i];  // big-endian
    const uint32_t i = make(Kind::floating);
    std::memcpy(&obj(i).f, &v, 8);
    push(i);
  }

  void push(uint32_t i) { stack_.push_back(i); }
  uint32_t pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("pickle stack underflow at byte " + std::to_string(op_at_));
    const uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  uint32_t top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("pickle stack underflow at byte " + std::to_string(op_at_));
    return stack_.back();
  }
  std::vector<uint32_t> pop_mark() {
    if (marks_.empty()) fail("pickle MARK missing at byte " + std::to_string(op_at_));
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void tuple_n(std::size_t n) {
    std::vector<uint32_t> items(n);
    for (std::size_t i = n; i-- > 0;) items[i] = pop();
    push(container(Kind::tuple, std::move(items)));
  }
  void append_to(uint32_t target, const std::vector<uint32_t>& items) {
    if (obj(target).kind != Kind::list) fail("APPEND to something that is not a list");
    auto& v = obj(target).items;
    v.insert(v.end(), items.begin(), items.end());
  }
  void setitems(uint32_t target, const std::vector<uint32_t>& items) {
    if (obj(target).kind != Kind::dict) fail("SETITEM on something that is not a dict");
    if (items.size() % 2) fail("SETITEMS with an odd number of items");
    auto& v = obj(target).items;
    v.insert(v.end(), items.begin(), items.end());
  }
  uint32_t memo_get(uint32_t k) {
    const auto it = memo_.find(k);
    if (it == memo_.end()) fail("memo key " + std::to_string(k) + " was never stored");
    return it->second;
  }
  uint32_t global(const std::string& name) {
    if (!valid_utf8(name)) refuse(name, "GLOBAL");
    try {
      classify(name);
    } catch (const std::out_of_range&) {
      refuse(name, "GLOBAL");
    }
    const uint32_t i = make(Kind::global);
    obj(i).s = name;
    return i;
  }

  // --- checked argument access
  const PickleObject& arg(const std::vector<uint32_t>& args, std::size_t i) {
    if (i >= args.size()) fail("too few arguments");
    return obj(args[i]);
  }
  int64_t int_arg(const std::vector<uint32_t>& args, std::size_t i, const char* what) {
    const auto& o = arg(args, i);
    if (o.kind != Kind::integer) fail(std::string(what) + " must be an integer");
    return o.i;
  }
  Shape shape_arg(const std::vector<uint32_t>& args, std::size_t i, const char* what) {
    const auto& o = arg(args, i);
    if (o.kind != Kind::tuple && o.kind != Kind::list) fail(std::string(what) + " must be a tuple");
    Shape s;
    for (uint32_t e : o.items) {
      if (obj(e).kind != Kind::integer || obj(e).i < 0) fail(std::string(what) + " entries must be non-negative integers");
      s.push_back(obj(e).i);
    }
    return s;
  }

  uint32_t make_tensor(const std::vector<uint32_t>& args, int version) {
    const auto& st = arg(args, 0);
    if (st.kind != Kind::storage) fail("a tensor's first argument must be a storage (persistent id)");
    PickledTensor t;
    t.storage = static_cast<uint32_t>(st.i);
    t.dtype = storages_[t.storage].dtype;
    t.storage_offset = int_arg(args, 1, "storage_offset");
    if (t.storage_offset < 0) fail("negative storage_offset");
    t.shape = shape_arg(args, 2, "size");
    t.strides = shape_arg(args, 3, "stride");
    if (t.shape.size() != t.strides.size()) fail("size and stride have different lengths");
    if (t.shape.size() > 64) fail("tensor with more than 64 dimensions");
    if (version >= 2) {
      const auto& rg = arg(args, 4);
      if (rg.kind != Kind::boolean) fail("requires_grad must be a bool");
      t.requires_grad = rg.i != 0;
    }
    if (version == 3) {
      const auto& d = arg(args, 6);
      if (d.kind != Kind::global || !is_torch_dtype(d.s)) fail("_rebuild_tensor_v3 needs a torch dtype");
      t.dtype = *parse_torch_name(std::string_view(d.s).substr(6));
    }
    tensors_.push_back(std::move(t));
    const uint32_t i = make(Kind::tensor);
    obj(i).i = static_cast<int64_t>(tensors_.size() - 1);
    return i;
  }

  uint32_t call(const std::string& name, const std::vector<uint32_t>& args) {
    switch (classify(name)) {
      case Callable::ordered_dict:
        if (!args.empty()) fail("OrderedDict with arguments");
        return make(Kind::dict);
      case Callable::rebuild_tensor: return make_tensor(args, 1);
      case Callable::rebuild_tensor_v2: return make_tensor(args, 2);
      case Callable::rebuild_tensor_v3: return make_tensor(args, 3);
      case Callable::rebuild_parameter:
      case Callable::rebuild_parameter_with_state: {
        const auto& data = arg(args, 0);
        if (data.kind != Kind::tensor) fail("_rebuild_parameter needs a tensor");
        const auto& rg = arg(args, 1);
        if (rg.kind != Kind::boolean) fail("requires_grad must be a bool");
        PickledTensor t = tensors_[static_cast<std::size_t>(data.i)];
        t.is_parameter = true;
        t.requires_grad = rg.i != 0;
        tensors_.push_back(std::move(t));
        const uint32_t i = make(Kind::tensor);
        obj(i).i = static_cast<int64_t>(tensors_.size() - 1);
        return i;
      }
      case Callable::rebuild_from_type_v2: {
        const auto& fn = arg(args, 0);
        const auto& type = arg(args, 1);
        const auto& inner = arg(args, 2);
        if (fn.kind != Kind::global || type.kind != Kind::global || inner.kind != Kind::tuple) {
          fail("_rebuild_from_type_v2 needs (function, type, args, state)");
        }
        if (type.s != "torch.Tensor" && type.s != "torch.nn.parameter.Parameter") {
          throw_unsupported(label_ + ": tensor subclass '" + type.s + "' is not supported");
        }
        const uint32_t r = call(fn.s, std::vector<uint32_t>(inner.items));
        if (obj(r).kind == Kind::tensor && type.s == "torch.nn.parameter.Parameter") {
          tensors_[static_cast<std::size_t>(obj(r).i)].is_parameter = true;
        }
        return r;
      }
      case Callable::torch_size: {
        const auto& t = arg(args, 0);
        if (t.kind != Kind::tuple && t.kind != Kind::list) fail("torch.Size needs a tuple");
        return container(Kind::tuple, std::vector<uint32_t>(t.items));
      }
      case Callable::torch_device: {
        const auto& t = arg(args, 0);
        if (t.kind != Kind::string) fail("torch.device needs a string");
        std::string s = t.s;
        if (args.size() > 1 && arg(args, 1).kind == Kind::integer) s += ":" + std::to_string(arg(args, 1).i);
        const uint32_t i = make(Kind::string);
        obj(i).s = s;
        return i;
      }
      case Callable::codecs_encode: {
        const auto& t = arg(args, 0);
        if (t.kind != Kind::string) fail("_codecs.encode needs a string");
        // Python pickles bytes (protocol 2) as encode(latin-1 text, 'latin1').
        std::string out;
        const auto* s = reinterpret_cast<const unsigned char*>(t.s.data());
        for (std::size_t k = 0; k < t.s.size();) {
          if (s[k] < 0x80) out.push_back(static_cast<char>(s[k++]));
          else if ((s[k] >> 5) == 0x6 && k + 1 < t.s.size()) {
            const unsigned cp = ((s[k] & 0x1Fu) << 6) | (s[k + 1] & 0x3Fu);
            if (cp > 0xFF) fail("_codecs.encode: not latin-1");
            out.push_back(static_cast<char>(cp));
            k += 2;
          } else {
            fail("_codecs.encode: not latin-1");
          }
        }
        const uint32_t i = make(Kind::bytes);
        obj(i).s = std::move(out);
        return i;
      }
      case Callable::bytearray: {
        const uint32_t i = make(Kind::bytes);
        if (!args.empty()) {
          if (arg(args, 0).kind != Kind::bytes) fail("bytearray needs bytes");
          obj(i).s = arg(args, 0).s;
        }
        return i;
      }
      case Callable::set: {
        const uint32_t i = make(Kind::list);
        if (!args.empty()) {
          const auto& l = arg(args, 0);
          if (l.kind != Kind::list && l.kind != Kind::tuple) fail("set needs a list");
          obj(i).items = l.items;
        }
        return i;
      }
      case Callable::not_callable: fail("'" + name + "' is not callable");
      case Callable::known_unsupported: break;
    }
    throw_unsupported(label_ + ": '" + name + "' is allowed by torch.load(weights_only=True) but monoquant does not rebuild it");
  }

  void reduce() {
    const uint32_t a = pop(), f = pop();
    if (obj(f).kind != Kind::global) fail("REDUCE on something that is not a global");
    if (obj(a).kind != Kind::tuple) fail("REDUCE arguments must be a tuple");
    const std::string name = obj(f).s;
    push(call(name, std::vector<uint32_t>(obj(a).items)));
  }
  void newobj() {
    const uint32_t a = pop(), c = pop();
    if (obj(c).kind != Kind::global || obj(a).kind != Kind::tuple) fail("NEWOBJ needs a class and a tuple");
    if (obj(c).s == "collections.OrderedDict" && obj(a).items.empty()) {
      push(make(Kind::dict));
      return;
    }
    throw_unsupported(label_ + ": NEWOBJ of '" + obj(c).s + "' is not supported");
  }
  void build() {
    pop();  // state: OrderedDict._metadata, tensor attributes; not needed to rebuild the values
    const auto k = obj(top()).kind;
    if (k != Kind::dict && k != Kind::tensor) fail("BUILD is allowed only on tensors and OrderedDicts");
  }
  void persistent_id() {
    const uint32_t pid = pop();
    const auto& t = obj(pid);
    if (t.kind != Kind::tuple || t.items.size() != 5 || obj(t.items[0]).kind != Kind::string || obj(t.items[0]).s != "storage") {
      fail("persistent id is not ('storage', type, key, location, numel)");
    }
    const auto& type = obj(t.items[1]);
    const auto& key = obj(t.items[2]);
    const auto& loc = obj(t.items[3]);
    const auto& numel = obj(t.items[4]);
    if (type.kind != Kind::global || key.kind != Kind::string || loc.kind != Kind::string || numel.kind != Kind::integer ||
        numel.i < 0) {
      fail("malformed storage persistent id");
    }
    const auto dt = storage_dtype(type.s);
    if (!dt) throw_unsupported(label_ + ": storage type '" + type.s + "' is not supported");
    if (key.s.empty() || key.s.size() > 256 || key.s.find('/') != std::string::npos || key.s.find("..") != std::string::npos) {
      fail("bad storage key '" + key.s + "'");
    }
    const auto found = storage_index_.find(key.s);
    const std::size_t index = found == storage_index_.end() ? storages_.size() : found->second;
    if (index == storages_.size()) {
      storage_index_[key.s] = index;
      storages_.push_back({key.s, *dt, numel.i, loc.s});
    } else if (storages_[index].dtype != *dt || storages_[index].numel != numel.i) {
      fail("storage '" + key.s + "' is declared twice with different types or sizes");
    }
    const uint32_t i = make(Kind::storage);
    obj(i).i = static_cast<int64_t>(index);
    push(i);
  }

  Unpickled finish() {
    if (stack_.empty()) fail("empty pickle stack at STOP");
    Unpickled u;
    u.root = stack_.back();
    u.objects = std::move(objects_);
    u.storages = std::move(storages_);
    u.tensors = std::move(tensors_);
    return u;
  }

  const uint8_t* p_;
  std::size_t size_, pos_ = 0, op_at_ = 0;
  const std::string& label_;
  std::vector<PickleObject> objects_;
  std::vector<uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<uint32_t, uint32_t> memo_;
  std::vector<PickledStorage> storages_;
  std::unordered_map<std::string, std::size_t> storage_index_;
  std::vector<PickledTensor> tensors_;
};

}  // namespace

Unpickled unpickle(const std::byte* data, std::size_t size, const std::string& label) {
  return Unpickler(data, size, label).run();
}

}  // namespace monoquant::io
