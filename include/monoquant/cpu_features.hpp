// What the CPU can do, and which kernel set the library dispatches to.
#pragma once

#include <string_view>

namespace monoquant {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512vnni = false;
  bool avx_vnni = false;
  // AMX tiles as the CPU reports them (CPUID 7.0 EDX); usable only after the
  // OS grants the tile state (amx_int8_available() in linear.hpp asks).
  bool amx_tile = false;
  bool amx_int8 = false;
  bool amx_bf16 = false;
  // Native bf16 arithmetic (vdpbf16ps, CPUID 7.1 EAX): torch's bf16 runs fast.
  bool avx512_bf16 = false;
};

const CpuFeatures& cpu_features();

enum class Isa { scalar, avx2 };

std::string_view name_of(Isa isa);
// Best kernel set this CPU runs. MONOQUANT_ISA=scalar forces the reference.
Isa best_isa();
// The kernel set in use now; set_isa lets tests and benches pin one. Asking
// for avx2 on a CPU without it throws unsupported.
Isa active_isa();
void set_isa(Isa isa);

}  // namespace monoquant
