// compressed-tensors writer and reader. Conventions checked against
// compressed_tensors/compressors/{pack_quantized,naive_quantized} (v0.20.1):
// pack_to_int32 puts element i of each run of 32/b at bits [b*i, b*i+b), after
// adding 2^(b-1), zero-pads K, and packs zero points the same way along dim 0.
#include "monoquant/io/compressed_tensors.hpp"

#include <cmath>
#include <cstring>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "monoquant/error.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/half.hpp"
#include "monoquant/io/safetensors.hpp"
#include "monoquant/quantize.hpp"
#include "monoquant/version.hpp"
#include "monoquant/weight_quantizer.hpp"

namespace monoquant::io {
namespace {

using json = nlohmann::ordered_json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Tensor store_scales(const Tensor& scales_f32, DType dtype, Shape shape) {
  Tensor out(dtype, std::move(shape));
  const float* s = scales_f32.as<float>();
  const int64_t n = scales_f32.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::f32) out.as<float>()[i] = s[i];
    else if (dtype == DType::f16) out.as<uint16_t>()[i] = f32_to_f16_bits(s[i]);
    else out.as<uint16_t>()[i] = f32_to_bf16_bits(s[i]);
  }
  return out;
}

// Packs codes (int8 values in [-2^(b-1), 2^(b-1)-1], rows x cols, given by
// `code_at`) into int32 words along the last dimension.
template <class CodeAt>
Tensor pack_rows(int64_t rows, int64_t cols, int bits, CodeAt code_at) {
  const int per_word = 32 / bits;
  const int64_t words = (cols + per_word - 1) / per_word;
  Tensor out = Tensor::zeros(DType::i32, {rows, words});
  auto* w = out.as<uint32_t>();
  const uint32_t offset = 1u << (bits - 1), mask = (bits == 32) ? ~0u : ((1u << bits) - 1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const uint32_t v = (static_cast<uint32_t>(code_at(r, c)) + offset) & mask;
      w[r * words + c / per_word] |= v << (bits * (c % per_word));
    }
  }
  return out;
}

json weight_args(int bits, bool symmetric, int64_t group_size, const char* strategy) {
  json a = json::object();
  a["num_bits"] = bits;
  a["type"] = "int";
  a["symmetric"] = symmetric;
  a["group_size"] = group_size > 0 ? json(group_size) : json(nullptr);
  a["strategy"] = strategy;
  a["block_structure"] = nullptr;
  a["dynamic"] = false;
  a["actorder"] = nullptr;
  a["observer"] = "minmax";
  a["observer_kwargs"] = json::object();
  return a;
}

// 8-bit int input activations: per token at run time (dynamic), or one
// calibrated scale per tensor (static, stored as <m>.input_scale).
json input_args(CtActivations kind, bool symmetric, int64_t group_size) {
  const bool grouped = kind == CtActivations::dynamic_per_group;
  const bool dynamic = kind == CtActivations::dynamic_per_token || grouped;
  json a = json::object();
  a["num_bits"] = 8;
  a["type"] = "int";
  a["symmetric"] = dynamic ? true : symmetric;
  a["group_size"] = grouped ? json(group_size) : json(nullptr);
  a["strategy"] = grouped ? "group" : dynamic ? "token" : "tensor";
  a["block_structure"] = nullptr;
  a["dynamic"] = dynamic;
  a["actorder"] = nullptr;
  a["observer"] = dynamic ? json(nullptr) : json("minmax");
  a["observer_kwargs"] = json::object();
  return a;
}

std::string method_name(CtMethod m) {
  switch (m) {
    case CtMethod::keep: return "keep";
    case CtMethod::w8a8: return "w8a8";
    case CtMethod::w4a16: return "w4a16";
    case CtMethod::w8a16: return "w8a16";
    case CtMethod::fp16: return "fp16";
    case CtMethod::bf16: return "bf16";
  }
  return "?";
}

}  // namespace

