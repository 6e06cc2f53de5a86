// H += X^T X for GPTQ, batch by batch (gptq.hpp). The upper triangle is cut
// into 128 x 128 tiles that the library's threads share; each tile is one
// single-threaded OpenBLAS call (ssyrk on the diagonal, sgemm above it), so
// the only thread pool at work is monoquant's.
#include <cblas.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "blas.hpp"
#include "monoquant/error.hpp"
#include "monoquant/gptq.hpp"
#include "monoquant/thread_pool.hpp"

namespace monoquant {

namespace {
constexpr int64_t kTile = 128;
}  // namespace

HessianAccumulator::HessianAccumulator(int64_t features) : k_(features) {
  if (features < 1) throw_invalid_argument("HessianAccumulator: features must be >= 1, got " + std::to_string(features));
  upper_.assign(static_cast<std::size_t>(k_ * k_), 0.0f);
}

void HessianAccumulator::add(const TensorView& x) {
  x.validate("HessianAccumulator.add");
  if (x.dtype != DType::f32 || x.dim() != 2 || x.shape[1] != k_ || !x.is_contiguous()) {
    throw_invalid_argument("HessianAccumulator.add takes contiguous float32 [rows, " + std::to_string(k_) +
                           "] inputs, got " + std::string(name_of(x.dtype)) + " " + shape_to_string(x.shape) +
                           (x.is_contiguous() ? "" : " (not contiguous)"));
  }
  const int64_t rows = x.shape[0];
  if (rows == 0) return;
  const float* X = reinterpret_cast<const float*>(x.data);
  for (int64_t i = 0; i < rows * k_; ++i) {
    if (!std::isfinite(X[i])) {
      throw_invalid_argument("calibration input has a non-finite value (NaN or Inf) at row " + std::to_string(i / k_) +
                             ", feature " + std::to_string(i % k_));
    }
  }
  blas_use_one_thread();
  const int64_t tiles = (k_ + kTile - 1) / kTile;
  std::vector<std::pair<int64_t, int64_t>> work;
  for (int64_t bi = 0; bi < tiles; ++bi)
    for (int64_t bj = bi; bj < tiles; ++bj) work.emplace_back(bi, bj);
  float* H = upper_.data();
  const int K = static_cast<int>(k_), R = static_cast<int>(rows);
  parallel_for(static_cast<int64_t>(work.size()), 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = work[t].first * kTile, j0 = work[t].second * kTile;
      const int h = static_cast<int>(std::min(kTile, k_ - i0)), w = static_cast<int>(std::min(kTile, k_ - j0));
      float* C = H + i0 * k_ + j0;
      const BlasLock lock;
      if (i0 == j0) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, h, R, 1.0f, X + i0, K, 1.0f, C, K);
      } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, w, R, 1.0f, X + i0, K, X + j0, K, 1.0f, C, K);
      }
    }
  });
  rows_ += rows;
}

Tensor HessianAccumulator::hessian() const {
  Tensor out(DType::f64, {k_, k_});
  double* h = out.as<double>();
  for (int64_t i = 0; i < k_; ++i) {
    for (int64_t j = i; j < k_; ++j) {
      const double v = upper_[static_cast<std::size_t>(i * k_ + j)];
      h[i * k_ + j] = v;
      h[j * k_ + i] = v;
    }
  }
  return out;
}

}  // namespace monoquant
