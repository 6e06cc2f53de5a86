// HQQ-style scales (hqq.hpp). Cells are contiguous runs of the row-major
// input: a group of a row, a whole leading-axis channel, or the tensor.
#include "monoquant/hqq.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "monoquant/error.hpp"
#include "monoquant/quantize.hpp"
#include "monoquant/thread_pool.hpp"

namespace monoquant {

void HqqOptions::validate() const {
  if (!(lp_norm > 0.0 && lp_norm <= 2.0)) throw_invalid_argument("HQQ lp_norm must be in (0, 2], got " + std::to_string(lp_norm));
  if (!(beta > 0.0) || !std::isfinite(beta)) throw_invalid_argument("HQQ beta must be a finite number > 0");
  if (!(kappa > 1.0) || !std::isfinite(kappa)) throw_invalid_argument("HQQ kappa must be a finite number > 1");
  if (iterations < 1) throw_invalid_argument("HQQ iterations must be >= 1, got " + std::to_string(iterations));
}

namespace {

inline float code_of(float x, float inv, int32_t zp, float qlo, float qhi) {
  return std::clamp(std::nearbyint(x * inv) + static_cast<float>(zp), qlo, qhi);
}

inline double shrink(double v, double p, double beta) {
  const double a = std::fabs(v);
  if (a == 0.0) return 0.0;
  const double t = a - std::pow(a, p - 1.0) / beta;
  return t > 0.0 ? std::copysign(t, v) : 0.0;
}

struct Params {
  float scale;
  int32_t zero_point;
};

Params optimise_cell(const float* x, int64_t n, Params start, const QuantSpec& spec, const HqqOptions& o) {
  const float qlo = static_cast<float>(spec.qmin()), qhi = static_cast<float>(spec.qmax());
  const bool asym = spec.scheme == Scheme::asymmetric;
  Params best = start, cur = start;
  double best_err = hqq_lp_error(x, n, start.scale, start.zero_point, spec, o.lp_norm);
  double beta = o.beta;
  int stalled = 0;
  for (int it = 0; it < o.iterations; ++it) {
    const float inv = 1.0f / cur.scale;
    double num = 0.0, den = 0.0, zsum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float q = code_of(x[i], inv, cur.zero_point, qlo, qhi);
      const double qc = static_cast<double>(q) - cur.zero_point;
      // The shrink works in units of the quantization step, so that beta means the same for weights of any
      // magnitude: errors under about half a step are the dense part, larger ones (clipped outliers) sparse.
      const double e = cur.scale * shrink((static_cast<double>(x[i]) - qc * cur.scale) / cur.scale, o.lp_norm, beta);
      const double t = static_cast<double>(x[i]) - e;
      num += t * qc;
      den += qc * qc;
      zsum += static_cast<double>(q) - t / cur.scale;
    }
    beta *= o.kappa;
    Params next = cur;
    if (asym) {
      next.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(zsum / static_cast<double>(n)),
                                                        static_cast<double>(qlo), static_cast<double>(qhi)));
    } else {
      if (den == 0.0 || !(num > 0.0)) break;
      next.scale = static_cast<float>(num / den);
      if (!(next.scale > 0.0f) || !std::isfinite(next.scale)) break;
    }
    const double err = hqq_lp_error(x, n, next.scale, next.zero_point, spec, o.lp_norm);
    if (err < best_err) {
      best = next;
      best_err = err;
      stalled = 0;
    } else if (++stalled == 3) {
      break;  // HQQ's early stop, with a little patience: beta keeps growing, and the split with it
    }
    if (next.scale == cur.scale && next.zero_point == cur.zero_point) break;  // a fixed point
    cur = next;
  }
  return best;
}

}  // namespace

double hqq_lp_error(const float* x, int64_t n, float scale, int32_t zero_point, const QuantSpec& spec, double p) {
  const float qlo = static_cast<float>(spec.qmin()), qhi = static_cast<float>(spec.qmax());
  const float inv = 1.0f / scale;
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float q = code_of(x[i], inv, zero_point, qlo, qhi);
    const float deq = (q - static_cast<float>(zero_point)) * scale;  // dequantize's arithmetic
    total += std::pow(std::fabs(static_cast<double>(x[i]) - static_cast<double>(deq)), p);
  }
  return total;
}

void choose_qparams_hqq(const TensorView& input, const QuantSpec& spec, Tensor& scales, Tensor& zero_points,
                        const HqqOptions& options) {
  spec.validate();
  options.validate();
  input.validate("choose_qparams_hqq");
  if (spec.granularity == Granularity::per_channel && spec.axis != 0 && spec.axis != -input.dim()) {
    throw_invalid_argument("HQQ scales support per_channel along axis 0, per_group and per_tensor; got axis " +
                           std::to_string(spec.axis));
  }
  // The starting point, and the shapes: exactly choose_qparams (which also rejects NaN/Inf).
  choose_qparams(input, spec, scales, zero_points);
  const Tensor xs = to_contiguous_f32(input);
  const float* x = xs.as<float>();
  const int64_t n = input.numel();
  const int64_t cells = scales.numel();
  if (cells == 0 || n == 0) return;
  const int64_t len = n / cells;  // per_group: K % group == 0 is not required, see below
  const bool asym = spec.scheme == Scheme::asymmetric;
  float* s = scales.as<float>();
  int32_t* z = asym ? zero_points.as<int32_t>() : nullptr;
  const int64_t K = input.dim() ? input.shape.back() : 1;
  const int64_t gpr = spec.granularity == Granularity::per_group ? (K + spec.group_size - 1) / spec.group_size : 1;
  parallel_for(cells, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* begin = x;
      int64_t count = n;
      if (spec.granularity == Granularity::per_group) {
        const int64_t r = c / gpr, j = c % gpr, start = j * spec.group_size;
        begin = x + r * K + start;
        count = std::min(spec.group_size, K - start);
      } else if (spec.granularity == Granularity::per_channel) {
        begin = x + c * len;
        count = len;
      }
      if (!(s[c] > 0.0f)) continue;
      const Params p = optimise_cell(begin, count, {s[c], z ? z[c] : 0}, spec, options);
      s[c] = p.scale;
      if (z) z[c] = p.zero_point;
    }
  });
}

}  // namespace monoquant