std::string quantization_config_json(const std::vector<CtModuleScheme>& modules, const std::vector<std::string>& ignore) {
  // Groups of identical schemes, in order of first appearance.
  std::vector<std::pair<json, std::vector<std::string>>> groups;
  std::map<std::string, std::size_t> index_of;
  std::set<std::string> formats;
  for (const CtModuleScheme& m : modules) {
    if (m.weight_bits != 4 && m.weight_bits != 8 && !(m.weight_bits == 7 && m.format == "int-quantized")) {
      throw_invalid_argument("module '" + m.module + "': compressed-tensors int weights here are 4 or 8 bits (7 as "
                             "int8 tensors, int-quantized), not " + std::to_string(m.weight_bits) + " in " + m.format);
    }
    if (m.format != "int-quantized" && m.format != "pack-quantized") {
      throw_invalid_argument("module '" + m.module + "': unknown compressed-tensors format '" + m.format + "'");
    }
    json scheme = json::object();
    scheme["targets"] = json::array();
    scheme["weights"] = weight_args(m.weight_bits, m.weight_symmetric, m.group_size, m.group_size > 0 ? "group" : "channel");
    scheme["input_activations"] =
        m.activations == CtActivations::none ? json(nullptr) : input_args(m.activations, m.activations_symmetric, m.group_size);
    scheme["output_activations"] = nullptr;
    scheme["format"] = m.format;
    const std::string key = scheme.dump();
    auto [it, fresh] = index_of.emplace(key, groups.size());
    if (fresh) groups.emplace_back(scheme, std::vector<std::string>{});
    groups[it->second].second.push_back(m.module);
    formats.insert(m.format);
  }
  json config = json::object();
  json config_groups = json::object();
  for (std::size_t i = 0; i < groups.size(); ++i) {
    json scheme = groups[i].first;
    scheme["targets"] = groups[i].second;
    config_groups["group_" + std::to_string(i)] = scheme;
  }
  config["config_groups"] = config_groups;
  config["format"] = formats.size() == 1 ? *formats.begin() : (formats.empty() ? "dense" : "mixed-precision");
  config["global_compression_ratio"] = nullptr;
  config["ignore"] = ignore;
  config["kv_cache_scheme"] = nullptr;
  config["quant_method"] = "compressed-tensors";
  config["quantization_status"] = "compressed";
  config["sparsity_config"] = json::object();
  config["transform_config"] = json::object();
  config["version"] = "0.20.1";
  return config.dump();
}

bool ct_target_matches(const std::string& target, const std::string& module) {
  if (target.rfind("re:", 0) == 0) {
    try {
      return std::regex_search(module, std::regex(target.substr(3)), std::regex_constants::match_continuous);
    } catch (const std::regex_error&) {
      throw_format_error("quantization_config: bad regular expression '" + target + "'");
    }
  }
  return target == module;
}

CtMethod parse_ct_method(const std::string& name) {
  for (CtMethod m : {CtMethod::keep, CtMethod::w8a8, CtMethod::w4a16, CtMethod::w8a16, CtMethod::fp16, CtMethod::bf16}) {
    if (method_name(m) == name) return m;
  }
  throw_invalid_argument("unknown quantization method '" + name + "'; expected keep, w8a8, w4a16, w8a16, fp16 or bf16");
}

