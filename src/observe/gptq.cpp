// GPTQ's column sweep (gptq.hpp). Everything is float64 except the codes
// themselves, which are rounded with the quantizer's own float arithmetic
// (nearbyint(x * (1 / s))), so that dequantizing the result anywhere gives
// exactly the weight the sweep fed its errors from.
#include "monoquant/gptq.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#ifdef __GLIBC__
#include <malloc.h>  // malloc_trim
#endif

#include "blas.hpp"
#include "monoquant/error.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/hqq.hpp"
#include "monoquant/mse_search.hpp"
#include "monoquant/thread_pool.hpp"

namespace monoquant {

void GptqOptions::validate() const {
  if (!(dampening > 0.0) || !std::isfinite(dampening)) {
    throw_invalid_argument("GPTQ dampening must be a finite number > 0, got " + std::to_string(dampening));
  }
  if (block_size < 1) throw_invalid_argument("GPTQ block_size must be >= 1, got " + std::to_string(block_size));
  if (scale_dtype != DType::f32 && scale_dtype != DType::f16 && scale_dtype != DType::bf16) {
    throw_invalid_argument("GPTQ scale_dtype must be f32, f16 or bf16");
  }
}

namespace {

// Upper Cholesky factor U of (P H P^T + damp I)^-1, row-major, so that the
// inverse is U^T U, where P puts the columns in sweep order (perm) and a zero
// diagonal entry (an input the calibration never reached) counts as 1.
// Returns false when the matrix is not positive definite.
//
// With J the order-reversing permutation and M the lower Cholesky factor of
// J H J (= M M^T): H^-1 = (J M^-T J)(J M^-1 J), and U = J M^-1 J is upper
// triangular. One factorisation and one triangular inverse (half the work of
// factor, invert and factor again), all in one K x K buffer.
bool inverse_cholesky(const double* H, const std::vector<int64_t>& perm, int64_t K, double damp,
                      std::vector<double>& a) {
  a.resize(static_cast<std::size_t>(K * K));
  for (int64_t i = 0; i < K; ++i) {
    const int64_t pi = perm[K - 1 - i];
    for (int64_t j = 0; j < K; ++j) a[i * K + j] = H[pi * K + perm[K - 1 - j]];
    if (a[i * K + i] == 0.0) a[i * K + i] = 1.0;
    a[i * K + i] += damp;
  }
  const int n = static_cast<int>(K);
  int info = 0;
  dpotrf_("L", &n, a.data(), &n, &info, 1);  // column-major: M(i, j), i >= j, at a[i + j K]
  if (info != 0) return false;
  dtrtri_("L", "N", &n, a.data(), &n, &info, 1, 1);
  if (info != 0) return false;
  // U[i][j] = M^-1(K-1-i, K-1-j) = a[(K-1-i) + (K-1-j) K]: reverse the buffer, then transpose it.
  std::reverse(a.begin(), a.end());
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = i + 1; j < K; ++j) std::swap(a[i * K + j], a[j * K + i]);
    std::fill(a.begin() + i * K, a.begin() + i * K + i, 0.0);  // below the diagonal: never read
  }
  return true;
}

// Scales (and, asymmetric, zero points) of `rows` rows of `width` values
// (row stride `width`) by `method`, one per row, each scale rounded up to the
// stored dtype. `zero_out` may be null when the spec is symmetric.
void choose_row_qparams(const float* x, int64_t rows, int64_t width, const QuantSpec& weight_spec, ScaleMethod method,
                        DType scale_dtype, float* out, int32_t* zero_out) {
  QuantSpec spec = weight_spec;
  spec.granularity = Granularity::per_group;
  spec.group_size = width;
  const TensorView v(x, DType::f32, {rows, width});
  Tensor scales, zero_points;
  if (method == ScaleMethod::mse) choose_qparams_mse(v, spec, scales, zero_points);
  else if (method == ScaleMethod::hqq) choose_qparams_hqq(v, spec, scales, zero_points);
  else choose_qparams(v, spec, scales, zero_points);
  for (int64_t r = 0; r < rows; ++r) out[r] = round_scale_up(scales.as<float>()[r], scale_dtype);
  if (spec.scheme == Scheme::asymmetric) {
    for (int64_t r = 0; r < rows; ++r) zero_out[r] = zero_points.as<int32_t>()[r];
  }
}

