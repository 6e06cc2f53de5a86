// The 256-bit vpdpbusd kernels in the EVEX encoding (AVX-512 VNNI + VL), for
// the AVX-512 set on CPUs without AVX-VNNI (Cascade Lake, Ice Lake, Zen 4).
// Compiled with the AVX-512 set's flags (this file and gemm_avx512_vnni.cpp
// only). The code is gemm_vnni256_impl.hpp.
#define MONOQUANT_VNNI256_EVEX 1
#include "kernels/gemm_vnni256_impl.hpp"
