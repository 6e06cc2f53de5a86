// `monoquant inspect <checkpoint>`: the tensors of a .safetensors file, model
// directory or .pt archive (name, dtype, shape, bytes), its metadata and, for
// a compressed-tensors checkpoint, the quantization formats.
#include "cli/inspect.hpp"

#include <cstdio>
#include <string>

#include "monoquant/io/reader.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant::cli {

CLI::App* add_inspect(CLI::App& app, InspectOptions& options) {
  auto* sub = app.add_subcommand("inspect", "List the tensors, dtypes, shapes and metadata of a checkpoint");
  sub->add_option("checkpoint", options.path, ".safetensors file, model directory or .pt/.pth archive")->required();
  sub->add_flag("--summary", options.summary, "Only the totals, not one line per tensor");
  return sub;
}

int run_inspect(const InspectOptions& options) {
  const io::CheckpointContents c = io::read_checkpoint(options.path);
  const io::Checkpoint& ck = c.checkpoint;
  const char* kind = c.pickle ? "torch.save archive" : "safetensors";
  uint64_t total = 0;
  for (const auto& t : ck.tensors) total += t.nbytes();
  std::printf("%s: %s, %zu tensors, %llu bytes of tensor data\n", options.path.c_str(), kind, ck.tensors.size(),
              static_cast<unsigned long long>(total));
  for (const auto& [k, v] : ck.metadata) {
    const std::string shown = v.size() > 200 ? v.substr(0, 200) + "..." : v;
    std::printf("metadata %s = %s\n", io::printable(k).c_str(), io::printable(shown).c_str());
  }
  if (options.summary) return 0;
  for (const auto& t : ck.tensors) {
    const std::string_view dt = io::torch_name(t.dtype).empty() ? io::safetensors_name(t.dtype) : io::torch_name(t.dtype);
    std::printf("%-60s %-14s %-20s %12zu%s\n", io::printable(t.name).c_str(), std::string(dt).c_str(),
                shape_to_string(t.shape).c_str(), t.nbytes(), t.is_contiguous() ? "" : " (strided view)");
  }
  return 0;
}

}  // namespace monoquant::cli
