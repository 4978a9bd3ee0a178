// CUDA replay memory: device-side slot assignment (latest row wins via atomicMax), counter-based
// sampling (CUB radix sort of permutation keys without replacement) and a dtype-converting row copy.
// Only CUDA headers: every function enqueues on the caller's stream and never synchronises.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cub/device/device_radix_sort.cuh>
#include <type_traits>

#include "philox.h"
#include "replay_cuda.h"

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridX = 1024;
constexpr int64_t kMaxGridY = 65535;
constexpr size_t kScratchAlign = 256;

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) with the element type T of `dtype`.
template <typename F>
cudaError_t with_dtype(lrwa_dtype dtype, F&& f) {
  switch (dtype) {
    case LRWA_FLOAT32: return f(Tag<float>{});
    case LRWA_FLOAT64: return f(Tag<double>{});
    case LRWA_FLOAT16: return f(Tag<__half>{});
    case LRWA_BFLOAT16: return f(Tag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(double v) { return static_cast<float>(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return static_cast<T>(v);
  }
}

template <typename T>
constexpr bool kIsWide = std::is_same_v<T, float> || std::is_same_v<T, double>;

// Converts as torch casts do: directly between float and double, through float otherwise.
template <typename Out, typename In>
__device__ __forceinline__ Out convert(In v) {
  if constexpr (std::is_same_v<In, Out>) {
    return v;
  } else if constexpr (kIsWide<In> && kIsWide<Out>) {
    return static_cast<Out>(v);
  } else {
    return from_float<Out>(to_float(v));
  }
}

// dst row dst_rows[i] = src row src_rows[i], converted (null row maps mean i; a negative dst row skips).
template <typename In, typename Out>
__global__ void copy_rows_kernel(const In* __restrict__ src, Out* __restrict__ dst, int64_t rows,
                                 int64_t row_elems, const int64_t* __restrict__ src_rows,
                                 const int64_t* __restrict__ dst_rows) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.y; i < rows; i += gridDim.y) {
    const int64_t d = dst_rows ? dst_rows[i] : i;
    if (d < 0) continue;
    const In* from = src + (src_rows ? src_rows[i] : i) * row_elems;
    Out* to = dst + d * row_elems;
    for (int64_t k = first; k < row_elems; k += stride) to[k] = convert<Out>(from[k]);
  }
}

int64_t blocks_for(int64_t n, int64_t limit) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return blocks < limit ? blocks : limit;
}

// Copies `rows` rows from src to dst through the row maps (see copy_rows_kernel).
cudaError_t copy_rows(lrwa_matrix src, lrwa_matrix dst, int64_t rows, const int64_t* src_rows,
                      const int64_t* dst_rows, cudaStream_t stream) {
  const int64_t elems = src.row_elems;
  if (rows == 0 || elems == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(blocks_for(elems, kMaxGridX)),
                  static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
  return with_dtype(src.dtype, [&](auto in_tag) {
    return with_dtype(dst.dtype, [&](auto out_tag) {
      using In = typename decltype(in_tag)::type;
      using Out = typename decltype(out_tag)::type;
      copy_rows_kernel<In, Out><<<grid, kThreads, 0, stream>>>(
          static_cast<const In*>(src.data), static_cast<Out*>(dst.data), rows, elems, src_rows, dst_rows);
      return cudaGetLastError();
    });
  });
}

// Pass 1: slot of every row (-1 if dropped); clears the winner of each slot touched.
__global__ void claim_slots_kernel(int64_t batch, int64_t capacity, bool reservoir, int64_t seen,
                                   uint64_t seed, int32_t* winner, int64_t* dst_rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= batch) return;
  const int64_t slot = lrwa::slot_for_item(reservoir, seed, seen + row, capacity);
  dst_rows[row] = slot;
  if (slot >= 0) winner[slot] = -1;
}

// Pass 2: the latest row of each slot wins.
__global__ void vote_slots_kernel(int64_t batch, const int64_t* dst_rows, int32_t* winner) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= batch || dst_rows[row] < 0) return;
  atomicMax(winner + dst_rows[row], static_cast<int32_t>(row));
}

// Pass 3: losers get no slot; winners stamp their slot with `step`.
__global__ void keep_winners_kernel(int64_t batch, const int32_t* winner, int64_t* dst_rows,
                                    int64_t* inserted_at, int64_t step) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= batch) return;
  const int64_t slot = dst_rows[row];
  if (slot < 0) return;
  if (winner[slot] == row) {
    inserted_at[slot] = step;
  } else {
    dst_rows[row] = -1;
  }
}

__global__ void draw_with_replacement_kernel(int64_t n, int64_t fill, uint64_t seed, int64_t counter,
                                             int64_t* slots) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) slots[i] = lrwa::draw_with_replacement(seed, counter + i, fill);
}

__global__ void draw_entry_kernel(int64_t n, int64_t fill, uint64_t seed, int64_t call, int64_t entry,
                                  int64_t* slots) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) slots[i] = lrwa::entry_start(seed, call, fill, entry) + i;
}

