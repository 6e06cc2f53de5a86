// The linear-layer driver: checks arguments, quantizes activations per row
// (dynamic) or with calibrated parameters (static), picks the kernel table
// and splits the output columns over the library's thread pool.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels/gemm.hpp"
#include "monoquant/cpu_features.hpp"
#include "monoquant/error.hpp"
#include "monoquant/linear.hpp"
#include "monoquant/thread_pool.hpp"
#include "quant/kernels.hpp"

namespace monoquant {
namespace {

// A kernel switch's start value: on unless the environment variable is "0".
bool env_enabled(const char* name) {
  const char* env = std::getenv(name);
  return !(env && std::string(env) == "0");
}

std::atomic<bool> g_vnni_enabled{env_enabled("MONOQUANT_VNNI")};
std::atomic<bool> g_avx512_enabled{env_enabled("MONOQUANT_AVX512")};
std::atomic<bool> g_amx_enabled{env_enabled("MONOQUANT_AMX")};
// MONOQUANT_AMX_BF16 is the older name (the amx set was the first with bf16
// weight-only kernels); either =0 keeps weight-only layers on float32.
std::atomic<bool> g_bf16_weight_only{env_enabled("MONOQUANT_AMX_BF16") && env_enabled("MONOQUANT_BF16_WEIGHT_ONLY")};

// Linux hands out the 8 KiB AMX tile state only to processes that ask
// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, Linux >= 5.16);
// without it the first tile instruction faults. Asked once per process.
bool request_amx_permission() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

// Integer sums stay exact while |sum| <= 255 * 128 * K fits in int32.
constexpr int64_t kMaxIntegerK = 65536;

// One output-column block is 8 columns; aim for chunks of at least this many
// multiply-adds so that waking a thread pays for itself (~10 us of work or
// more). Float activations and single-row integer products run at 10-40
// GMAC/s; integer products with several rows at 150-250 GMAC/s, so they need
// 8x the work per chunk: a 384 x 384 layer at M = 8 is faster on one thread.
constexpr int64_t kMinChunkMacs = int64_t{1} << 18;
constexpr int64_t kMinChunkMacsIntegerRows = int64_t{1} << 21;

std::atomic<int64_t> g_min_chunk_override{0};  // set_linear_min_chunk_macs (tests)

int64_t block_grain(int64_t m, int64_t k, LinearMode mode) {
  const int64_t per_block = std::max<int64_t>(1, m * k * kLinearBlockN);
  int64_t min_macs = mode != LinearMode::weight_only && m > 1 ? kMinChunkMacsIntegerRows : kMinChunkMacs;
  if (const int64_t forced = g_min_chunk_override.load()) min_macs = forced;
  return std::max<int64_t>(1, min_macs / per_block);
}

// Threads get whole groups of 4 blocks (32 columns): the 512-bit kernels
// work on 2 or 4 blocks at a time and send a remainder to narrower code, so
// a split into 6-block chunks (N = 384 over 8 chunks) would put a third of
// the work on the slower path.
constexpr int64_t kBlocksPerUnit = 4;

template <class Fn>
void for_block_ranges(int64_t nblocks, int64_t grain_blocks, const Fn& fn) {
  const int64_t units = (nblocks + kBlocksPerUnit - 1) / kBlocksPerUnit;
  const int64_t grain = std::max<int64_t>(1, grain_blocks / kBlocksPerUnit);
  parallel_for(units, grain, [&](int64_t u0, int64_t u1) {
    fn(u0 * kBlocksPerUnit, std::min(nblocks, u1 * kBlocksPerUnit));
  });
}

// Per-thread scratch reused across calls (no allocation per token). Slots
// 0-2: quantized activations; 3, 4: float32 copies of bf16 input / output.
std::byte* scratch(std::size_t bytes, int slot) {
  thread_local Buffer buffers[5];
  Buffer& b = buffers[slot];
  if (b.size() < bytes) b = Buffer(std::max(bytes, b.size() * 2));
  return b.data();
}

// Activation rows as the caller holds them: float32, or bf16 (the float part
// of a model in bf16), widened a row at a time into this thread's buffer, so
// no float32 copy of the whole input is ever made.
struct Rows {
  const void* x;
  DType dtype;
  int64_t ld;  // elements
  // LinearOptions::act_smooth (bf16 rows: the factors rounded to bf16), or nullptr.
  const float* smooth = nullptr;
  const float* row(int64_t r, int64_t k) const {
    if (dtype == DType::f32 && smooth == nullptr) return static_cast<const float*>(x) + r * ld;
    thread_local std::vector<float> wide;
    if (static_cast<int64_t>(wide.size()) < k) wide.resize(static_cast<std::size_t>(k));
    float* out = wide.data();
    if (dtype == DType::f32) {
      const float* in = static_cast<const float*>(x) + r * ld;
      for (int64_t i = 0; i < k; ++i) out[i] = in[i] * smooth[i];
      return out;
    }
    kernels::active_kernels().bf16_to_f32(static_cast<const uint16_t*>(x) + r * ld, k, out);
    if (smooth) {
      for (int64_t i = 0; i < k; ++i) out[i] = bf16_rounded(out[i] * smooth[i]);
    }
    return out;
  }
  // f rounded to the nearest bf16 (ties to even), as a float.
  static float bf16_rounded(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) <= 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);  // NaN stays NaN
    return std::bit_cast<float>(u & 0xffff0000u);
  }
};

