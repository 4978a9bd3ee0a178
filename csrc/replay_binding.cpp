// Python binding of lrwa_fast._replay_ext: argument checks, then the CPU or the CUDA path.
// Same contract as lrwa_fast/replay/buffer/torch_backend.py (insert, and sample + gather in one call).
// The tensor type and its pybind11 casters only: torch/extension.h (the whole C++ API) triples the compile time.
#include <ATen/core/Tensor.h>
#include <torch/csrc/utils/pybind.h>

#include "philox.h"
#include "replay_cpu.h"

#ifdef LRWA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "replay_cuda.h"
#endif

namespace {

bool supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

void check_dtype(at::ScalarType t, const char* what) {
  TORCH_CHECK_VALUE(supported_dtype(t), what, " has dtype ", t,
                    "; the extension handles float32, float64, float16 and bfloat16");
}

void check_storage(const at::Tensor& store_x, const at::Tensor& store_logits) {
  TORCH_CHECK_VALUE(store_x.dim() >= 1 && store_logits.dim() == 2 && store_x.size(0) >= 1 &&
                        store_logits.size(0) == store_x.size(0),
                    "storage must be (capacity, ...) samples and (capacity, classes) logits");
  TORCH_CHECK_VALUE(store_x.is_contiguous() && store_logits.is_contiguous(), "storage must be contiguous");
  TORCH_CHECK_VALUE(store_logits.device() == store_x.device(), "storage tensors are on different devices");
  check_dtype(store_x.scalar_type(), "sample storage");
  check_dtype(store_logits.scalar_type(), "logit storage");
}

void check_batch(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& inserted_at,
                 const at::Tensor& x, const at::Tensor& logits, int64_t seen) {
  TORCH_CHECK_VALUE(x.dim() == store_x.dim() && x.sizes().slice(1) == store_x.sizes().slice(1),
                    "x must have shape (batch, ", store_x.sizes().slice(1), "), got ", x.sizes());
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.size(1) == store_logits.size(1),
                    "logits must have shape (batch, ", store_logits.size(1), "), got ", logits.sizes());
  TORCH_CHECK_VALUE(x.size(0) == logits.size(0), "x and logits have different numbers of rows");
  TORCH_CHECK_VALUE(x.device() == store_x.device() && logits.device() == store_x.device() &&
                        inserted_at.device() == store_x.device(),
                    "batch and storage must be on the same device");
  TORCH_CHECK_VALUE(inserted_at.scalar_type() == at::kLong && inserted_at.is_contiguous() &&
                        inserted_at.numel() == store_x.size(0),
                    "inserted_at must be a contiguous int64 tensor of capacity elements");
  TORCH_CHECK_VALUE(seen >= 0, "seen must be >= 0");
  check_dtype(x.scalar_type(), "x");
  check_dtype(logits.scalar_type(), "logits");
}

void check_draw(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& out_x,
                const at::Tensor& out_logits, int64_t fill, bool replace, int64_t entry) {
  const int64_t n = out_x.dim() >= 1 ? out_x.size(0) : 0;
  TORCH_CHECK_VALUE(fill >= 1 && fill <= store_x.size(0), "fill must be in [1, capacity], got ", fill);
  TORCH_CHECK_VALUE(n >= 1, "outputs must have n >= 1 rows, got ", n);
  TORCH_CHECK_VALUE(replace || n <= fill, "cannot draw ", n, " distinct items from ", fill);
  TORCH_CHECK_VALUE(entry >= 0, "entry must be >= 0, got ", entry);
  TORCH_CHECK_VALUE(entry == 0 || (n == entry && fill >= entry), "a whole-entry draw takes n = entry = ", entry,
                    " rows from at least one full entry, got n = ", n, " and fill = ", fill);
  TORCH_CHECK_VALUE(out_x.dim() == store_x.dim() && out_x.sizes().slice(1) == store_x.sizes().slice(1),
                    "out_x must have shape (n, ", store_x.sizes().slice(1), "), got ", out_x.sizes());
  TORCH_CHECK_VALUE(out_logits.dim() == 2 && out_logits.size(0) == n && out_logits.size(1) == store_logits.size(1),
                    "out_logits must have shape (", n, ", ", store_logits.size(1), "), got ", out_logits.sizes());
  TORCH_CHECK_VALUE(out_x.is_contiguous() && out_logits.is_contiguous(), "outputs must be contiguous");
  TORCH_CHECK_VALUE(out_x.device() == store_x.device() && out_logits.device() == store_x.device(),
                    "outputs must be on the storage's device ", store_x.device(), ", got ", out_x.device(), " and ",
                    out_logits.device());
  for (const at::Tensor& out : {out_x, out_logits}) {
    TORCH_CHECK_VALUE(!out.is_alias_of(store_x) && !out.is_alias_of(store_logits),
                      "outputs must not share memory with the storage");
  }
  TORCH_CHECK_VALUE(!out_x.is_alias_of(out_logits), "out_x and out_logits must not share memory");
  check_dtype(out_x.scalar_type(), "out_x");
  check_dtype(out_logits.scalar_type(), "out_logits");
}

#ifdef LRWA_WITH_CUDA
lrwa_dtype cuda_dtype(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return LRWA_FLOAT64;
    case at::kHalf: return LRWA_FLOAT16;
    case at::kBFloat16: return LRWA_BFLOAT16;
    default: return LRWA_FLOAT32;
  }
}

lrwa_matrix as_matrix(const at::Tensor& t) {
  return {t.data_ptr(), cuda_dtype(t.scalar_type()), t.size(0), c10::multiply_integers(t.sizes().slice(1))};
}

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "lrwa_fast CUDA ", what, " failed: ", cudaGetErrorString(err));
}

