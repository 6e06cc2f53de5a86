#include "blas.hpp"

#include <cblas.h>

namespace monoquant {

namespace {
std::mutex& blas_mutex() {
  static std::mutex m;
  return m;
}
bool blas_is_sequential() {
  static const bool sequential = openblas_get_parallel() == 0;
  return sequential;
}
}  // namespace

void blas_use_one_thread() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

BlasLock::BlasLock() : locked_(blas_is_sequential()) {
  if (locked_) blas_mutex().lock();
}

BlasLock::~BlasLock() {
  if (locked_) blas_mutex().unlock();
}

}  // namespace monoquant
