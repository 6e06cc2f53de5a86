// The monoquant command line: one file per subcommand (quantize, dequantize,
// inspect, validate and compare in check.cpp), exit codes in exit_codes.hpp.
#include <CLI/CLI.hpp>

#include <malloc.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/exit_codes.hpp"
#include "cli/check.hpp"
#include "cli/common.hpp"
#include "cli/dequantize.hpp"
#include "cli/inspect.hpp"
#include "cli/quantize.hpp"
#include "monoquant/attention.hpp"
#include "monoquant/cpu_features.hpp"
#include "monoquant/error.hpp"
#include "monoquant/linear.hpp"
#include "monoquant/norm.hpp"
#include "monoquant/thread_pool.hpp"
#include "monoquant/version.hpp"

namespace {

}  // namespace

int main(int argc, char** argv) {
  using namespace monoquant;
  // A fixed mmap threshold: glibc otherwise raises it after each large free,
  // so the per-tensor buffers of a checkpoint run (a few MiB each) would come
  // from the heap and stay resident after they are freed, and peak memory
  // would grow tensor after tensor instead of staying at one tensor's work.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  CLI::App app{"monoquant: quantize PyTorch checkpoints to int8, int4, float16 and bfloat16"};
  app.set_version_flag("--version", std::string("monoquant ") + version);
  int threads = 0;
  app.add_option("--threads", threads, "Worker threads (default: all cores, or MONOQUANT_NUM_THREADS)")
      ->check(CLI::Range(1, 4096).description("an integer from 1 to 4096"));
  app.require_subcommand(0, 1);
  auto* info = app.add_subcommand("info", "Show the version, CPU features and the kernel set in use");
  cli::InspectOptions inspect_options;
  auto* inspect = cli::add_inspect(app, inspect_options);
  cli::QuantizeOptions quantize_options;
  auto* quantize = cli::add_quantize(app, quantize_options);
  cli::DequantizeOptions dequantize_options;
  auto* dequantize = cli::add_dequantize(app, dequantize_options);
  cli::ValidateOptions validate_options;
  auto* validate = cli::add_validate(app, validate_options);
  cli::CompareOptions compare_options;
  auto* compare = cli::add_compare(app, compare_options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    // CLI11 uses 0 for --help/--version; every real parse error becomes 2.
    return rc == 0 ? cli::ok : cli::usage_error;
  }

  try {
    if (threads > 0) set_num_threads(threads);
    if (info->parsed()) {
      const CpuFeatures& f = cpu_features();
      std::printf("monoquant %s\nkernels: %s\nlinear_kernels: %s\nlinear_kernels_why: %s\nthreads: %d\navx2=%d fma=%d f16c=%d avx512f=%d avx512vnni=%d avxvnni=%d\n",
                  version, std::string(name_of(active_isa())).c_str(), std::string(linear_kernel_name()).c_str(),
                  linear_kernel_reason().c_str(), num_threads(), f.avx2, f.fma, f.f16c, f.avx512f, f.avx512vnni, f.avx_vnni);
      // What a model whose float part runs in bf16 (Python, compute_dtype) gets beside the linear layers.
      std::printf("bf16_attention: %s\nbf16_layer_norm: %s\n",
                  attention_bf16_kernel() == "amx_bf16"      ? "monoquant_amx (AMX-BF16 tiles, head_dim 32 / 64)"
                  : attention_bf16_kernel() == "avx512_bf16" ? "monoquant_amx (AVX-512 BF16 vdpbf16ps, head_dim 32 / 64)"
                                                             : "torch's sdpa (no AMX-BF16 or AVX-512 BF16)",
                  layer_norm_bf16_available() ? "monoquant (AVX-512 BF16)" : "torch's (no AVX-512 BF16)");
      // What --bits 7 buys on this CPU: only the avx2 set has a narrow-code kernel.
      std::printf("w7a8: %s\n", linear_kernel_name() == "avx2"
                                    ? "narrow-code kernel (u8 activations straight into vpmaddubsw): --bits 7 runs "
                                      "faster than --bits 8 here"
                                    : "the W8A8 kernels (VNNI / AMX take 8-bit weights at full speed): --bits 7 "
                                      "only costs accuracy here");
      return cli::ok;
    }
    cli::install_signal_handlers();
    if (inspect->parsed()) return cli::run_inspect(inspect_options);
    if (quantize->parsed()) return cli::run_quantize(quantize_options);
    if (dequantize->parsed()) return cli::run_dequantize(dequantize_options);
    if (validate->parsed()) return cli::run_validate(validate_options);
    if (compare->parsed()) return cli::run_compare(compare_options);
    std::printf("%s", app.help().c_str());
    return cli::ok;
  } catch (const Error& e) {
    std::fprintf(stderr, "monoquant: %s: %s\n", std::string(to_string(e.kind())).c_str(), e.what());
    return cli::exit_code_for(e.kind());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "monoquant: internal error: %s\n", e.what());
    return cli::internal_error;
  }
}
