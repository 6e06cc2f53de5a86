// `monoquant dequantize QUANT -o OUT [--dtype f32|f16|bf16]`: a quantized
// checkpoint (monoquant's or another compressed-tensors tool's) back to a
// plain float checkpoint that any reader loads.
#include "cli/dequantize.hpp"

#include <cstdio>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "cli/common.hpp"
#include "cli/exit_codes.hpp"
#include "monoquant/error.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/io/compressed_tensors.hpp"
#include "monoquant/io/reader.hpp"
#include "monoquant/io/stream_writer.hpp"
#include "monoquant/pipeline/quantized_checkpoint.hpp"

namespace monoquant::cli {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

CLI::App* add_dequantize(CLI::App& app, DequantizeOptions& o) {
  auto* sub = app.add_subcommand("dequantize", "Turn a quantized checkpoint back into float tensors");
  sub->add_option("quantized", o.input, "A quantized .safetensors, .pt or model directory")->required();
  sub->add_option("-o,--output", o.output, "Output: .safetensors, .pt, or a directory")->required();
  sub->add_option("--dtype", o.dtype, "Dtype of the dequantized weights: f32 (default), f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  sub->add_flag("--quiet", o.quiet, "No summary");
  return sub;
}

int run_dequantize(const DequantizeOptions& o) {
  if (!exists(o.input)) throw_io_error(o.input + ": no such file or directory");
  if (same_path(o.input, o.output)) throw_invalid_argument("the output " + o.output + " is the input; choose another path");
  const io::CheckpointContents c = io::read_checkpoint(o.input);
  const io::Checkpoint& ck = c.checkpoint;
  const std::string qcfg = pipeline::quantization_config_of(o.input, ck);
  const auto modules = pipeline::quantized_modules(ck, qcfg);
  if (modules.empty()) throw_invalid_argument(o.input + " is not quantized (no quantized layer found); nothing to dequantize");
  std::set<std::string> quantized_weights;
  for (const auto& m : modules) quantized_weights.insert(m.module + ".weight");
  std::vector<std::pair<std::string, Tensor>> tensors;
  if (!qcfg.empty()) {
    tensors = io::decompress_tensors(ck, qcfg);
  } else {
    for (const auto& r : ck.tensors) {
      Tensor t(DType::u8, {static_cast<int64_t>(r.nbytes())});
      if (!r.is_contiguous()) throw_unsupported("tensor '" + r.name + "' is strided");
      std::memcpy(t.data(), r.data(), t.nbytes());
      tensors.emplace_back(r.name, std::move(t));
    }
  }
  const DType target = o.dtype == "f16" ? DType::f16 : o.dtype == "bf16" ? DType::bf16 : DType::f32;
  std::vector<io::TensorSpec> specs;
  std::vector<Tensor> data;
  for (auto& [name, t] : tensors) {
    if (ends_with(name, ".input_scale") || ends_with(name, ".input_zero_point") || ends_with(name, ".weight_g_idx")) continue;
    const io::TensorRecord* rec = ck.find(name);
    Tensor out = std::move(t);
    io::FileDType dt;
    Shape shape;
    if (quantized_weights.count(name)) {
      // A dequantized weight (float32 from decompress, or a stored float16/bfloat16 layer): to --dtype.
      const TensorView src = out.dtype() == DType::u8 && rec ? TensorView(rec->data(), *io::to_core(rec->dtype), rec->shape)
                                                             : out.view();
      Tensor f = src.dtype == DType::f32 ? to_contiguous_f32(src) : half_to_f32(src);
      out = target == DType::f32 ? std::move(f) : cast_to_half(f.view(), target, OverflowPolicy::error);
      dt = io::from_core(out.dtype());
      shape = out.shape();
    } else if (rec) {
      dt = rec->dtype;  // kept as stored (raw bytes for dtypes the core does not compute with)
      shape = rec->shape;
    } else {
      dt = io::from_core(out.dtype());
      shape = out.shape();
    }
    specs.push_back({name, dt, shape});
    data.push_back(std::move(out));
  }
  io::OutputKind kind = io::output_kind_for_path(o.output);
  io::CheckpointStreamWriter writer(o.output, kind, specs, {});
  if (kind == io::OutputKind::directory && is_directory(o.input)) {
    if (exists(o.input + "/config.json")) {
      auto cfg = nlohmann::json::parse(read_text(o.input + "/config.json"), nullptr, false);
      if (cfg.is_object()) {
        cfg.erase("quantization_config");
        writer.add_file("config.json", cfg.dump(2) + "\n");
      }
    }
    for (const auto& [name, text] : companion_files(o.input)) writer.add_file(name, text);
  }
  for (std::size_t i = 0; i < data.size(); ++i) writer.write(i, data[i].data(), data[i].nbytes());
  writer.commit();
  if (!o.quiet) {
    std::printf("%s: %zu quantized layers dequantized to %s; %zu tensors, %llu bytes written to %s\n", o.input.c_str(),
                modules.size(), o.dtype.c_str(), specs.size(), static_cast<unsigned long long>(writer.data_bytes()),
                o.output.c_str());
  }
  return ok;
}

}  // namespace monoquant::cli