// One row of x as the activation quantizers read it: straight from the
// caller's float32 or bf16 values where the linear table has row entries
// (the AVX-512 sets), else widened to float32 for the quant table. Both give
// the same bits (kernels/gemm.hpp).
class RowSource {
 public:
  RowSource(const Rows& x, int64_t r, int64_t k, const kernels::LinearKernels& kt, const kernels::QuantKernels& qk)
      : kt_(kt), qk_(qk),
        fused_(kt.row_absmax_bits != nullptr && kt.row_quantize_i8 != nullptr &&
               (x.smooth == nullptr || kt.row_smooth != nullptr)) {
    bf16_ = x.dtype == DType::bf16;
    if (fused_ && x.smooth) {
      // The smoothed row, float32, in this thread's buffer (L1-sized), then read as float32 rows.
      thread_local std::vector<float> smoothed;
      if (static_cast<int64_t>(smoothed.size()) < k) smoothed.resize(static_cast<std::size_t>(k));
      const void* row = bf16_ ? static_cast<const void*>(static_cast<const uint16_t*>(x.x) + r * x.ld)
                              : static_cast<const void*>(static_cast<const float*>(x.x) + r * x.ld);
      kt.row_smooth(row, bf16_, k, x.smooth, smoothed.data());
      raw_ = smoothed.data();
      bf16_ = false;
    } else if (fused_) {
      raw_ = bf16_ ? static_cast<const void*>(static_cast<const uint16_t*>(x.x) + r * x.ld)
                   : static_cast<const void*>(static_cast<const float*>(x.x) + r * x.ld);
    } else {
      wide_ = x.row(r, k);
    }
  }
  // Of the span [b, b + n).
  uint32_t absmax_bits(int64_t b, int64_t n) const {
    return fused_ ? kt_.row_absmax_bits(at(b), bf16_, n) : qk_.absmax_bits(wide_ + b, n);
  }
  // The dynamic rule: inv_scale from the span's own absmax (see gemm.hpp).
  void quantize_symmetric(int64_t b, int64_t n, float inv_scale, int8_t* q) const {
    if (fused_ && kt_.row_quantize_i8_symmetric) {
      kt_.row_quantize_i8_symmetric(at(b), bf16_, n, inv_scale, q);
    } else {
      quantize(b, n, inv_scale, 0, -127, 127, q);
    }
  }
  void quantize(int64_t b, int64_t n, float inv_scale, int32_t zp, int32_t qmin, int32_t qmax, int8_t* q) const {
    if (fused_) {
      kt_.row_quantize_i8(at(b), bf16_, n, inv_scale, zp, qmin, qmax, q);
    } else {
      qk_.quantize_i8(wide_ + b, n, inv_scale, zp, qmin, qmax, q);
    }
  }

 private:
  const void* at(int64_t b) const {
    return bf16_ ? static_cast<const void*>(static_cast<const uint16_t*>(raw_) + b)
                 : static_cast<const void*>(static_cast<const float*>(raw_) + b);
  }
  const kernels::LinearKernels& kt_;
  const kernels::QuantKernels& qk_;
  bool fused_, bf16_ = false;
  const void* raw_ = nullptr;
  const float* wide_ = nullptr;
};

struct QuantizedRows {
  int8_t* q;            // [m, kp]
  float* scales;        // [m]
  int32_t* group_sums;  // [m, groups] or nullptr
  // W8A8 kernels that read a prepared form: the conversion, its bytes per
  // element and the [m, kp] buffer, filled row by row in the same parallel
  // region (nullptr: none).
  void (*prepare)(const int8_t* q, int64_t n, int32_t zero_point, void* prepared) = nullptr;
  int prepared_bytes = 0;
  std::byte* prepared = nullptr;
};

