// The AMX tile configuration block (_tile_loadconfig's 64-byte operand),
// shared by the files compiled with -mamx-tile.
#pragma once

#include <cstdint>

namespace monoquant::kernels {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

}  // namespace monoquant::kernels
