// CPU implementation of the replay memory's insert and sample+gather (see replay_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace lrwa {

// Writes the rows of (x, logits) that survive the policy into their slots and stamps `step`.
void insert_cpu(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& inserted_at,
                const at::Tensor& x, const at::Tensor& logits, bool reservoir, int64_t seen, uint64_t seed,
                int64_t step);

// Draws n = out_x.size(0) slots from the first `fill` (entry > 0: the n = entry slots of one whole
// entry), gathers their rows into out_x / out_logits (converting to their dtype) and returns the slots.
at::Tensor sample_cpu(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& out_x,
                      const at::Tensor& out_logits, int64_t fill, bool replace, uint64_t seed, int64_t counter,
                      int64_t entry);

}  // namespace lrwa
