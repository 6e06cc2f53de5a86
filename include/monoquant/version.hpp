#pragma once

namespace monoquant {
inline constexpr const char* version = MONOQUANT_VERSION;
}  // namespace monoquant