void insert_cuda(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& inserted_at,
                 const at::Tensor& x, const at::Tensor& logits, bool reservoir, int64_t seen, uint64_t seed,
                 int64_t step) {
  const c10::cuda::CUDAGuard guard(store_x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor lc = logits.contiguous();
  at::Tensor winner = at::empty({store_x.size(0)}, store_x.options().dtype(at::kInt));
  at::Tensor dst_rows = at::empty({x.size(0)}, store_x.options().dtype(at::kLong));
  check_cuda(lrwa_cuda_insert(as_matrix(store_x), as_matrix(store_logits), inserted_at.data_ptr<int64_t>(),
                              as_matrix(xc), as_matrix(lc), reservoir, seen, seed, step,
                              winner.data_ptr<int32_t>(), dst_rows.data_ptr<int64_t>(),
                              c10::cuda::getCurrentCUDAStream().stream()),
             "insert");
}

at::Tensor sample_cuda(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& out_x,
                       const at::Tensor& out_logits, int64_t fill, bool replace, uint64_t seed, int64_t counter,
                       int64_t entry) {
  const c10::cuda::CUDAGuard guard(store_x.device());
  at::Tensor slots = at::empty({out_x.size(0)}, store_x.options().dtype(at::kLong));
  size_t bytes = 0;
  check_cuda(lrwa_cuda_sample_scratch_bytes(fill, replace || entry > 0, &bytes), "sample scratch query");
  at::Tensor scratch = at::empty({static_cast<int64_t>(bytes)}, store_x.options().dtype(at::kByte));
  check_cuda(lrwa_cuda_sample(as_matrix(store_x), as_matrix(store_logits), as_matrix(out_x),
                              as_matrix(out_logits), slots.data_ptr<int64_t>(), fill, replace, seed, counter, entry,
                              scratch.data_ptr(), bytes, c10::cuda::getCurrentCUDAStream().stream()),
             "sample");
  return slots;
}
#endif

void check_device(const at::Tensor& t) {
#ifdef LRWA_WITH_CUDA
  TORCH_CHECK_VALUE(t.is_cpu() || t.is_cuda(), "the extension handles CPU and CUDA tensors, got ", t.device());
#else
  TORCH_CHECK_VALUE(t.is_cpu(), "this build of the extension handles CPU tensors only, got ", t.device());
#endif
}

void insert(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& inserted_at,
            const at::Tensor& x, const at::Tensor& logits, bool reservoir, int64_t seen, uint64_t seed,
            int64_t step) {
  check_storage(store_x, store_logits);
  check_batch(store_x, store_logits, inserted_at, x, logits, seen);
  check_device(store_x);
#ifdef LRWA_WITH_CUDA
  if (store_x.is_cuda()) {
    return insert_cuda(store_x, store_logits, inserted_at, x, logits, reservoir, seen, seed, step);
  }
#endif
  lrwa::insert_cpu(store_x, store_logits, inserted_at, x, logits, reservoir, seen, seed, step);
}

at::Tensor sample(const at::Tensor& store_x, const at::Tensor& store_logits, const at::Tensor& out_x,
                  const at::Tensor& out_logits, int64_t fill, bool replace, uint64_t seed, int64_t counter,
                  int64_t entry) {
  check_storage(store_x, store_logits);
  check_draw(store_x, store_logits, out_x, out_logits, fill, replace, entry);
  check_device(store_x);
#ifdef LRWA_WITH_CUDA
  if (store_x.is_cuda()) {
    return sample_cuda(store_x, store_logits, out_x, out_logits, fill, replace, seed, counter, entry);
  }
#endif
  return lrwa::sample_cpu(store_x, store_logits, out_x, out_logits, fill, replace, seed, counter, entry);
}

// Philox4x32-10 first words for counters (c0[i], c1, c2, c3) on the CPU (to test philox.h).
at::Tensor philox_u32(uint64_t key, const at::Tensor& c0, uint32_t c1, uint32_t c2, uint32_t c3) {
  TORCH_CHECK_VALUE(c0.scalar_type() == at::kLong && c0.is_cpu(), "c0 must be a CPU int64 tensor");
  const at::Tensor counters = c0.contiguous();
  at::Tensor out = at::empty_like(counters);
  const int64_t* in = counters.const_data_ptr<int64_t>();
  int64_t* words = out.mutable_data_ptr<int64_t>();
  for (int64_t i = 0; i < counters.numel(); ++i) {
    words[i] = lrwa::philox_u32(key, static_cast<uint32_t>(in[i]), c1, c2, c3);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lrwa_fast replay memory: batched insert and sample+gather on CPU (and CUDA when built)";
#ifdef LRWA_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  const auto no_gil = py::call_guard<py::gil_scoped_release>();
  m.def("insert", &insert, "Insert a batch into the storage under fifo or reservoir", py::arg("store_x"),
        py::arg("store_logits"), py::arg("inserted_at"), py::arg("x"), py::arg("logits"), py::arg("reservoir"),
        py::arg("seen"), py::arg("seed"), py::arg("step"), no_gil);
  m.def("sample", &sample,
        "Draw n = len(out_x) slots (entry > 0: one whole entry of n = entry slots), gather their rows into "
        "out_x / out_logits, return the slots",
        py::arg("store_x"), py::arg("store_logits"), py::arg("out_x"), py::arg("out_logits"), py::arg("fill"),
        py::arg("replace"), py::arg("seed"), py::arg("counter"), py::arg("entry") = 0, no_gil);
  m.def("philox_u32", &philox_u32, "First Philox4x32-10 word per counter", py::arg("key"), py::arg("c0"),
        py::arg("c1") = 0, py::arg("c2") = 0, py::arg("c3") = 0, no_gil);
}
