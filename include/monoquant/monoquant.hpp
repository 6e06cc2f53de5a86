// Everything public, in one include.
#pragma once

#include "monoquant/buffer.hpp"
#include "monoquant/cpu_features.hpp"
#include "monoquant/dtype.hpp"
#include "monoquant/error.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/half.hpp"
#include "monoquant/metrics.hpp"
#include "monoquant/quant_spec.hpp"
#include "monoquant/quantize.hpp"
#include "monoquant/tensor.hpp"
#include "monoquant/thread_pool.hpp"
#include "monoquant/version.hpp"
