#include "quant/kernels.hpp"

namespace monoquant::kernels {

const QuantKernels& kernels_for(Isa isa) { return isa == Isa::avx2 ? avx2_kernels() : reference_kernels(); }

const QuantKernels& active_kernels() { return kernels_for(active_isa()); }

}  // namespace monoquant::kernels
