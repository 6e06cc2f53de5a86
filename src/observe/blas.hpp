// The few BLAS/LAPACK entry points the calibration algorithms use (GPTQ's
// Hessian, Cholesky factor and lazy updates). OpenBLAS provides them; Debian
// ships no LAPACKE header beside it, so the two LAPACK routines are declared
// here with the Fortran calling convention (trailing hidden string lengths).
#pragma once

#include <cstddef>
#include <mutex>

namespace monoquant {

// Called before the first BLAS call: OpenBLAS runs single-threaded, and the
// library's threads split the work.
void blas_use_one_thread();

// Held around every BLAS call made from a parallel loop. The threaded
// OpenBLAS build is safe to call from several threads at once and the lock is
// then empty; a sequential build (USE_THREAD=0, as Debian's
// libopenblas0-serial) shares one work buffer between callers unless built
// with USE_LOCKING, so there its calls take turns.
class BlasLock {
 public:
  BlasLock();
  ~BlasLock();
  BlasLock(const BlasLock&) = delete;
  BlasLock& operator=(const BlasLock&) = delete;

 private:
  bool locked_;
};

}  // namespace monoquant

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t uplo_len);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t uplo_len);
void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda, int* info,
             std::size_t uplo_len, std::size_t diag_len);
}