inline int8_t round_code(double w, float scale, int32_t zero_point, int qmin, int qmax) {
  const float inv = 1.0f / scale;
  const float q = std::nearbyint(static_cast<float>(w) * inv) + static_cast<float>(zero_point);
  return static_cast<int8_t>(std::clamp(q, static_cast<float>(qmin), static_cast<float>(qmax)));
}

}  // namespace

double hessian_error(const TensorView& weight, const TensorView& approx, const TensorView& hessian) {
  const Tensor w = to_contiguous_f32(weight), a = to_contiguous_f32(approx);
  if (weight.dim() != 2 || weight.shape != approx.shape || hessian.dim() != 2 || hessian.dtype != DType::f64 ||
      hessian.shape[0] != weight.shape[1] || hessian.shape[1] != weight.shape[1] || !hessian.is_contiguous()) {
    throw_invalid_argument("hessian_error takes two [N, K] weights and a contiguous float64 [K, K] Hessian");
  }
  blas_use_one_thread();
  const int64_t N = weight.shape[0], K = weight.shape[1];
  const double* H = reinterpret_cast<const double*>(hessian.data);
  // A figure for reports and tests, not an input to the sweep: float32 GEMM (half the cost of float64),
  // the products summed in double.
  std::vector<float> hf(static_cast<std::size_t>(K * K));
  for (int64_t i = 0; i < K * K; ++i) hf[i] = static_cast<float>(H[i]);
  std::vector<double> sums(static_cast<std::size_t>(N), 0.0);
  parallel_for(N, 16, [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    std::vector<float> d(static_cast<std::size_t>(rows * K)), dh(static_cast<std::size_t>(rows * K));
    for (int64_t i = 0; i < rows * K; ++i) d[i] = w.as<float>()[r0 * K + i] - a.as<float>()[r0 * K + i];
    {
      const BlasLock lock;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(K),
                  static_cast<int>(K), 1.0f, d.data(), static_cast<int>(K), hf.data(), static_cast<int>(K), 0.0f,
                  dh.data(), static_cast<int>(K));
    }
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(d[r * K + k]) * dh[r * K + k];
      sums[r0 + r] = s;
    }
  });
  return std::accumulate(sums.begin(), sums.end(), 0.0);
}

namespace {

GptqResult sweep(const TensorView& weight, const TensorView& hessian, const QuantSpec& spec, const GptqOptions& options) {
  options.validate();
  spec.validate();
  weight.validate("GPTQ weight");
  hessian.validate("GPTQ Hessian");
  if (weight.dim() != 2 || weight.numel() == 0) {
    throw_invalid_argument("GPTQ takes a non-empty 2-D [out, in] weight, got " + shape_to_string(weight.shape));
  }
  const int64_t N = weight.shape[0], K = weight.shape[1];
  if (hessian.dtype != DType::f64 || hessian.dim() != 2 || hessian.shape[0] != K || hessian.shape[1] != K ||
      !hessian.is_contiguous()) {
    throw_invalid_argument("GPTQ Hessian must be contiguous float64 [" + std::to_string(K) + ", " +
                           std::to_string(K) + "], got " + std::string(name_of(hessian.dtype)) + " " +
                           shape_to_string(hessian.shape));
  }
  const bool asym = spec.scheme == Scheme::asymmetric;
  const bool grouped = spec.granularity == Granularity::per_group;
  if (!grouped && !(spec.granularity == Granularity::per_channel && spec.axis == 0)) {
    throw_invalid_argument("GPTQ quantizes per output channel (axis 0) or per group along K");
  }
  const int64_t G = grouped ? spec.group_size : K;
  if (K % G != 0) {
    throw_invalid_argument("GPTQ: K = " + std::to_string(K) + " is not a multiple of group_size " + std::to_string(G));
  }
  const Tensor wf = to_contiguous_f32(weight);
  const float* W0 = wf.as<float>();
  for (int64_t i = 0; i < N * K; ++i) {
    if (!std::isfinite(W0[i])) {
      throw_invalid_argument("weight has a non-finite value (NaN or Inf) at flat index " + std::to_string(i));
    }
  }
  const double* Hin = reinterpret_cast<const double*>(hessian.data);
  for (int64_t i = 0; i < K * K; ++i) {
    if (!std::isfinite(Hin[i])) throw_invalid_argument("GPTQ Hessian has a non-finite value at flat index " + std::to_string(i));
  }
  blas_use_one_thread();

  // Inputs the calibration never reached (H_ii = 0) count as H_ii = 1:
  // their columns are rounded to nearest and pass no error on. (The reference
  // implementation also zeroes their weights; that would change the model on
  // inputs the calibration data did not cover, so the weights stay.)
  std::vector<double> diag(static_cast<std::size_t>(K));
  double mean_diag = 0.0;
  for (int64_t i = 0; i < K; ++i) {
    diag[i] = Hin[i * K + i] == 0.0 ? 1.0 : Hin[i * K + i];
    mean_diag += diag[i];
  }
  mean_diag /= static_cast<double>(K);
  std::vector<int64_t> perm(static_cast<std::size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  if (options.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return diag[a] > diag[b]; });
  }
  std::vector<double> U;
  double damp = options.dampening;
  bool ok = false;
  for (int attempt = 0; attempt < 3 && !ok; ++attempt, damp *= 10.0) ok = inverse_cholesky(Hin, perm, K, damp * mean_diag, U);
  if (!ok) {
    throw_invalid_argument("GPTQ: the Hessian stays indefinite with dampening up to " +
                           std::to_string(options.dampening * 100.0) + " x mean(diag H); check the calibration data");
  }
  damp /= 10.0;

