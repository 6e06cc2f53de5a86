// Checkpoint I/O for Python. Readers hand back each storage as a uint8 torch
// tensor over the mapped file (no copy; the capsule keeps the mapping alive)
// plus (dtype, shape, strides, offset) records; monoquant/io.py turns them
// into typed views with Tensor.view(dtype).as_strided(...).
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>

#include "convert.hpp"
#include "input_tensors.hpp"
#include "monoquant/buffer.hpp"
#include "monoquant/error.hpp"
#include "monoquant/io/checkpoint.hpp"
#include "monoquant/io/compressed_tensors.hpp"
#include "monoquant/io/safetensors.hpp"
#include "monoquant/io/reader.hpp"
#include "monoquant/io/pytorch.hpp"

namespace monoquant::io {
namespace {

namespace nb = nanobind;
using Keep = std::shared_ptr<const void>;

nb::object storage_tensor(const std::byte* data, std::size_t size, Keep keep) {
  auto* owner = new Keep(std::move(keep));
  nb::capsule cap(owner, [](void* p) noexcept { delete static_cast<Keep*>(p); });
  static const std::byte dummy[8] = {};
  std::size_t dims[1] = {size};
  nb::ndarray<nb::pytorch, uint8_t, nb::device::cpu> a(const_cast<std::byte*>(data ? data : dummy), 1, dims, cap);
  return nb::cast(a);
}

// The records and storages of a checkpoint, for io.py.
nb::dict export_checkpoint(Checkpoint ck, nb::object tree) {
  auto keep = std::make_shared<std::vector<Keep>>(std::move(ck.owners));
  nb::dict storages;
  nb::list records;
  for (const auto& r : ck.tensors) {
    nb::str key(r.storage_key.c_str(), r.storage_key.size());
    if (!storages.contains(key)) {
      const std::size_t align = element_size(r.dtype);
      if (r.storage_bytes > 0 && reinterpret_cast<uintptr_t>(r.storage) % align != 0) {
        // A misaligned storage (not written by a reference writer): copy it
        // rather than hand torch a misaligned typed pointer.
        auto copy = std::make_shared<Buffer>(r.storage_bytes);
        std::memcpy(copy->data(), r.storage, r.storage_bytes);
        const std::byte* p = copy->data();
        storages[key] = storage_tensor(p, r.storage_bytes, copy);
      } else {
        storages[key] = storage_tensor(r.storage, r.storage_bytes, keep);
      }
    }
    const std::string_view tn = torch_name(r.dtype);
    if (tn.empty()) {
      throw_unsupported("tensor '" + r.name + "' has dtype " + std::string(safetensors_name(r.dtype)) +
                        ", which torch has no dtype for");
    }
    records.append(nb::make_tuple(r.name, std::string(tn), r.shape, r.strides, r.storage_offset, key,
                                  r.requires_grad, r.is_parameter));
  }
  nb::dict d;
  d["records"] = records;
  d["storages"] = storages;
  d["metadata"] = ck.metadata;
  d["tree"] = tree;
  return d;
}

std::map<std::string, CtTensorPlan> to_plan(const nb::dict& plan) {
  std::map<std::string, CtTensorPlan> out;
  for (auto [k, v] : plan) {
    auto t = nb::cast<nb::tuple>(v);
    CtTensorPlan p;
    p.method = parse_ct_method(nb::cast<std::string>(t[0]));
    p.group_size = nb::cast<int64_t>(t[1]);
    p.symmetric = nb::cast<bool>(t[2]);
    out[nb::cast<std::string>(k)] = p;
  }
  return out;
}

using Kind = PickleObject::Kind;

// The pickle's object tree as Python objects; tensors become
// monoquant.io._TensorRef(record index) for io.py to replace. Shared objects
// stay shared (as in pickle); cycles and deep nesting are format errors.
nb::object tree_to_python(const CheckpointContents& c) {
  if (!c.pickle) return nb::none();
  const Unpickled& u = *c.pickle;
  std::vector<nb::object> done(u.objects.size());
  std::vector<uint8_t> state(u.objects.size(), 0);
  nb::object tensor_ref = nb::module_::import_("monoquant.io").attr("_TensorRef");
  nb::object torch = nb::module_::import_("torch");
  std::function<nb::object(uint32_t, int)> convert = [&](uint32_t i, int depth) -> nb::object {
    if (state[i] == 2) return done[i];
    if (state[i] == 1) throw_format_error("the pickle's object graph is cyclic");
    if (depth > 256) throw_format_error("the pickle is nested more than 256 levels deep");
    state[i] = 1;
    const PickleObject& o = u.objects[i];
    nb::object r;
    switch (o.kind) {
      case Kind::none: r = nb::none(); break;
      case Kind::boolean: r = nb::bool_(o.i != 0); break;
      case Kind::integer: r = nb::int_(o.i); break;
      case Kind::floating: r = nb::float_(o.f); break;
      case Kind::string: r = nb::str(o.s.data(), o.s.size()); break;
      case Kind::bytes: r = nb::bytes(o.s.data(), o.s.size()); break;
      case Kind::tensor: r = tensor_ref(c.record_of[static_cast<std::size_t>(o.i)]); break;
      case Kind::storage: r = nb::str(("storage:" + u.storages[static_cast<std::size_t>(o.i)].key).c_str()); break;
      case Kind::global:
        if (o.s.rfind("torch.", 0) == 0 && parse_torch_name(o.s.substr(6))) r = torch.attr(o.s.substr(6).c_str());
        else r = nb::str(o.s.c_str());
        break;
      case Kind::list: {
        nb::list l;
        for (uint32_t e : o.items) l.append(convert(e, depth + 1));
        r = l;
        break;
      }
      case Kind::tuple: {
        nb::list l;
        for (uint32_t e : o.items) l.append(convert(e, depth + 1));
        r = nb::tuple(l);
        break;
      }
      case Kind::dict: {
        nb::dict d;
        for (std::size_t k = 0; k + 1 < o.items.size(); k += 2) {
          const Kind kk = u.objects[o.items[k]].kind;
          if (kk == Kind::list || kk == Kind::dict || kk == Kind::tensor) throw_format_error("unhashable dict key in the pickle");
          d[convert(o.items[k], depth + 1)] = convert(o.items[k + 1], depth + 1);
        }
        r = d;
        break;
      }
    }
    done[i] = r;
    state[i] = 2;
    return r;
  };
  return convert(u.root, 0);
}

}  // namespace

// (name, torch dtype name, shape, bytes) from io.py, bytes = a uint8 view of
// the contiguous tensor's memory (no copy).
InputTensors input_tensors(const nb::list& items) {
  InputTensors in;
  for (nb::handle h : items) {
    auto t = nb::cast<nb::tuple>(h);
    TensorToWrite w;
    w.name = nb::cast<std::string>(t[0]);
    const auto dt = parse_torch_name(nb::cast<std::string>(t[1]));
    if (!dt) throw_unsupported("tensor '" + w.name + "': dtype " + nb::cast<std::string>(t[1]) + " cannot be written");
    w.dtype = *dt;
    w.shape = nb::cast<std::vector<int64_t>>(t[2]);
    Bytes b = nb::cast<Bytes>(t[3]);
    const std::size_t need = checked_nbytes(w.dtype, w.shape, w.name);
    if (b.size() != need) {
      throw_invalid_argument("tensor '" + w.name + "': " + std::to_string(b.size()) + " bytes for " + std::to_string(need));
    }
    w.data = reinterpret_cast<const std::byte*>(b.data());
    in.keep.push_back(b);
    in.tensors.push_back(std::move(w));
  }
  return in;
}

}  // namespace monoquant::io

