// CPU replay memory: slot assignment, counter-based sampling and a parallel row copy that
// converts dtypes on the fly (memcpy when source and destination dtypes agree).
#include "replay_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/TypeCast.h>
#include <c10/util/accumulate.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "philox.h"

namespace lrwa {
namespace {

// A parallel region wakes threads: microseconds on an idle machine, up to a scheduler tick on a
// loaded one. Work is split only in pieces that take far longer (~100 us or more per thread).
constexpr int64_t kCopyGrainBytes = 2 << 20;  // least bytes (read + written) a thread copies
constexpr int64_t kDrawGrain = 32 * 1024;     // least Philox draws a thread computes

// Source row `src` goes to destination row `dst`.
struct RowMove {
  int64_t src;
  int64_t dst;
};

// Moves of a batch insert (batch row -> slot); the latest row wins a slot, as one by one would.
std::vector<RowMove> assign_slots(bool reservoir, int64_t seen, int64_t batch, int64_t capacity,
                                  uint64_t seed) {
  std::vector<RowMove> moves;
  moves.reserve(std::min(batch, capacity));
  for (int64_t row = 0; row < batch; ++row) {
    const int64_t slot = slot_for_item(reservoir, seed, seen + row, capacity);
    if (slot >= 0) moves.push_back({row, slot});
  }
  std::sort(moves.begin(), moves.end(), [](const RowMove& a, const RowMove& b) {
    return a.dst != b.dst ? a.dst < b.dst : a.src > b.src;
  });
  const auto same_slot = [](const RowMove& a, const RowMove& b) { return a.dst == b.dst; };
  moves.erase(std::unique(moves.begin(), moves.end(), same_slot), moves.end());
  return moves;
}

template <typename In, typename Out>
void copy_row(const In* src, Out* dst, int64_t elems) {
  if constexpr (std::is_same_v<In, Out>) {
    std::memcpy(dst, src, static_cast<size_t>(elems) * sizeof(In));
  } else {
    for (int64_t k = 0; k < elems; ++k) dst[k] = c10::convert<Out>(src[k]);
  }
}

template <typename In, typename Out>
void copy_rows_typed(const In* src, Out* dst, int64_t row_elems, const std::vector<RowMove>& moves) {
  const int64_t row_bytes = std::max<int64_t>(1, row_elems * static_cast<int64_t>(sizeof(In) + sizeof(Out)));
  const int64_t grain = std::max<int64_t>(1, kCopyGrainBytes / row_bytes);
  at::parallel_for(0, static_cast<int64_t>(moves.size()), grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      copy_row(src + moves[i].src * row_elems, dst + moves[i].dst * row_elems, row_elems);
    }
  });
}

// Copies row m.src of `src` to row m.dst of `dst` for every move (both contiguous).
void copy_rows(const at::Tensor& src, const at::Tensor& dst, const std::vector<RowMove>& moves) {
  const int64_t row_elems = c10::multiply_integers(src.sizes().slice(1));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "lrwa_copy_rows", [&] {
    using In = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dst.scalar_type(), "lrwa_copy_rows", [&] {
      copy_rows_typed<In, scalar_t>(src.const_data_ptr<In>(), dst.mutable_data_ptr<scalar_t>(), row_elems,
                                    moves);
    });
  });
}

// The n smallest permutation keys of slots [0, fill) in ascending order, as slot numbers.
void smallest_keys(int64_t* slots, int64_t n, int64_t fill, uint64_t seed, int64_t call) {
  std::vector<uint64_t> keys(static_cast<size_t>(fill));
  at::parallel_for(0, fill, kDrawGrain, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) keys[s] = permutation_key(seed, s, call);
  });
  if (n < fill) std::nth_element(keys.begin(), keys.begin() + n, keys.end());
  std::sort(keys.begin(), keys.begin() + n);
  for (int64_t i = 0; i < n; ++i) slots[i] = static_cast<int64_t>(keys[i] & 0xFFFFFFFFu);
}

void draw_slots(int64_t* slots, int64_t n, int64_t fill, bool replace, uint64_t seed, int64_t counter,
                int64_t entry) {
  if (entry > 0) {
    const int64_t start = entry_start(seed, counter, fill, entry);
    for (int64_t i = 0; i < n; ++i) slots[i] = start + i;
    return;
  }
  if (!replace) return smallest_keys(slots, n, fill, seed, counter);
  at::parallel_for(0, n, kDrawGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) slots[i] = draw_with_replacement(seed, counter + i, fill);
  });
}

}  // namespace

void insert_cpu(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& inserted_at,
                const at::Tensor& x, const at::Tensor& logits, bool reservoir, int64_t seen, uint64_t seed,
                int64_t step) {
  const std::vector<RowMove> moves = assign_slots(reservoir, seen, x.size(0), store_x.size(0), seed);
  copy_rows(x.contiguous(), store_x, moves);
  copy_rows(logits.contiguous(), store_logits, moves);
  int64_t* stamps = inserted_at.mutable_data_ptr<int64_t>();
  for (const RowMove& m : moves) stamps[m.dst] = step;
}

at::Tensor sample_cpu(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& out_x,
                      const at::Tensor& out_logits, int64_t fill, bool replace, uint64_t seed, int64_t counter,
                      int64_t entry) {
  const int64_t n = out_x.size(0);
  at::Tensor slots = at::empty({n}, store_x.options().dtype(at::kLong));
  int64_t* idx = slots.mutable_data_ptr<int64_t>();
  draw_slots(idx, n, fill, replace, seed, counter, entry);
  std::vector<RowMove> moves(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) moves[i] = {idx[i], i};
  copy_rows(store_x, out_x, moves);
  copy_rows(store_logits, out_logits, moves);
  return slots;
}

}  // namespace lrwa