  const int qmin = spec.qmin(), qmax = spec.qmax();
  const int64_t groups = K / G;
  Tensor scales(DType::f32, grouped ? Shape{N, groups} : Shape{N});
  float* S = scales.as<float>();
  // Zero points (asymmetric only) beside the scales; all 0 when symmetric.
  std::vector<int32_t> zeros(static_cast<std::size_t>(grouped ? N * groups : N), 0);
  int32_t* Z = zeros.data();
  const bool static_groups = grouped && options.static_groups;
  if (!grouped) choose_row_qparams(W0, N, K, spec, options.scale_method, options.scale_dtype, S, Z);
  if (static_groups) {
    std::vector<float> slab(static_cast<std::size_t>(N * G)), col(static_cast<std::size_t>(N));
    std::vector<int32_t> colz(static_cast<std::size_t>(N));
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t r = 0; r < N; ++r) std::copy(W0 + r * K + g * G, W0 + r * K + (g + 1) * G, slab.data() + r * G);
      choose_row_qparams(slab.data(), N, G, spec, options.scale_method, options.scale_dtype, col.data(), colz.data());
      for (int64_t r = 0; r < N; ++r) {
        S[r * groups + g] = col[r];
        Z[r * groups + g] = colz[r];
      }
    }
  }
  std::vector<int8_t> codes(static_cast<std::size_t>(N * K));  // permuted column order
  // The block holds whole groups, so that a group's columns are all up to date when its scale is chosen.
  const int64_t B = grouped && !static_groups ? std::max<int64_t>(1, (options.block_size + G - 1) / G) * G : options.block_size;

  parallel_for(N, 8, [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    std::vector<double> w(static_cast<std::size_t>(rows * K));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < K; ++c) w[r * K + c] = W0[(r0 + r) * K + perm[c]];
    std::vector<double> err(static_cast<std::size_t>(rows * B));
    std::vector<float> slab, slab_scales(static_cast<std::size_t>(rows));
    std::vector<int32_t> slab_zeros(static_cast<std::size_t>(rows));
    for (int64_t i1 = 0; i1 < K; i1 += B) {
      const int64_t i2 = std::min(K, i1 + B), count = i2 - i1;
      for (int64_t c = i1; c < i2; ++c) {
        if (grouped && !static_groups && c % G == 0) {
          slab.resize(static_cast<std::size_t>(rows * G));
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < G; ++j) slab[r * G + j] = static_cast<float>(w[r * K + c + j]);
          choose_row_qparams(slab.data(), rows, G, spec, options.scale_method, options.scale_dtype,
                             slab_scales.data(), slab_zeros.data());
          for (int64_t r = 0; r < rows; ++r) {
            S[(r0 + r) * groups + c / G] = slab_scales[r];
            if (asym) Z[(r0 + r) * groups + c / G] = slab_zeros[r];
          }
        }
        const double d = U[c * K + c];
        const double* urow = U.data() + c * K;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t at = grouped ? (r0 + r) * groups + (static_groups ? perm[c] : c) / G : r0 + r;
          const float s = S[at];
          const int32_t z = Z[at];
          double* wr = w.data() + r * K;
          const int8_t q = round_code(wr[c], s, z, qmin, qmax);
          codes[(r0 + r) * K + c] = q;
          const double e = (wr[c] - static_cast<double>(static_cast<float>(q - z) * s)) / d;
          err[r * B + (c - i1)] = e;
          for (int64_t j = c + 1; j < i2; ++j) wr[j] -= e * urow[j];
        }
      }
      if (i2 < K) {  // the lazy update: later columns get the whole block's errors at once
        const BlasLock lock;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(K - i2),
                    static_cast<int>(count), -1.0, err.data(), static_cast<int>(B), U.data() + i1 * K + i2,
                    static_cast<int>(K), 1.0, w.data() + i2, static_cast<int>(K));
      }
    }
  });

  GptqResult out;
  out.dampening = damp;
  QuantizedTensor& q = out.weight;
  q.spec = spec;
  q.shape = {N, K};
  q.scales = std::move(scales);
  if (asym) {
    q.zero_points = Tensor(DType::i32, grouped ? Shape{N, groups} : Shape{N});
    std::copy(zeros.begin(), zeros.end(), q.zero_points.as<int32_t>());
  } else {
    q.zero_points = Tensor(DType::i32, {0});
  }
  std::vector<int8_t> orig(static_cast<std::size_t>(N * K));  // back to the original column order
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = 0; c < K; ++c) orig[r * K + perm[c]] = codes[r * K + c];
  if (spec.int8_codes()) {
    q.codes = Tensor(DType::i8, {N, K});
    std::copy(orig.begin(), orig.end(), q.codes.as<int8_t>());
  } else {
    q.codes = Tensor(DType::int4_packed, {N, K});
    auto* p = q.codes.as<uint8_t>();
    const int64_t row_bytes = (K + 1) / 2;
    for (int64_t r = 0; r < N; ++r) {
      for (int64_t b = 0; b < row_bytes; ++b) {
        const int lo = orig[r * K + 2 * b] + 8, hi = 2 * b + 1 < K ? orig[r * K + 2 * b + 1] + 8 : 8;
        p[r * row_bytes + b] = static_cast<uint8_t>(lo | (hi << 4));
      }
    }
  }
  if (options.act_order && grouped && !static_groups) {
    out.g_idx.resize(static_cast<std::size_t>(K));
    for (int64_t c = 0; c < K; ++c) out.g_idx[perm[c]] = static_cast<int32_t>(c / G);
  }

  // The output error, for the report: GPTQ's result against round-to-nearest.
  Tensor deq(DType::f32, {N, K});
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t c = 0; c < K; ++c) {
      const int64_t g = grouped ? (out.g_idx.empty() ? c / G : out.g_idx[c]) : 0;
      const int64_t at = grouped ? r * groups + g : r;
      deq.as<float>()[r * K + c] = static_cast<float>(orig[r * K + c] - Z[at]) * q.scales.as<float>()[at];
    }
  }
  out.error = hessian_error(wf.view(), deq.view(), hessian);
  const QuantizedTensor rtn = quantize_weight(wf.view(), spec, options.scale_method, options.scale_dtype);
  out.rtn_error = hessian_error(wf.view(), dequantize(rtn).view(), hessian);
  return out;
}

}  // namespace

GptqResult gptq_quantize(const TensorView& weight, const TensorView& hessian, const QuantSpec& spec,
                         const GptqOptions& options) {
  GptqResult out = sweep(weight, hessian, spec, options);
#ifdef __GLIBC__
  // The sweep's K x K scratch (19 MB each at K = 1536) is freed by now, but
  // glibc raises its mmap threshold after the first such free, so later ones
  // come from the heap and stay resident: a model's worth of layers ratcheted
  // MiniLM's peak RSS up by 46 MiB (714 -> 668 MiB with this trim). Returning
  // the free heap to the OS costs about 1.4 ms a layer in a torch process
  // (measured), about 1% of the whole GPTQ of MiniLM.
  malloc_trim(0);
#endif
  return out;
}

}  // namespace monoquant
