// CPU implementation of the replay memory's insert and sample+gather (see replay_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>

namespace lrwa {

// Writes the rows of (x, logits) that survive the policy into their slots and stamps `step`.
void insert_cpu(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& inserted_at,
                const at::Tensor& x, const at::Tensor& logits, bool reservoir, int64_t seen, uint64_t seed,
                int64_t step);

// Draws n slots from the first `fill` and gathers (x, logits, slots) converted to out_dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_cpu(const at::Tensor& store_x,
                                                          const at::Tensor& store_logits, int64_t n,
                                                          int64_t fill, bool replace, uint64_t seed,
                                                          int64_t counter, at::ScalarType out_dtype);

}  // namespace lrwa