CompressedTensors compress_tensors(const std::vector<TensorToWrite>& inputs, const std::map<std::string, CtTensorPlan>& plan) {
  std::set<std::string> input_names;
  for (const auto& in : inputs) input_names.insert(in.name);
  for (const auto& [name, p] : plan) {
    if (!input_names.count(name)) throw_invalid_argument("the plan names tensor '" + name + "', which is not an input");
  }
  CompressedTensors out;
  out.owned.reserve(inputs.size() * 4);
  auto emit = [&](const std::string& name, Tensor t) {
    out.owned.push_back(std::move(t));
    out.tensors.push_back(TensorToWrite::from(name, out.owned.back().view()));
  };
  std::vector<CtModuleScheme> schemes;
  json info = json::object();
  info["version"] = std::string(version);
  info["rounding"] = "half_even";
  info["scales"] = "rounded up to the stored dtype before quantizing";
  json tensor_info = json::object();

  for (const auto& in : inputs) {
    const auto it = plan.find(in.name);
    const CtTensorPlan p = it == plan.end() ? CtTensorPlan{} : it->second;
    if (p.method == CtMethod::keep) {
      out.tensors.push_back(in);  // any dtype (fp8, unsigned included), passed through bit for bit
      continue;
    }
    const auto core = to_core(in.dtype);
    if (!core || !is_floating(*core)) throw_invalid_argument("tensor '" + in.name + "' is not floating; cannot quantize it");
    const TensorView view(in.data, *core, in.shape);
    if (p.method == CtMethod::fp16 || p.method == CtMethod::bf16) {
      // The documented policy: NaN, Inf and float16 overflow are errors naming the element.
      Tensor h;
      try {
        h = cast_to_half(view, p.method == CtMethod::fp16 ? DType::f16 : DType::bf16, OverflowPolicy::error);
      } catch (const Error& e) {
        throw_invalid_argument("tensor '" + in.name + "': " + e.what());
      }
      emit(in.name, std::move(h));
      tensor_info[in.name] = method_name(p.method);
      continue;
    }
    if (view.dim() != 2) {
      throw_invalid_argument("tensor '" + in.name + "' has shape " + shape_to_string(view.shape) +
                             "; only 2-D [out, in] weights can be quantized");
    }
    if (!ends_with(in.name, ".weight")) {
      throw_invalid_argument("tensor '" + in.name + "': quantized tensors must be named '<module>.weight'");
    }
    const std::string module = in.name.substr(0, in.name.size() - 7);
    const int64_t n = view.shape[0], k = view.shape[1];
    const DType scale_dtype = (view.dtype == DType::f16 || view.dtype == DType::bf16) ? view.dtype : DType::f32;
    QuantSpec spec;
    spec.scheme = p.symmetric ? Scheme::symmetric : Scheme::asymmetric;
    int64_t group = -1;
    if (p.method == CtMethod::w8a8) {
      spec.bits = 8;
      spec.granularity = Granularity::per_channel;
      spec.axis = 0;
    } else {
      spec.bits = p.method == CtMethod::w4a16 ? 4 : 8;
      if (p.group_size > 0) {
        if (k % p.group_size != 0) {
          // compressed-tensors (v0.20.1 forward_helpers) refuses to
          // dequantize ragged groups, so such a file would not load.
          throw_invalid_argument("tensor '" + in.name + "': K = " + std::to_string(k) +
                                 " is not a multiple of group_size " + std::to_string(p.group_size) +
                                 "; compressed-tensors readers refuse ragged groups. Use a group size that divides K, "
                                 "or group_size -1 (one scale per output channel)");
        }
        spec.granularity = Granularity::per_group;
        spec.group_size = p.group_size;
        group = p.group_size;
      } else {
        spec.granularity = Granularity::per_channel;
        spec.axis = 0;
      }
    }
    QuantizedTensor q;
    try {
      q = quantize_weight(view, spec, ScaleMethod::absmax, scale_dtype);
    } catch (const Error& e) {
      throw_invalid_argument("tensor '" + in.name + "': " + e.what());
    }
    const Tensor scales_copy = to_contiguous_f32(q.scales.view());
    const int64_t ngroups = scales_copy.numel() / std::max<int64_t>(n, 1);
    emit(module + ".weight_scale", store_scales(scales_copy, scale_dtype, {n, ngroups}));
    std::string format;
    if (p.method == CtMethod::w8a8) {
      format = "int-quantized";
      emit(module + ".weight", std::move(q.codes));
      if (!p.symmetric) {
        Tensor z(DType::i8, {n, 1});
        for (int64_t i = 0; i < n; ++i) z.as<int8_t>()[i] = static_cast<int8_t>(q.zero_points.as<int32_t>()[i]);
        emit(module + ".weight_zero_point", std::move(z));
      }
    } else {
      format = "pack-quantized";
      Tensor packed;
      if (spec.bits == 4) {
        // The quantizer's packed rows (two codes per byte, low nibble first, +8) are already the
        // bit sequence of the int32 words: copy them row by row, zero-padding each row to a word.
        const auto* bytes = reinterpret_cast<const uint8_t*>(q.codes.data());
        const int64_t row_bytes = (k + 1) / 2, words = (k + 7) / 8;
        packed = Tensor::zeros(DType::i32, {n, words});
        for (int64_t r = 0; r < n; ++r) std::memcpy(packed.data() + r * words * 4, bytes + r * row_bytes, static_cast<std::size_t>(row_bytes));
      } else {
        const auto* codes = q.codes.as<int8_t>();
        packed = pack_rows(n, k, 8, [&](int64_t r, int64_t c) { return static_cast<int>(codes[r * k + c]); });
      }
      emit(module + ".weight_packed", std::move(packed));
      Tensor shape(DType::i64, {2});
      shape.as<int64_t>()[0] = n;
      shape.as<int64_t>()[1] = k;
      emit(module + ".weight_shape", std::move(shape));
      if (!p.symmetric) {
        const auto* z = q.zero_points.as<int32_t>();
        // Packed along dim 0 (over N): transpose, pack rows, transpose back.
        Tensor t = pack_rows(ngroups, n, spec.bits, [&](int64_t g, int64_t r) { return z[r * ngroups + g]; });
        const int64_t words = t.shape()[1];
        Tensor zp(DType::i32, {words, ngroups});
        for (int64_t g = 0; g < ngroups; ++g) {
          for (int64_t w = 0; w < words; ++w) zp.as<int32_t>()[w * ngroups + g] = t.as<int32_t>()[g * words + w];
        }
        emit(module + ".weight_zero_point", std::move(zp));
      }
    }
    CtModuleScheme ms;
    ms.module = module;
    ms.weight_bits = spec.bits;
    ms.weight_symmetric = p.symmetric;
    ms.group_size = group;
    ms.format = format;
    ms.activations = p.method == CtMethod::w8a8 ? CtActivations::dynamic_per_token : CtActivations::none;
    schemes.push_back(std::move(ms));
    json ti = json::object();
    ti["method"] = method_name(p.method);
    ti["bits"] = spec.bits;
    ti["group_size"] = group;
    ti["symmetric"] = p.symmetric;
    ti["scale_dtype"] = std::string(name_of(scale_dtype));
    tensor_info[in.name] = ti;
  }
  out.quantization_config = quantization_config_json(schemes);
  info["tensors"] = tensor_info;
  out.monoquant_info = info.dump();
  return out;
}

