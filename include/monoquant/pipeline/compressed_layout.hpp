// What one plan entry becomes on disk (docs/FORMAT.md, "Tensors per layer"):
// a kept tensor is itself, bit for bit; a quantized weight becomes its
// compressed-tensors tensors (weight / weight_packed, weight_scale,
// weight_shape, weight_zero_point, input_scale, input_zero_point), computed with the one weight
// rule of weight_quantizer.hpp.
#pragma once

#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

#include "monoquant/buffer.hpp"
#include "monoquant/io/checkpoint.hpp"
#include "monoquant/io/safetensors.hpp"
#include "monoquant/pipeline/plan.hpp"

namespace monoquant::pipeline {

// Scales are stored in the weight's dtype when it is float16/bfloat16, else float32.
io::FileDType scale_dtype_for(io::FileDType weight_dtype);

// Names, dtypes and shapes, known without quantizing anything.
std::vector<io::TensorSpec> output_specs(const PlanEntry& entry);

struct EntryOutputs {
  std::vector<Tensor> owned;                                // memory made here
  std::vector<std::pair<const void*, std::size_t>> bytes;   // per output spec, in output_specs order
  double sqnr_db = 0;          // weight SQNR (quantized entries)
  uint64_t weight_bytes = 0;   // codes + scales as stored (quantized entries), else the tensor's bytes
};

// The compressed-tensors tensors of one quantized layer from its canonical
// codes (int8 [N, K], or int4 packed rows uint8 [N, ceil(K/2)]) and float32
// scales ([N, 1] or [N, K/g], already exactly representable in the scale
// dtype), in output_specs order, with int32 zero points [N, groups] for
// asymmetric weights (else an empty view). Also what the Python modules save.
std::vector<Tensor> compressed_tensors_from_codes(const PlanEntry& entry, const TensorView& codes, const TensorView& scales,
                                                  const TensorView& zero_points = {});

// Zero points int32 [n, groups] in compressed-tensors' packing,
// pack_to_int32(zp, bits, packed_dim=0): 32 / bits consecutive rows per int32
// word, row i of a word in bits [bits * i, bits * i + bits), each + 2^(bits-1);
// [ceil(n / (32 / bits)), groups].
Tensor pack_zero_points(const int32_t* zero_points, int64_t n, int64_t groups, int bits);

// Where an entry's bytes go as they are produced: (output index in
// output_specs order, byte offset within that tensor, data, size).
using PartSink = std::function<void(std::size_t, uint64_t, const void*, std::size_t)>;

struct EntryStats {
  double sqnr_db = 0;         // weight SQNR (quantized entries)
  uint64_t weight_bytes = 0;  // codes + scales as stored (quantized entries), else the tensor's bytes
};

// Memory reused from one tensor to the next (the float32 copy of a 16-bit
// weight): fresh pages cost a fault and a clear each, which on a checkpoint
// adds up to as much time as quantizing.
struct Scratch {
  Buffer floats;  // a block of rows as float32
  Buffer bytes;   // a block of codes in their on-disk form
};

// Produces the entry's outputs a block of rows at a time (a few MiB), so that
// memory stays at one block whatever the tensor's size; every output byte is
// handed to `sink` exactly once. Codes are those of quantizing the whole
// tensor at once (rows are independent for per-channel and per-group scales).
EntryStats stream_outputs(const PlanEntry& entry, const io::TensorRecord& input, Scratch& scratch, const PartSink& sink);

// Quantizes (or passes through) the entry's tensor. `input` must be the
// record the entry was planned from. Throws invalid_argument naming the
// tensor on NaN/Inf weights or a scale that does not fit its dtype.
EntryOutputs produce_outputs(const PlanEntry& entry, const io::TensorRecord& input, Scratch& scratch);
EntryOutputs produce_outputs(const PlanEntry& entry, const io::TensorRecord& input);

}  // namespace monoquant::pipeline