// Quantizes rows of x to int8 codes: per row symmetric (dynamic) or with the
// static scale / zero point. Row scale NaN marks a row with NaN or Inf.
void quantize_rows(const Rows& x, int64_t m, int64_t k, int64_t kp, const LinearOptions& o, int64_t group_size,
                   int64_t groups, const kernels::LinearKernels& kt, const QuantizedRows& out) {
  const kernels::QuantKernels& qk = kernels::active_kernels();
  const bool dynamic = o.mode == LinearMode::dynamic_int8;
  const int32_t zp = dynamic ? 0 : o.act_zero_point;
  parallel_for(m, std::max<int64_t>(1, 16384 / std::max<int64_t>(k, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const RowSource xr(x, r, k, kt, qk);
      int8_t* qr = out.q + r * kp;
      const uint32_t bits = xr.absmax_bits(0, k);
      float scale;
      if (bits >= 0x7f800000u) {
        scale = std::numeric_limits<float>::quiet_NaN();
        std::memset(qr, 0, static_cast<std::size_t>(kp));
      } else if (dynamic) {
        scale = std::bit_cast<float>(bits) / 127.0f;
        if (scale == 0.0f) {
          std::memset(qr, 0, static_cast<std::size_t>(k));
        } else {
          xr.quantize_symmetric(0, k, 1.0f / scale, qr);
        }
      } else {
        scale = o.act_scale;
        xr.quantize(0, k, 1.0f / o.act_scale, zp, -128, 127, qr);
      }
      std::memset(qr + k, static_cast<int8_t>(bits >= 0x7f800000u ? 0 : zp), static_cast<std::size_t>(kp - k));
      out.scales[r] = scale;
      if (out.prepared) out.prepare(qr, kp, zp, out.prepared + r * kp * out.prepared_bytes);
      if (out.group_sums) {
        for (int64_t g = 0; g < groups; ++g) {
          int32_t s = 0;
          const int64_t end = std::min(k, (g + 1) * group_size);
          for (int64_t i = g * group_size; i < end; ++i) s += qr[i];
          out.group_sums[r * groups + g] = s;
        }
      }
    }
  });
}

// W8A8 with activation groups: quantize_rows' dynamic rule applied to each
// group of g inputs of each row on its own (the same absmax_bits and
// quantize_i8 calls, the same float arithmetic), one scale per row and group
// in scales[r * groups + j]. k is a multiple of g (and of 8), so kp == k.
void quantize_rows_grouped(const Rows& x, int64_t m, int64_t k, int64_t g, int64_t groups,
                           float* scales, int8_t* q, const kernels::LinearKernels& kt, std::byte* prepared) {
  const kernels::QuantKernels& qk = kernels::active_kernels();
  parallel_for(m, std::max<int64_t>(1, 16384 / std::max<int64_t>(k, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const RowSource xr(x, r, k, kt, qk);
      for (int64_t j = 0; j < groups; ++j) {
        int8_t* qg = q + r * k + j * g;
        const uint32_t bits = xr.absmax_bits(j * g, g);
        float scale;
        if (bits >= 0x7f800000u) {
          scale = std::numeric_limits<float>::quiet_NaN();
          std::memset(qg, 0, static_cast<std::size_t>(g));
        } else {
          scale = std::bit_cast<float>(bits) / 127.0f;
          if (scale == 0.0f) {
            std::memset(qg, 0, static_cast<std::size_t>(g));
          } else {
            xr.quantize_symmetric(j * g, g, 1.0f / scale, qg);
          }
        }
        scales[r * groups + j] = scale;
      }
      if (prepared) kt.prepare_i8(q + r * k, k, 0, prepared + r * k * kt.prepared_bytes);
    }
  });
}

// act_group_size and grouped int8 weights go together, with the same g.
void check_act_groups(const PackedLinearWeightView& w, const LinearOptions& o) {
  const int64_t ag = o.act_group_size;
  if (ag < 0) throw_invalid_argument("act_group_size must be >= 0, got " + std::to_string(ag));
  if (ag == 0) {
    if (!w.grouped_int8()) return;
    const std::string g = std::to_string(w.group_size);
    if (o.mode == LinearMode::dynamic_int8) {
      throw_invalid_argument("grouped int8 weights (group_size " + g + ") need act_group_size = " + g +
                             " in dynamic mode, got act_group_size 0");
    }
    throw_unsupported("grouped int8 weights (group_size " + g + ") run only in dynamic mode with act_group_size = " +
                      g + ", not in " + std::string(name_of(o.mode)) + " mode");
  }
  if (o.mode != LinearMode::dynamic_int8) {
    throw_invalid_argument("act_group_size " + std::to_string(ag) + " needs mode dynamic, got mode " +
                           std::string(name_of(o.mode)));
  }
  if (!w.grouped_int8()) {
    const std::string got = w.format == WeightFormat::int8   ? std::string("per-channel int8 weights (group_size 0)")
                            : w.format == WeightFormat::int4 ? "int4 weights (group_size " + std::to_string(w.group_size) + ")"
                                                             : std::string(name_of(w.format)) + " weights";
    throw_invalid_argument("act_group_size " + std::to_string(ag) + " needs grouped int8 weights with group_size " +
                           std::to_string(ag) + ", got " + got);
  }
  if (w.group_size != ag) {
    throw_invalid_argument("act_group_size " + std::to_string(ag) + " does not match the weights' group_size " +
                           std::to_string(w.group_size));
  }
  if (w.k % ag != 0) {
    throw_invalid_argument("in_features K = " + std::to_string(w.k) + " is not a multiple of act_group_size " +
                           std::to_string(ag));
  }
}

