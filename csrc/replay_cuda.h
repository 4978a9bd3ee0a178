/* Plain C interface of the CUDA replay memory (replay_cuda.cu).
 *
 * Raw device pointers, sizes and a stream; every call only enqueues work on `stream` (no host
 * synchronisation, no allocation): scratch memory comes from the caller. */
#pragma once

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LRWA_FLOAT32 = 0, LRWA_FLOAT64 = 1, LRWA_FLOAT16 = 2, LRWA_BFLOAT16 = 3 } lrwa_dtype;

/* A contiguous row-major matrix on the device: `rows` rows of `row_elems` elements. */
typedef struct {
  void* data;
  lrwa_dtype dtype;
  int64_t rows;
  int64_t row_elems;
} lrwa_matrix;

/* Writes the rows of x and logits (batch rows) that survive the policy (fifo, or reservoir when
 * `reservoir` is non-zero) into store_x / store_logits (capacity rows) and sets inserted_at[slot]
 * to `step`; the latest row wins a slot. Scratch: `winner` (capacity int32), `dst_rows` (batch int64). */
cudaError_t lrwa_cuda_insert(lrwa_matrix store_x, lrwa_matrix store_logits, int64_t* inserted_at,
                             lrwa_matrix x, lrwa_matrix logits, int reservoir, int64_t seen, uint64_t seed,
                             int64_t step, int32_t* winner, int64_t* dst_rows, cudaStream_t stream);

/* Bytes of scratch lrwa_cuda_sample needs for `fill` filled slots (0 with replacement). */
cudaError_t lrwa_cuda_sample_scratch_bytes(int64_t fill, int replace, size_t* bytes);

/* Draws n = out_x.rows slots among the first `fill` (with replacement: draw numbers counter to
 * counter + n - 1; without: call number `counter`; entry > 0: the n = entry consecutive slots of one
 * whole entry, call number `counter`), writes them to `slots` (n int64) and gathers those rows of
 * store_x / store_logits into out_x / out_logits, converting to their dtype.
 * `scratch` holds lrwa_cuda_sample_scratch_bytes(fill, replace) bytes (none for an entry). */
cudaError_t lrwa_cuda_sample(lrwa_matrix store_x, lrwa_matrix store_logits, lrwa_matrix out_x,
                             lrwa_matrix out_logits, int64_t* slots, int64_t fill, int replace, uint64_t seed,
                             int64_t counter, int64_t entry, void* scratch, size_t scratch_bytes,
                             cudaStream_t stream);

#ifdef __cplusplus
}
#endif