__global__ void permutation_keys_kernel(int64_t fill, uint64_t seed, int64_t call, uint64_t* keys) {
  const int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s < fill) keys[s] = lrwa::permutation_key(seed, s, call);
}

__global__ void slots_of_keys_kernel(int64_t n, const uint64_t* keys, int64_t* slots) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) slots[i] = static_cast<int64_t>(keys[i] & 0xFFFFFFFFull);
}

unsigned grid_1d(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

size_t aligned(size_t bytes) { return (bytes + kScratchAlign - 1) / kScratchAlign * kScratchAlign; }

cudaError_t sort_bytes(int64_t fill, size_t* bytes) {
  return cub::DeviceRadixSort::SortKeys(nullptr, *bytes, static_cast<const uint64_t*>(nullptr),
                                        static_cast<uint64_t*>(nullptr), fill, 0, lrwa::kPermutationKeyBits);
}

// Slots of the n smallest permutation keys, ascending; scratch = keys in | keys out | CUB temp.
cudaError_t draw_without_replacement(int64_t n, int64_t fill, uint64_t seed, int64_t call, int64_t* slots,
                                     void* scratch, size_t scratch_bytes, cudaStream_t stream) {
  size_t sort_temp = 0;
  cudaError_t err = sort_bytes(fill, &sort_temp);
  if (err != cudaSuccess) return err;
  const size_t keys_bytes = aligned(static_cast<size_t>(fill) * sizeof(uint64_t));
  if (scratch_bytes < 2 * keys_bytes + sort_temp) return cudaErrorInvalidValue;
  auto* keys_in = static_cast<uint64_t*>(scratch);
  auto* keys_out = reinterpret_cast<uint64_t*>(static_cast<char*>(scratch) + keys_bytes);
  void* temp = static_cast<char*>(scratch) + 2 * keys_bytes;
  permutation_keys_kernel<<<grid_1d(fill), kThreads, 0, stream>>>(fill, seed, call, keys_in);
  err = cub::DeviceRadixSort::SortKeys(temp, sort_temp, keys_in, keys_out, fill, 0,
                                       lrwa::kPermutationKeyBits, stream);
  if (err != cudaSuccess) return err;
  slots_of_keys_kernel<<<grid_1d(n), kThreads, 0, stream>>>(n, keys_out, slots);
  return cudaGetLastError();
}

}  // namespace

extern "C" cudaError_t lrwa_cuda_insert(lrwa_matrix store_x, lrwa_matrix store_logits, int64_t* inserted_at,
                                        lrwa_matrix x, lrwa_matrix logits, int reservoir, int64_t seen,
                                        uint64_t seed, int64_t step, int32_t* winner, int64_t* dst_rows,
                                        cudaStream_t stream) {
  const int64_t batch = x.rows;
  if (batch == 0) return cudaSuccess;
  const unsigned blocks = grid_1d(batch);
  claim_slots_kernel<<<blocks, kThreads, 0, stream>>>(batch, store_x.rows, reservoir != 0, seen, seed,
                                                      winner, dst_rows);
  vote_slots_kernel<<<blocks, kThreads, 0, stream>>>(batch, dst_rows, winner);
  keep_winners_kernel<<<blocks, kThreads, 0, stream>>>(batch, winner, dst_rows, inserted_at, step);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  err = copy_rows(x, store_x, batch, nullptr, dst_rows, stream);
  if (err != cudaSuccess) return err;
  return copy_rows(logits, store_logits, batch, nullptr, dst_rows, stream);
}

extern "C" cudaError_t lrwa_cuda_sample_scratch_bytes(int64_t fill, int replace, size_t* bytes) {
  *bytes = 0;
  if (replace) return cudaSuccess;
  size_t sort_temp = 0;
  const cudaError_t err = sort_bytes(fill, &sort_temp);
  *bytes = 2 * aligned(static_cast<size_t>(fill) * sizeof(uint64_t)) + sort_temp;
  return err;
}

extern "C" cudaError_t lrwa_cuda_sample(lrwa_matrix store_x, lrwa_matrix store_logits, lrwa_matrix out_x,
                                        lrwa_matrix out_logits, int64_t* slots, int64_t fill, int replace,
                                        uint64_t seed, int64_t counter, int64_t entry, void* scratch,
                                        size_t scratch_bytes, cudaStream_t stream) {
  const int64_t n = out_x.rows;
  if (n == 0) return cudaSuccess;
  cudaError_t err = cudaSuccess;
  if (entry > 0) {
    draw_entry_kernel<<<grid_1d(n), kThreads, 0, stream>>>(n, fill, seed, counter, entry, slots);
    err = cudaGetLastError();
  } else if (replace) {
    draw_with_replacement_kernel<<<grid_1d(n), kThreads, 0, stream>>>(n, fill, seed, counter, slots);
    err = cudaGetLastError();
  } else {
    err = draw_without_replacement(n, fill, seed, counter, slots, scratch, scratch_bytes, stream);
  }
  if (err != cudaSuccess) return err;
  err = copy_rows(store_x, out_x, n, slots, nullptr, stream);
  if (err != cudaSuccess) return err;
  return copy_rows(store_logits, out_logits, n, slots, nullptr, stream);
}