namespace monoquant::python {

void bind_io(nb::module_& m) {
  using namespace monoquant::io;
  m.def(
      "read_checkpoint",
      [](const std::string& path) {
        CheckpointContents c;
        {
          nb::gil_scoped_release release;
          c = read_checkpoint(path);
        }
        nb::object tree = tree_to_python(c);
        return export_checkpoint(std::move(c.checkpoint), tree);
      },
      nb::arg("path"), "Reads a .safetensors file, a model directory or a .pt archive (zero-copy).");
  m.def(
      "write_safetensors",
      [](const std::string& path, const nb::list& items, const std::map<std::string, std::string>& metadata) {
        InputTensors in = input_tensors(items);
        nb::gil_scoped_release release;
        write_safetensors(path, in.tensors, metadata);
      },
      nb::arg("path"), nb::arg("tensors"), nb::arg("metadata"));
  m.def(
      "write_compressed",
      [](const std::string& path, const nb::list& items, const nb::dict& plan, const std::map<std::string, std::string>& metadata,
         uint64_t max_shard_bytes) {
        InputTensors in = input_tensors(items);
        const auto p = to_plan(plan);
        nb::gil_scoped_release release;
        write_compressed(path, in.tensors, p, metadata, max_shard_bytes);
      },
      nb::arg("path"), nb::arg("tensors"), nb::arg("plan"), nb::arg("metadata"), nb::arg("max_shard_bytes"));
  m.def(
      "write_pt",
      [](const std::string& path, const nb::list& items, const std::map<std::string, std::string>& metadata) {
        InputTensors in = input_tensors(items);
        nb::gil_scoped_release release;
        write_pt(path, in.tensors, metadata);
      },
      nb::arg("path"), nb::arg("tensors"), nb::arg("metadata"));
  m.def(
      "write_safetensors_directory",
      [](const std::string& path, const nb::list& items, const std::map<std::string, std::string>& metadata,
         uint64_t max_shard_bytes) {
        InputTensors in = input_tensors(items);
        nb::gil_scoped_release release;
        write_safetensors_directory(path, in.tensors, metadata, max_shard_bytes);
      },
      nb::arg("path"), nb::arg("tensors"), nb::arg("metadata"), nb::arg("max_shard_bytes"));
  m.def(
      "decompress_checkpoint",
      [](const std::string& path) {
        std::vector<std::pair<std::string, Tensor>> out;
        {
          nb::gil_scoped_release release;
          out = decompress_checkpoint(path);
        }
        nb::dict d;
        for (auto& [name, t] : out) d[nb::str(name.c_str(), name.size())] = to_torch(std::move(t));
        return d;
      },
      nb::arg("path"), "Dequantizes a compressed-tensors checkpoint with monoquant's dequantize.");
}

}  // namespace monoquant::python
