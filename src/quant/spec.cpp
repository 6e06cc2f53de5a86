#include "monoquant/quant_spec.hpp"

#include "monoquant/error.hpp"

namespace monoquant {

std::string_view name_of(Scheme scheme) { return scheme == Scheme::symmetric ? "symmetric" : "asymmetric"; }

std::string_view name_of(Granularity granularity) {
  switch (granularity) {
    case Granularity::per_tensor: return "per_tensor";
    case Granularity::per_channel: return "per_channel";
    case Granularity::per_group: return "per_group";
  }
  return "?";
}

Scheme parse_scheme(std::string_view name) {
  if (name == "symmetric" || name == "sym") return Scheme::symmetric;
  if (name == "asymmetric" || name == "asym") return Scheme::asymmetric;
  throw_invalid_argument("unknown scheme '" + std::string(name) + "'; expected 'symmetric' or 'asymmetric'");
}

Granularity parse_granularity(std::string_view name) {
  if (name == "per_tensor" || name == "tensor") return Granularity::per_tensor;
  if (name == "per_channel" || name == "channel") return Granularity::per_channel;
  if (name == "per_group" || name == "group") return Granularity::per_group;
  throw_invalid_argument("unknown granularity '" + std::string(name) +
                         "'; expected 'per_tensor', 'per_channel' or 'per_group'");
}

int QuantSpec::qmin() const {
  const int lowest = -(1 << (bits - 1));
  return scheme == Scheme::symmetric && !full_range ? lowest + 1 : lowest;
}

double QuantSpec::symmetric_levels() const { return full_range ? (qmax() - qmin()) / 2.0 : qmax(); }

int QuantSpec::qmax() const { return (1 << (bits - 1)) - 1; }

void QuantSpec::validate() const {
  if (full_range && scheme != Scheme::symmetric) throw_invalid_argument("full_range applies to symmetric quantization");
  if (full_range && bits != 4) {
    // vpmaddubsw pairs (255 x -128) x 2 overflow int16: the int8 kernels take [-127, 127].
    throw_invalid_argument("full_range ([-128, 127]) is for int4 weights only; int8 symmetric codes are [-127, 127]");
  }
  if (bits != 8 && bits != 7 && bits != 4) {
    throw_invalid_argument("integer quantization supports bits=8, 7 or 4, got bits=" + std::to_string(bits) +
                           " (use the float16/bfloat16 cast for 16 bits)");
  }
  if (granularity == Granularity::per_group && group_size < 1) {
    throw_invalid_argument("group_size must be at least 1, got " + std::to_string(group_size));
  }
}

std::string QuantSpec::to_string() const {
  std::string s = "int" + std::to_string(bits) + " " + std::string(name_of(scheme)) + " " +
                  std::string(name_of(granularity));
  if (granularity == Granularity::per_channel) s += " axis=" + std::to_string(axis);
  if (granularity == Granularity::per_group) s += " group_size=" + std::to_string(group_size);
  if (full_range) s += " full_range";
  return s;
}

}  // namespace monoquant
