// The few BLAS/LAPACK entry points the calibration algorithms use (GPTQ's
// Hessian, Cholesky factor and lazy updates). OpenBLAS provides them; Debian
// ships no LAPACKE header beside it, so the two LAPACK routines are declared
// here with the Fortran calling convention (trailing hidden string lengths).
#pragma once

#include <cstddef>

namespace monoquant {

// Called before the first BLAS call: OpenBLAS runs single-threaded, and the
// library's threads split the work.
void blas_use_one_thread();

}  // namespace monoquant

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t uplo_len);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t uplo_len);
}
