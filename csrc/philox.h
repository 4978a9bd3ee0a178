// Philox4x32-10 counter-based random numbers and the replay memory's draws, for host and device.
//
// Bit-identical to lrwa_fast/replay/buffer/philox.py: same key split (low word first), same counter
// layout (c0, c1 = low/high words of a 64-bit index, c2, c3 = stream) and the same multiply-shift
// mapping of a 32-bit draw onto [0, bound).
#pragma once

#include <stdint.h>

#ifdef __CUDACC__
#define LRWA_HD __host__ __device__ __forceinline__
#else
#define LRWA_HD inline
#endif

namespace lrwa {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

constexpr uint32_t kStreamReservoir = 1;
constexpr uint32_t kStreamSample = 2;
constexpr uint32_t kStreamPermute = 3;
constexpr uint32_t kStreamEntry = 4;

// First output word of Philox4x32-10 for counter (c0, c1, c2, c3) and 64-bit key.
LRWA_HD uint32_t philox_u32(uint64_t key, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3) {
  uint32_t k0 = static_cast<uint32_t>(key);
  uint32_t k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    c0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    c1 = static_cast<uint32_t>(p1);
    c2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c3 = static_cast<uint32_t>(p0);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return c0;
}

// Philox draw for a 64-bit index (split into the c0, c1 words) in stream (c2, c3).
LRWA_HD uint32_t philox_at(uint64_t key, int64_t index, uint32_t c2, uint32_t c3) {
  const uint64_t i = static_cast<uint64_t>(index);
  return philox_u32(key, static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), c2, c3);
}

// Integer in [0, bound) from a uint32 draw by multiply-shift (bound <= 2^32).
LRWA_HD int64_t below(uint32_t draw, uint64_t bound) {
  return static_cast<int64_t>((static_cast<uint64_t>(draw) * bound) >> 32);
}

// Slot that item number `item` goes to under fifo or reservoir, or -1 when reservoir drops it.
LRWA_HD int64_t slot_for_item(bool reservoir, uint64_t key, int64_t item, int64_t capacity) {
  if (!reservoir) return item % capacity;
  if (item < capacity) return item;
  const int64_t j = below(philox_at(key, item, 0, kStreamReservoir), static_cast<uint64_t>(item) + 1);
  return j < capacity ? j : -1;
}

// Slot of draw number `draw` when sampling with replacement from `fill` slots.
LRWA_HD int64_t draw_with_replacement(uint64_t key, int64_t draw, int64_t fill) {
  return below(philox_at(key, draw, 0, kStreamSample), static_cast<uint64_t>(fill));
}

// First slot of whole-entry draw number `call`: one of the fill / entry full entries of `entry`
// consecutive slots, chosen uniformly.
LRWA_HD int64_t entry_start(uint64_t key, int64_t call, int64_t fill, int64_t entry) {
  return below(philox_at(key, call, 0, kStreamEntry), static_cast<uint64_t>(fill / entry)) * entry;
}

// Sort key of `slot` in call number `call` without replacement: ((philox >> 1) << 32) | slot.
LRWA_HD uint64_t permutation_key(uint64_t key, int64_t slot, int64_t call) {
  const uint32_t draw = philox_u32(key, static_cast<uint32_t>(slot), 0,
                                   static_cast<uint32_t>(call), kStreamPermute);
  return (static_cast<uint64_t>(draw >> 1) << 32) | static_cast<uint64_t>(slot);
}

// Number of significant bits of a permutation key (the top bit is always zero).
constexpr int kPermutationKeyBits = 63;

}  // namespace lrwa