void check_options(const PackedLinearWeightView& w, const LinearOptions& o) {
  check_act_groups(w, o);
  switch (o.mode) {
    case LinearMode::weight_only:
      if (o.act_smooth) {
        throw_invalid_argument("act_smooth (SmoothQuant factors) applies to int8 activations; weight-only layers "
                               "take the smoothed input itself");
      }
      return;
    case LinearMode::dynamic_int8:
      if (w.format != WeightFormat::int8 && w.format != WeightFormat::int4) {
        throw_unsupported("dynamic int8 activations need int8 or int4 weights, not " + std::string(name_of(w.format)));
      }
      break;
    case LinearMode::static_int8:
      if (w.format != WeightFormat::int8 && w.format != WeightFormat::int4) {
        throw_unsupported("static int8 activations need int8 or int4 weights, not " + std::string(name_of(w.format)));
      }
      // The W4A8 kernels take symmetric activations: a zero point would need
      // per-group weight sums that the int4 layout does not carry.
      if (w.format == WeightFormat::int4 && o.act_zero_point != 0) {
        throw_unsupported("static activations with int4 weights must be symmetric (zero point 0), got zero point " +
                          std::to_string(o.act_zero_point) + "; use scheme='symmetric' or 8-bit weights");
      }
      if (!std::isfinite(o.act_scale) || o.act_scale <= 0.0f) {
        throw_invalid_argument("static activation scale must be finite and > 0, got " + std::to_string(o.act_scale));
      }
      if (o.act_zero_point < -128 || o.act_zero_point > 127) {
        throw_invalid_argument("static activation zero point must be in [-128, 127] (int8 codes), got " +
                               std::to_string(o.act_zero_point));
      }
      break;
  }
  if (w.k > kMaxIntegerK) {
    throw_unsupported("integer linear kernels support in_features up to " + std::to_string(kMaxIntegerK) + ", got " +
                      std::to_string(w.k) + "; use weight_only mode");
  }
}

}  // namespace

bool vnni_available() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma && f.f16c && f.avx_vnni;
}

void set_vnni_enabled(bool enabled) { g_vnni_enabled.store(enabled); }

bool avx512_vnni_available() {
#if defined(__x86_64__) || defined(__i386__)
  // AVX-VNNI is not needed: the 256-bit kernels this set uses are compiled in
  // the EVEX encoding (Cascade Lake, Ice Lake and Zen 4 have AVX-512 VNNI only).
  const CpuFeatures& f = cpu_features();
  static const bool ok = f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512vnni &&
                         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return ok;
#else
  return false;
#endif
}

void set_avx512_enabled(bool enabled) { g_avx512_enabled.store(enabled); }

bool amx_int8_available() {
  static const bool ok = [] {
    const CpuFeatures& f = cpu_features();
    return avx512_vnni_available() && f.amx_tile && f.amx_int8 && request_amx_permission();
  }();
  return ok;
}

void set_amx_enabled(bool enabled) { g_amx_enabled.store(enabled); }

void set_bf16_weight_only_enabled(bool enabled) { g_bf16_weight_only.store(enabled); }

int64_t bf16_weight_only_min_rows() {
  return g_bf16_weight_only.load() ? kernels::active_linear_kernels().bf16_min_m : 0;
}

bool amx_bf16_available() {
  const CpuFeatures& f = cpu_features();
  return amx_int8_available() && f.amx_bf16 && f.avx512_bf16;
}

namespace kernels {
const LinearKernels& active_linear_kernels() {
  if (active_isa() == Isa::scalar) return reference_linear_kernels();
  if (g_vnni_enabled.load() && g_avx512_enabled.load() && g_amx_enabled.load() && amx_int8_available()) {
    return amx_linear_kernels();
  }
  if (g_vnni_enabled.load() && g_avx512_enabled.load() && avx512_vnni_available()) return avx512_vnni_linear_kernels();
  if (g_vnni_enabled.load() && vnni_available()) return avx2_vnni_linear_kernels();
  return avx2_linear_kernels();
}
}  // namespace kernels

std::string_view linear_kernel_name() { return kernels::active_linear_kernels().name; }

