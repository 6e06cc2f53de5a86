#include "monoquant/pipeline/scheme.hpp"

#include "monoquant/error.hpp"

namespace monoquant::pipeline {

int LayerScheme::bits() const {
  switch (format) {
    case WeightFormat::int8: return int8_bits;
    case WeightFormat::int4: return 4;
    default: return 16;
  }
}

std::string LayerScheme::label() const {
  if (format == WeightFormat::f16) return "FP16";
  if (format == WeightFormat::bf16) return "BF16";
  std::string s = "W" + std::to_string(bits()) + (mode == LinearMode::weight_only ? "A16" : "A8");
  if (mode == LinearMode::dynamic_int8) s += "-dynamic";
  if (mode == LinearMode::static_int8) s += "-static";
  if (group_size > 0) s += "-g" + std::to_string(group_size);
  if (!weight_symmetric) s += "-asym";
  return s;
}

std::string LayerScheme::ct_format() const {
  if (is_half()) return "";
  if (format == WeightFormat::int8 && mode != LinearMode::weight_only) return "int-quantized";
  return "pack-quantized";
}

QuantSpec LayerScheme::weight_spec() const {
  QuantSpec s;
  s.bits = bits();
  s.scheme = weight_symmetric ? Scheme::symmetric : Scheme::asymmetric;
  if (group_size > 0) {
    s.granularity = Granularity::per_group;
    s.group_size = group_size;
    s.full_range = format == WeightFormat::int4 && full_range && weight_symmetric;  // asymmetric: always [-8, 7]
  } else {
    s.granularity = Granularity::per_channel;
    s.axis = 0;
  }
  return s;
}

void LayerScheme::validate() const {
  if (format == WeightFormat::int8 && int8_bits != 8 && int8_bits != 7) {
    throw_invalid_argument("int8 weights have 8 or 7 bits, got " + std::to_string(int8_bits));
  }
  if (format == WeightFormat::int8 && int8_bits == 7 && mode == LinearMode::weight_only) {
    throw_invalid_argument("7-bit weights are for int8 activations (dynamic or static W7A8, the narrow-code kernels); "
                           "weight-only layers take bits 8 or 4");
  }
  if (is_half() && mode != LinearMode::weight_only) {
    throw_invalid_argument(std::string(name_of(format)) + " weights run with float activations only (weight-only)");
  }
  if (format == WeightFormat::int4 && (group_size <= 0 || group_size % 8 != 0)) {
    throw_invalid_argument("int4 group size must be a positive multiple of 8 (32, 64, 128, ...), got " +
                           std::to_string(group_size));
  }
  if (format == WeightFormat::int8 && group_size != 0) {
    if (mode != LinearMode::dynamic_int8) {
      throw_unsupported("int8 weights in groups run with activation groups, which are dynamic (per token): "
                        "use dynamic mode, or group size 0 (one scale per output channel)");
    }
    if (group_size < 0 || group_size % 8 != 0) {
      throw_invalid_argument("activation group size must be a positive multiple of 8 (32, 64, 128), got " +
                             std::to_string(group_size));
    }
  }
  if (format == WeightFormat::int4 && mode == LinearMode::static_int8 && !act_symmetric) {
    throw_unsupported("static activations with int4 weights must be symmetric: the W4A8 kernels take no activation "
                      "zero point; use --scheme symmetric or --bits 8");
  }
  if (!weight_symmetric) {
    if (is_half()) throw_invalid_argument("asymmetric weights are integer weights (int8 or int4)");
    if (mode != LinearMode::weight_only) {
      throw_unsupported("asymmetric weights run weight-only (W4A16 / W8A16): the int8-activation kernels take no "
                        "weight zero point");
    }
  }
}

}  // namespace monoquant::pipeline
