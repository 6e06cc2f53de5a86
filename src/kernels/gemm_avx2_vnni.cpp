// The 256-bit vpdpbusd kernels in the VEX encoding (AVX-VNNI). Compiled with
// -mavx2 -mfma -mf16c -mavxvnni (this file only) and chosen at run time only
// where the CPU reports AVX-VNNI. The code is gemm_vnni256_impl.hpp.
#define MONOQUANT_VNNI256_EVEX 0
#include "kernels/gemm_vnni256_impl.hpp"