std::string linear_kernel_reason() {
  const CpuFeatures& f = cpu_features();
  const std::string_view name = linear_kernel_name();
  if (&kernels::active_linear_kernels() == &kernels::reference_linear_kernels()) {
    return "scalar reference: MONOQUANT_ISA=scalar or no AVX2/FMA/F16C";
  }
  if (name == "amx") {
    return std::string("AMX int8 tiles (tdpbssd) for W8A8 from 16 rows") +
           (!amx_bf16_available()      ? "; no AMX-BF16 / AVX-512 BF16: float-activation layers on AVX-512"
            : g_bf16_weight_only.load() ? "; AMX-BF16 tiles (tdpbf16ps, bf16-rounded activations) for float-activation "
                                          "layers from 8 rows"
                                        : "; AMX-BF16 for float-activation layers disabled (MONOQUANT_BF16_WEIGHT_ONLY=0)") +
           "; 512-bit vpdpbusd (AVX-512 VNNI) for the rest";
  }
  if (name == "avx512_vnni") {
    std::string why = std::string("512-bit vpdpbusd (AVX-512 VNNI + BW + VL)") +
                      (f.avx_vnni ? "" : "; AVX-VNNI absent, not needed (its 256-bit kernels run EVEX-encoded)");
    why += !f.avx512_bf16 ? "; no AVX-512 BF16: float-activation layers on float32 FMA"
           : g_bf16_weight_only.load()
               ? "; vdpbf16ps (AVX-512 BF16, bf16-rounded activations) for float-activation layers from 8 rows"
               : "; AVX-512 BF16 for float-activation layers disabled (MONOQUANT_BF16_WEIGHT_ONLY=0)";
    if (f.amx_tile && f.amx_int8) {
      why += !g_amx_enabled.load() ? "; AMX disabled by MONOQUANT_AMX=0"
                                   : "; AMX present but the OS refused the tile state (arch_prctl)";
    } else {
      why += "; no AMX";
    }
    return why;
  }
  std::string why = name == "avx2_vnni" ? "256-bit vpdpbusd (AVX-VNNI)" : "AVX2 (vpmaddubsw / vpmaddwd, no VNNI)";
  if (!g_vnni_enabled.load()) return why + "; VNNI disabled by MONOQUANT_VNNI=0";
  if (avx512_vnni_available() && !g_avx512_enabled.load()) return why + "; AVX-512 disabled by MONOQUANT_AVX512=0";
  if (!avx512_vnni_available()) why += "; no AVX-512 VNNI";
  if (name == "avx2" && !vnni_available()) why += " and no AVX-VNNI";
  return why;
}

std::vector<std::string> available_linear_kernel_sets() {
  std::vector<std::string> sets{"scalar"};
  if (best_isa() != Isa::avx2) return sets;
  sets.push_back("avx2");
  if (vnni_available()) sets.push_back("avx2_vnni");
  if (avx512_vnni_available()) sets.push_back("avx512_vnni");
  if (amx_int8_available()) sets.push_back("amx");
  return sets;
}

void set_linear_min_chunk_macs(int64_t macs) { g_min_chunk_override.store(std::max<int64_t>(0, macs)); }

void use_linear_kernel_set(std::string_view name) {
  if (name == "best") {
    set_isa(best_isa());
    set_vnni_enabled(true), set_avx512_enabled(true), set_amx_enabled(true);
    return;
  }
  const std::vector<std::string> sets = available_linear_kernel_sets();
  if (std::find(sets.begin(), sets.end(), name) == sets.end()) {
    std::string have;
    for (const std::string& s : sets) have += (have.empty() ? "" : ", ") + s;
    throw_unsupported("linear kernel set '" + std::string(name) + "' cannot run here; available: " + have);
  }
  set_isa(name == "scalar" ? Isa::scalar : Isa::avx2);
  set_vnni_enabled(name != "avx2");
  set_avx512_enabled(name == "avx512_vnni" || name == "amx");
  set_amx_enabled(name == "amx");
}

namespace {

// Where results go: float32 rows, or bf16 rows. A kernel that writes bf16
// itself (LinearKernels::bf16_out_min_m) gets the bf16 pointer; otherwise the
// float32 result goes through this thread's scratch and is rounded after.
struct Out {
  void* y;
  DType dtype;
  int64_t ld;
};

void round_to_bf16(const float* yf, int64_t m, int64_t n, uint16_t* yb, int64_t ldy) {
  const kernels::QuantKernels& qk = kernels::active_kernels();
  parallel_for(m, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) qk.f32_to_bf16(yf + r * n, n, std::numeric_limits<float>::infinity(), yb + r * ldy);
  });
}

// Rows [r0, r1) of a call's arguments (row split; see run_gemm).
kernels::IntGemmArgs rows_of(kernels::IntGemmArgs a, int64_t r0, int64_t r1, int64_t kp, int64_t scales_per_row,
                             int64_t groups) {
  a.q += r0 * kp;
  a.m = r1 - r0;
  a.row_scales += r0 * scales_per_row;
  if (a.group_sums) a.group_sums += r0 * groups;
  if (a.y) a.y += r0 * a.ldy;
  if (a.yb) a.yb += r0 * a.ldy;
  return a;
}

kernels::FloatGemmArgs rows_of(kernels::FloatGemmArgs a, int64_t r0, int64_t r1, int64_t kb) {
  if (a.x) a.x += r0 * a.ldx;
  if (a.xb) a.xb += r0 * kb;
  a.m = r1 - r0;
  if (a.y) a.y += r0 * a.ldy;
  if (a.yb) a.yb += r0 * a.ldy;
  return a;
}