void write_compressed_safetensors(const std::string& path, const std::vector<TensorToWrite>& inputs,
                                  const std::map<std::string, CtTensorPlan>& plan,
                                  const std::map<std::string, std::string>& metadata) {
  const CompressedTensors c = compress_tensors(inputs, plan);
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  meta["quantization_config"] = c.quantization_config;
  meta["monoquant"] = c.monoquant_info;
  write_safetensors(path, c.tensors, meta);
}

namespace {

struct ModuleArgs {
  int bits = 8;
  bool symmetric = true;
  std::string strategy = "channel";
  int64_t group_size = -1;
  std::string format;
};

Tensor as_f32(const TensorRecord& r) { return to_contiguous_f32(r.view()); }

}  // namespace

std::vector<std::pair<std::string, Tensor>> decompress_tensors(const Checkpoint& ck, const std::string& quantization_config) {
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(quantization_config);
  } catch (const nlohmann::json::exception& e) {
    throw_format_error(std::string("quantization_config is not valid JSON: ") + e.what());
  }
  if (!cfg.is_object() || !cfg.contains("config_groups") || !cfg["config_groups"].is_object()) {
    throw_format_error("quantization_config has no config_groups object");
  }
  const std::string top_format = cfg.value("format", "");
  std::vector<std::pair<std::vector<std::string>, ModuleArgs>> schemes;
  for (const auto& [gname, g] : cfg["config_groups"].items()) {
    if (!g.is_object() || !g.contains("weights") || !g["weights"].is_object()) continue;
    const auto& w = g["weights"];
    ModuleArgs a;
    a.bits = w.value("num_bits", 8);
    a.symmetric = w.value("symmetric", true);
    a.group_size = w.contains("group_size") && w["group_size"].is_number_integer() ? w["group_size"].get<int64_t>() : -1;
    a.strategy = w.contains("strategy") && w["strategy"].is_string() ? w["strategy"].get<std::string>()
                 : (a.group_size > 0 ? "group" : "tensor");
    a.format = g.contains("format") && g["format"].is_string() ? g["format"].get<std::string>() : top_format;
    if (w.value("type", "int") != "int") throw_unsupported("config group '" + gname + "': only int weights are supported");
    std::vector<std::string> targets;
    if (g.contains("targets") && g["targets"].is_array()) {
      for (const auto& t : g["targets"]) {
        if (t.is_string()) targets.push_back(t.get<std::string>());
      }
    }
    schemes.emplace_back(std::move(targets), a);
  }
  auto args_for = [&](const std::string& module) -> ModuleArgs {
    for (const auto& [targets, a] : schemes) {
      for (const auto& t : targets) {
        if (ct_target_matches(t, module)) return a;
      }
    }
    if (schemes.size() == 1) return schemes[0].second;  // class-name targets ("Linear")
    throw_format_error("module '" + module + "' is quantized but matches no config group");
  };
  std::vector<std::pair<std::string, Tensor>> out;
  std::set<std::string> consumed;
  for (const auto& r : ck.tensors) {
    std::string module;
    bool packed = false;
    if (ends_with(r.name, ".weight_packed")) {
      module = r.name.substr(0, r.name.size() - 14);
      packed = true;
    } else if (ends_with(r.name, ".weight") && ck.find(r.name + "_scale") != nullptr) {
      module = r.name.substr(0, r.name.size() - 7);
    } else {
      continue;
    }
    const ModuleArgs a = args_for(module);
    const TensorRecord* scale = ck.find(module + ".weight_scale");
    if (!scale) throw_format_error("module '" + module + "' has no weight_scale");
    const TensorRecord* zp = a.symmetric ? nullptr : ck.find(module + ".weight_zero_point");
    if (!a.symmetric && !zp) throw_format_error("asymmetric module '" + module + "' has no weight_zero_point");
    QuantSpec spec;
    spec.bits = a.bits;
    spec.scheme = a.symmetric ? Scheme::symmetric : Scheme::asymmetric;
    if (a.strategy == "group") {
      spec.granularity = Granularity::per_group;
      spec.group_size = a.group_size;
    } else if (a.strategy == "channel") {
      spec.granularity = Granularity::per_channel;
      spec.axis = 0;
    } else if (a.strategy == "tensor") {
      spec.granularity = Granularity::per_tensor;
    } else {
      throw_unsupported("module '" + module + "': strategy '" + a.strategy + "' is not supported");
    }
    if (a.bits != 4 && a.bits != 8 && !(a.bits == 7 && !packed)) {
      throw_unsupported("module '" + module + "': " + std::to_string(a.bits) + "-bit weights" +
                        (a.bits == 7 ? " packed into int32 words (7-bit weights are read as int8 tensors)" : ""));
    }
    int64_t n = 0, k = 0;
    Tensor codes;
    if (packed) {
      const TensorRecord* shp = ck.find(module + ".weight_shape");
      if (!shp || shp->numel() != 2 || (shp->dtype != FileDType::i64 && shp->dtype != FileDType::i32)) {
        throw_format_error("module '" + module + "' needs an int weight_shape of 2 elements");
      }
      n = shp->dtype == FileDType::i64 ? reinterpret_cast<const int64_t*>(shp->data())[0] : reinterpret_cast<const int32_t*>(shp->data())[0];
      k = shp->dtype == FileDType::i64 ? reinterpret_cast<const int64_t*>(shp->data())[1] : reinterpret_cast<const int32_t*>(shp->data())[1];
      const int per_word = 32 / a.bits;
      if (r.dtype != FileDType::i32 || r.shape.size() != 2 || r.shape[0] != n || n < 0 || k < 0 ||
          r.shape[1] != (k + per_word - 1) / per_word || !r.is_contiguous()) {
        throw_format_error("module '" + module + "': weight_packed " + shape_to_string(r.shape) +
                           " does not match weight_shape [" + std::to_string(n) + ", " + std::to_string(k) + "]");
      }
      const auto* w = reinterpret_cast<const uint8_t*>(r.data());  // little-endian words
      const int64_t wbytes = r.shape[1] * 4;
      if (a.bits == 4) {
        codes = Tensor::zeros(DType::int4_packed, {n, k});
        const int64_t row_bytes = (k + 1) / 2;
        for (int64_t i = 0; i < n; ++i) std::memcpy(codes.data() + i * row_bytes, w + i * wbytes, static_cast<std::size_t>(row_bytes));
      } else {
        codes = Tensor(DType::i8, {n, k});
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t j = 0; j < k; ++j) codes.as<int8_t>()[i * k + j] = static_cast<int8_t>(static_cast<int>(w[i * wbytes + j]) - 128);
        }
      }
    } else {
      if (r.dtype != FileDType::i8 || r.shape.size() != 2) throw_format_error("module '" + module + "': weight must be int8 [N, K]");
      n = r.shape[0];
      k = r.shape[1];
      codes = Tensor(DType::i8, {n, k});
      const TensorView v = r.view();
      if (v.is_contiguous()) std::memcpy(codes.data(), v.data, codes.nbytes());
      else throw_unsupported("module '" + module + "': strided int8 weight");
    }
    Tensor scales = as_f32(*scale);
    Shape sshape = spec.granularity == Granularity::per_group ? Shape{n, (k + a.group_size - 1) / a.group_size}
                   : spec.granularity == Granularity::per_channel ? Shape{n} : Shape{};
    if (scales.numel() != numel_of(sshape)) {
      throw_format_error("module '" + module + "': weight_scale " + shape_to_string(scale->shape) + " does not fit " +
                         shape_to_string(Shape{n, k}));
    }
    Tensor scales_shaped(DType::f32, sshape);
    std::memcpy(scales_shaped.data(), scales.data(), scales.nbytes());
    Tensor zeros = Tensor::zeros(DType::i32, sshape);
    if (zp) {
      if (packed) {
        const int per_word = 32 / a.bits;
        const int64_t ng = numel_of(sshape) / std::max<int64_t>(n, 1);
        if (zp->dtype != FileDType::i32 || zp->shape.size() != 2 || zp->shape[0] != (n + per_word - 1) / per_word ||
            zp->shape[1] != ng || !zp->is_contiguous()) {
          throw_format_error("module '" + module + "': packed weight_zero_point has shape " + shape_to_string(zp->shape));
        }
        const auto* zw = reinterpret_cast<const uint32_t*>(zp->data());
        const uint32_t mask = (1u << a.bits) - 1, offset = 1u << (a.bits - 1);
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t g = 0; g < ng; ++g) {
            uint32_t word;
            std::memcpy(&word, zw + (i / per_word) * ng + g, 4);
            zeros.as<int32_t>()[i * ng + g] = static_cast<int32_t>((word >> (a.bits * (i % per_word))) & mask) - static_cast<int32_t>(offset);
          }
        }
      } else {
        const Tensor z = as_f32(*zp);
        if (z.numel() != zeros.numel()) throw_format_error("module '" + module + "': weight_zero_point has the wrong size");
        for (int64_t i = 0; i < z.numel(); ++i) zeros.as<int32_t>()[i] = static_cast<int32_t>(z.as<float>()[i]);
      }
    }
    QuantizedTensorView qv;
    qv.spec = spec;
    qv.shape = {n, k};
    qv.codes = codes.view();
    qv.scales = scales_shaped.view();
    qv.zero_points = zeros.view();
    out.emplace_back(module + ".weight", dequantize(qv));
    consumed.insert(r.name);
    consumed.insert(module + ".weight_scale");
    consumed.insert(module + ".weight_shape");
    consumed.insert(module + ".weight_zero_point");
  }
  for (const auto& r : ck.tensors) {
    if (consumed.count(r.name)) continue;
    Tensor c(DType::u8, {static_cast<int64_t>(r.nbytes())});
    if (!r.is_contiguous()) throw_unsupported("tensor '" + r.name + "' is strided");
    std::memcpy(c.data(), r.data(), c.nbytes());
    if (const auto core = to_core(r.dtype)) {
      Tensor t(*core, r.shape);
      std::memcpy(t.data(), c.data(), t.nbytes());
      out.emplace_back(r.name, std::move(t));
    } else {
      out.emplace_back(r.name, std::move(c));
    }
  }
  return out;
}

}  // namespace monoquant::io
