// How a tensor is quantized: bit width, scheme and granularity.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace monoquant {

enum class Scheme { symmetric, asymmetric };
enum class Granularity { per_tensor, per_channel, per_group };

std::string_view name_of(Scheme scheme);
std::string_view name_of(Granularity granularity);
Scheme parse_scheme(std::string_view name);
Granularity parse_granularity(std::string_view name);

struct QuantSpec {
  int bits = 8;                    // 8, 7 (int8 codes in [-63, 63]) or 4
  Scheme scheme = Scheme::symmetric;
  Granularity granularity = Granularity::per_channel;
  int axis = 0;                    // per_channel: the channel axis (negative counts from the end)
  int64_t group_size = 128;        // per_group: elements per group along the last axis
  // Symmetric only: compressed-tensors' full-range convention, codes in
  // [-8, 7] (int4) with scale = absmax / ((qmax - qmin) / 2) = absmax / 7.5,
  // instead of the restricted [-7, 7] with absmax / 7.
  bool full_range = false;

  // Integer range of the codes. Symmetric drops the most negative value so
  // that the range is symmetric about 0 ([-127, 127], [-7, 7]) unless
  // full_range; asymmetric uses the full signed range ([-128, 127], [-8, 7]).
  int qmin() const;
  int qmax() const;
  // What a symmetric scale divides absmax by: qmax, or (qmax - qmin) / 2 when full_range.
  double symmetric_levels() const;
  // 8 and 7 bits are stored one int8 per code; 4 bits two to a byte.
  bool int8_codes() const { return bits == 8 || bits == 7; }
  // Throws invalid_argument naming the bad field.
  void validate() const;
  std::string to_string() const;
};

}  // namespace monoquant