// Runs gemm(first_row, end_row, first_block, end_block) over the threads. By
// default threads take column blocks (every thread reads all rows). Tables
// with split_rows_from_m (AMX) take row ranges instead from that many rows,
// one contiguous range per thread over all blocks: each thread then reads its
// own activations once and builds every weight panel once, instead of every
// column chunk streaming all of a long activation matrix again.
template <class Gemm>
void run_gemm(const kernels::LinearKernels& kt, int64_t m, int64_t nblocks, int64_t grain, const Gemm& gemm) {
  const int threads = num_threads();
  if (kt.split_rows_from_m && m >= kt.split_rows_from_m && threads > 1) {
    const int64_t per = (m + threads - 1) / threads / 32 * 32 + 32;  // whole 32-row tile pairs
    const int64_t parts = (m + per - 1) / per;
    parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) gemm(p * per, std::min(m, (p + 1) * per), 0, nblocks);
    });
    return;
  }
  for_block_ranges(nblocks, grain, [&](int64_t b0, int64_t b1) { gemm(0, m, b0, b1); });
}

void linear_impl(const Rows& x_in, int64_t m, const PackedLinearWeightView& w, const float* bias,
                 const LinearOptions& options, const Out& out) {
  w.validate();
  check_options(w, options);
  if (m < 0 || x_in.ld < w.k || out.ld < w.n) throw_invalid_argument("linear_into: bad row count or row stride");
  if (m == 0) return;
  // SmoothQuant factors go with the rows: each is multiplied in as the row is
  // quantized (in this thread's row buffer), so no smoothed copy of x is made.
  Rows x = x_in;
  std::vector<float> smooth_b16;
  if (options.act_smooth && x.dtype == DType::bf16) {
    smooth_b16.resize(static_cast<std::size_t>(w.k));
    for (int64_t i = 0; i < w.k; ++i) smooth_b16[static_cast<std::size_t>(i)] = Rows::bf16_rounded(options.act_smooth[i]);
    x.smooth = smooth_b16.data();
  } else {
    x.smooth = options.act_smooth;
  }
  const kernels::LinearKernels& kt = kernels::active_linear_kernels();
  const int64_t nblocks = w.n_blocks(), kp = w.k_padded();
  const int64_t grain = block_grain(m, w.k, options.mode);
  const auto mu = static_cast<std::size_t>(m);
  const bool bf16_out = out.dtype == DType::bf16;
  // The float32 result: the caller's rows, or scratch when it wants bf16 and
  // the kernel cannot write bf16 itself (then rounded by finish()).
  float* y = static_cast<float*>(out.y);
  int64_t ldy = out.ld;
  uint16_t* yb = nullptr;
  const auto direct_bf16 = [&](bool kernel_can) {
    if (!bf16_out) return;
    if (kernel_can) {
      yb = static_cast<uint16_t*>(out.y);
      y = nullptr;
    } else {
      y = reinterpret_cast<float*>(scratch(mu * static_cast<std::size_t>(w.n) * sizeof(float), 4));
      ldy = w.n;
    }
  };
  const auto finish = [&] {
    if (bf16_out && y != nullptr) round_to_bf16(y, m, w.n, static_cast<uint16_t*>(out.y), out.ld);
  };
  if (options.mode == LinearMode::weight_only) {
    kernels::FloatGemmArgs a{nullptr, m, w.k, &w, bias, nullptr, 0};
    int64_t float_grain = grain;
    if (kt.bf16_min_m && m >= kt.bf16_min_m && g_bf16_weight_only.load()) {
      // bf16 tiles: the activations rounded once (bf16 input: copied as it is),
      // whole 16-row tiles of whole 32-k steps.
      const int64_t kb = (w.k + 31) / 32 * 32, rows = (m + 15) / 16 * 16;
      auto* xb = reinterpret_cast<uint16_t*>(scratch(static_cast<std::size_t>(rows * kb) * sizeof(uint16_t), 2));
      parallel_for(m, std::max<int64_t>(1, 16384 / kb), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          uint16_t* dst = xb + r * kb;
          if (x.dtype == DType::bf16) {
            std::memcpy(dst, static_cast<const uint16_t*>(x.x) + r * x.ld, static_cast<std::size_t>(w.k) * 2);
            std::memset(dst + w.k, 0, static_cast<std::size_t>(kb - w.k) * 2);
          } else {
            kt.to_bf16_row(static_cast<const float*>(x.x) + r * x.ld, w.k, kb, dst);
          }
        }
      });
      std::memset(xb + m * kb, 0, static_cast<std::size_t>((rows - m) * kb) * sizeof(uint16_t));
      a.xb = xb;
      // A block costs its weight decode (as much as 16 rows of products) plus the tile work.
      float_grain = block_grain(std::max<int64_t>(m, 16), w.k, LinearMode::weight_only);
      direct_bf16(kt.bf16_out_min_m && m >= kt.bf16_out_min_m);
    } else {
      if (x.dtype == DType::bf16) {
        auto* wide = reinterpret_cast<float*>(scratch(mu * static_cast<std::size_t>(w.k) * sizeof(float), 3));
        const kernels::QuantKernels& qk = kernels::active_kernels();
        const auto* xb16 = static_cast<const uint16_t*>(x.x);
        parallel_for(m, std::max<int64_t>(1, 16384 / w.k), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) qk.bf16_to_f32(xb16 + r * x.ld, w.k, wide + r * w.k);
        });
        a.x = wide;
      } else {
        a.x = static_cast<const float*>(x.x);
        a.ldx = x.ld;
      }
      direct_bf16(false);
    }
    a.y = y, a.yb = yb, a.ldy = ldy;
    if (a.xb) {
      const int64_t kb = (w.k + 31) / 32 * 32;
      run_gemm(kt, m, nblocks, float_grain, [&](int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
        kt.gemm_float(rows_of(a, r0, r1, kb), b0, b1);
      });
    } else {
      for_block_ranges(nblocks, float_grain, [&](int64_t b0, int64_t b1) { kt.gemm_float(a, b0, b1); });
    }
    finish();
    return;
  }
  if (options.act_group_size > 0) {
    // W8A8 with activation groups (check_options: grouped int8 weights, same g).
    const int64_t groups = w.groups();
    auto* q = reinterpret_cast<int8_t*>(scratch(mu * static_cast<std::size_t>(kp), 0));
    auto* scales = reinterpret_cast<float*>(scratch(mu * static_cast<std::size_t>(groups) * sizeof(float), 1));
    std::byte* prepared = kt.prepared_bytes && !kt.grouped_reads_codes
                              ? scratch(mu * static_cast<std::size_t>(kp * kt.prepared_bytes), 2)
                              : nullptr;
    quantize_rows_grouped(x, m, w.k, w.group_size, groups, scales, q, kt, prepared);
    direct_bf16(false);
    const kernels::IntGemmArgs a{q, m, 0, scales, prepared, nullptr, &w, bias, y, ldy};
    const auto gemm = [&](int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
      kt.gemm_i8g(r0 == 0 && r1 == m ? a : rows_of(a, r0, r1, kp, groups, groups), b0, b1);
    };
    if (prepared) {  // the prepared form is per call, not per row range
      for_block_ranges(nblocks, grain, [&](int64_t b0, int64_t b1) { gemm(0, m, b0, b1); });
    } else {
      run_gemm(kt, m, nblocks, grain, gemm);
    }
    finish();
    return;
  }
  const bool int4 = w.format == WeightFormat::int4;
  const int64_t groups = w.groups();
  auto* q = reinterpret_cast<int8_t*>(scratch(mu * static_cast<std::size_t>(kp), 0));
  auto* meta = reinterpret_cast<float*>(scratch(mu * sizeof(float) * (1 + (int4 ? groups : 0)), 1));
  QuantizedRows rows{q, meta, int4 ? reinterpret_cast<int32_t*>(meta + m) : nullptr};
  const bool symmetric = options.mode == LinearMode::dynamic_int8;
  const bool narrow = !int4 && kt.gemm_i8_narrow && w.narrow_codes();
  if (narrow) {
    rows.prepare = kt.prepare_u8;
    rows.prepared_bytes = 1;
  } else if (!int4 && kt.prepared_bytes && m <= kt.prepared_max_m && !(symmetric && kt.symmetric_reads_codes)) {
    rows.prepare = kt.prepare_i8;
    rows.prepared_bytes = kt.prepared_bytes;
  }
  if (rows.prepare) rows.prepared = scratch(mu * static_cast<std::size_t>(kp * rows.prepared_bytes), 2);
  quantize_rows(x, m, w.k, kp, options, w.group_size, groups, kt, rows);
  direct_bf16(!int4 && !narrow && kt.bf16_out_min_m && m >= kt.bf16_out_min_m);
  kernels::IntGemmArgs a{q,       m, options.mode == LinearMode::static_int8 ? options.act_zero_point : 0,
                         rows.scales, rows.prepared, rows.group_sums, &w, bias, y, ldy};
  a.yb = yb;
  a.symmetric_codes = symmetric;
  const auto gemm = [&](int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
    const kernels::IntGemmArgs part = r0 == 0 && r1 == m ? a : rows_of(a, r0, r1, kp, 1, groups);
    if (int4) {
      kt.gemm_i4(part, b0, b1);
    } else if (narrow) {
      kt.gemm_i8_narrow(part, b0, b1);
    } else {
      kt.gemm_i8(part, b0, b1);
    }
  };
  if (rows.prepared) {  // the prepared form is per call, not per row range
    for_block_ranges(nblocks, grain, [&](int64_t b0, int64_t b1) { gemm(0, m, b0, b1); });
  } else {
    run_gemm(kt, m, nblocks, grain, gemm);
  }
  finish();
}

}  // namespace

