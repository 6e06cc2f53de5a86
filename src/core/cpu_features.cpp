#include "monoquant/cpu_features.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

#include "monoquant/error.hpp"

namespace monoquant {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
#if defined(__GNUC__) && __GNUC__ >= 11
  f.avx_vnni = __builtin_cpu_supports("avxvnni");
#endif
  // GCC has no "f16c" name for __builtin_cpu_supports; read CPUID leaf 1 ECX bit 29.
  unsigned eax, ebx, ecx, edx;
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
  f.f16c = (ecx >> 29) & 1u;
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
  f.amx_bf16 = (edx >> 22) & 1u;
  f.amx_tile = (edx >> 24) & 1u;
  f.amx_int8 = (edx >> 25) & 1u;
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(1));
  f.avx512_bf16 = (eax >> 5) & 1u;
#endif
  return f;
}

Isa detect_best() {
  if (const char* env = std::getenv("MONOQUANT_ISA")) {
    if (std::string(env) == "scalar") return Isa::scalar;
  }
  const CpuFeatures& f = cpu_features();
  return (f.avx2 && f.fma && f.f16c) ? Isa::avx2 : Isa::scalar;
}

std::atomic<int> g_active{-1};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string_view name_of(Isa isa) { return isa == Isa::avx2 ? "avx2" : "scalar"; }

Isa best_isa() {
  static const Isa best = detect_best();
  return best;
}

Isa active_isa() {
  const int v = g_active.load();
  return v < 0 ? best_isa() : static_cast<Isa>(v);
}

void set_isa(Isa isa) {
  const CpuFeatures& f = cpu_features();
  if (isa == Isa::avx2 && !(f.avx2 && f.fma && f.f16c)) {
    throw_unsupported("this CPU lacks AVX2/FMA/F16C; only the scalar kernels can run");
  }
  g_active.store(static_cast<int>(isa));
}

}  // namespace monoquant
