#include "monoquant/weight_quantizer.hpp"

#include <string>

#include "monoquant/error.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/hqq.hpp"
#include "monoquant/mse_search.hpp"

namespace monoquant {

std::string_view name_of(ScaleMethod method) {
  switch (method) {
    case ScaleMethod::mse: return "mse";
    case ScaleMethod::hqq: return "hqq";
    case ScaleMethod::absmax: break;
  }
  return "absmax";
}

ScaleMethod parse_scale_method(std::string_view name) {
  if (name == "absmax" || name == "minmax") return ScaleMethod::absmax;
  if (name == "mse") return ScaleMethod::mse;
  if (name == "hqq") return ScaleMethod::hqq;
  throw_invalid_argument("unknown scale method '" + std::string(name) + "'; expected absmax, mse or hqq");
}

QuantizedTensor quantize_weight(const TensorView& weight, const QuantSpec& spec, ScaleMethod method, DType scale_dtype) {
  Tensor scales, zero_points;
  if (method == ScaleMethod::mse) choose_qparams_mse(weight, spec, scales, zero_points);
  else if (method == ScaleMethod::hqq) choose_qparams_hqq(weight, spec, scales, zero_points);
  else choose_qparams(weight, spec, scales, zero_points);
  auto* s = scales.as<float>();
  for (int64_t i = 0; i < scales.numel(); ++i) s[i] = round_scale_up(s[i], scale_dtype);
  return quantize_with_qparams(weight, spec, std::move(scales), std::move(zero_points));
}

}  // namespace monoquant