void linear_into(const float* x, int64_t m, int64_t ldx, const PackedLinearWeightView& w, const float* bias,
                 const LinearOptions& options, float* y, int64_t ldy) {
  linear_impl(Rows{x, DType::f32, ldx}, m, w, bias, options, Out{y, DType::f32, ldy});
}

void linear_into(const void* x, DType x_dtype, int64_t m, int64_t ldx, const PackedLinearWeightView& w,
                 const float* bias, const LinearOptions& options, void* y, DType y_dtype, int64_t ldy) {
  const auto is_io = [](DType t) { return t == DType::f32 || t == DType::bf16; };
  if (!is_io(x_dtype) || !is_io(y_dtype)) {
    throw_invalid_argument("linear activations must be float32 or bfloat16, got " + std::string(name_of(x_dtype)) +
                           " in and " + std::string(name_of(y_dtype)) + " out");
  }
  linear_impl(Rows{x, x_dtype, ldx}, m, w, bias, options, Out{y, y_dtype, ldy});
}

Tensor linear(const TensorView& x, const PackedLinearWeightView& w, const float* bias, const LinearOptions& options) {
  x.validate("linear input");
  if (x.dtype != DType::f32) throw_invalid_argument("linear input must be float32");
  if (x.dim() < 1 || x.shape.back() != w.k) {
    throw_invalid_argument("linear input of shape " + shape_to_string(x.shape) + " does not end in in_features " +
                           std::to_string(w.k));
  }
  int64_t m = 1, ldx = w.k;
  if (x.is_contiguous()) {
    m = x.numel() / w.k;
  } else if (x.dim() == 2 && x.strides[1] == 1 && x.strides[0] >= w.k) {
    m = x.shape[0];
    ldx = x.strides[0];
  } else {
    throw_invalid_argument("linear input must be contiguous (or 2-D with unit stride along in_features)");
  }
  Shape out_shape = x.shape;
  out_shape.back() = w.n;
  Tensor out(DType::f32, out_shape);
  linear_into(reinterpret_cast<const float*>(x.data), m, ldx, w, bias, options, out.as<float>(), w.n);
  return out;
}

Tensor conv2d(const TensorView& x, const PackedLinearWeightView& w, const float* bias, const Conv2dGeometry& g,
              const LinearOptions& options) {
  x.validate("conv2d input");
  if (x.dtype != DType::f32 || x.dim() != 4) {
    throw_invalid_argument("conv2d input must be float32 [B, C, H, W], got shape " + shape_to_string(x.shape));
  }
  if (g.kernel_h < 1 || g.kernel_w < 1 || g.stride_h < 1 || g.stride_w < 1 || g.pad_h < 0 || g.pad_w < 0 ||
      g.dilation_h < 1 || g.dilation_w < 1) {
    throw_invalid_argument("conv2d: kernel, stride and dilation must be >= 1 and padding >= 0");
  }
  const int64_t batch = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3];
  const int64_t kk = g.kernel_h * g.kernel_w;
  if (c * kk != w.k) {
    throw_invalid_argument("conv2d weight has in_features " + std::to_string(w.k) + " but C * kh * kw = " +
                           std::to_string(c * kk));
  }
  const int64_t ho = (h + 2 * g.pad_h - g.dilation_h * (g.kernel_h - 1) - 1) / g.stride_h + 1;
  const int64_t wo = (wd + 2 * g.pad_w - g.dilation_w * (g.kernel_w - 1) - 1) / g.stride_w + 1;
  if (ho <= 0 || wo <= 0) throw_invalid_argument("conv2d output would be empty for input " + shape_to_string(x.shape));
  const int64_t pixels = ho * wo, n = w.n;
  Tensor out(DType::f32, {batch, n, ho, wo});
  Tensor cols(DType::f32, {pixels, w.k});
  Tensor rows(DType::f32, {pixels, n});
  auto* col = cols.as<float>();
  auto* res = rows.as<float>();
  for (int64_t b = 0; b < batch; ++b) {
    // im2col: one row per output pixel, columns ordered (c, i, j) like the
    // torch weight reshaped to [O, C * kh * kw].
    parallel_for(pixels, std::max<int64_t>(1, 4096 / w.k), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t oy = p / wo, ox = p % wo;
        float* dst = col + p * w.k;
        for (int64_t ci = 0; ci < c; ++ci) {
          for (int64_t i = 0; i < g.kernel_h; ++i) {
            const int64_t iy = oy * g.stride_h - g.pad_h + i * g.dilation_h;
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t ix = ox * g.stride_w - g.pad_w + j * g.dilation_w;
              float v = 0.0f;
              if (iy >= 0 && iy < h && ix >= 0 && ix < wd) {
                std::memcpy(&v, x.data + (b * x.strides[0] + ci * x.strides[1] + iy * x.strides[2] + ix * x.strides[3]) * 4, 4);
              }
              *dst++ = v;
            }
          }
        }
      }
    });
    linear_into(col, pixels, w.k, w, bias, options, res, n);
    float* o = out.as<float>() + b * n * pixels;
    parallel_for(n, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t oc = n0; oc < n1; ++oc)
        for (int64_t p = 0; p < pixels; ++p) o[oc * pixels + p] = res[p * n + oc];
    });
  }
  return out;
}

}  // namespace monoquant
