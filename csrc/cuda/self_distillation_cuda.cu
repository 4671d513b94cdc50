// Self-distillation (DINO) cross-entropy on CUDA: two launches over a (row, slice of K) grid. K may be large
// (the DINO head has 65 536 outputs), so a row's classes are split across `splits` blocks. Launch 1: each
// block reduces its slice of every view to an online (max, sum) pair. Launch 2: each block combines a row's
// pairs into each view's log-sum-exp, then one pass over its slice accumulates the loss over all
// (teacher view, other student view) pairs and writes the gradient; the last block writes the loss.
#include "../kdsleep_math.h"
#include "../kdsleep_ops.h"
#include "kdsleep_cuda_utils.cuh"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <limits>

namespace kdsleep {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxViews = 64;
constexpr int64_t kSliceTarget = 4096;  // classes per block (16 per thread)
constexpr int64_t kMaxSplits = 64;
static_assert(kThreads % 32 == 0, "the block reductions assume whole warps");

template <typename acc_t>
__device__ __forceinline__ void lse_combine(acc_t& m, acc_t& s, acc_t m2, acc_t s2) {
  if (m2 > m) {
    s = s * exp(m - m2) + s2;
    m = m2;
  } else if (s2 > acc_t(0)) {
    s += s2 * exp(m2 - m);
  }
}

// Combines per-thread (max, sum) pairs over the block; the combined pair reaches every thread.
template <typename acc_t>
__device__ void block_max_sum(acc_t& m, acc_t& s) {
  __shared__ acc_t ms[32], ss[32];
  __shared__ acc_t result_m, result_s;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 16; off > 0; off >>= 1)
    lse_combine(m, s, __shfl_down_sync(cuda_utils::kFullMask, m, off), __shfl_down_sync(cuda_utils::kFullMask, s, off));
  if (lane == 0) {
    ms[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    const int n_warps = (blockDim.x + 31) >> 5;
    m = lane < n_warps ? ms[lane] : -std::numeric_limits<acc_t>::infinity();
    s = lane < n_warps ? ss[lane] : acc_t(0);
    for (int off = 16; off > 0; off >>= 1)
      lse_combine(m, s, __shfl_down_sync(cuda_utils::kFullMask, m, off), __shfl_down_sync(cuda_utils::kFullMask, s, off));
    if (lane == 0) {
      result_m = m;
      result_s = s;
    }
  }
  __syncthreads();
  m = result_m;
  s = result_s;
  __syncthreads();  // the shared slots may be reused by the next call
}

struct Layout {
  int64_t n_student, n_teacher, rows, classes;
  int64_t s_sv, s_sn, t_sv, t_sn;
  int64_t splits, slice;  // blocks per row and classes per block
};

// (max, sum of exp(x - max)) of one view's slice, per (row, view, split): partial[((n * V + v) * splits + q) * 2].
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    self_distillation_lse_kernel(const scalar_t* __restrict__ student, const scalar_t* __restrict__ teacher,
                                 const acc_t* __restrict__ center, const Layout L, acc_t inv_ts, acc_t inv_tt,
                                 acc_t* __restrict__ partial) {
  const int64_t n = blockIdx.x / L.splits, q = blockIdx.x % L.splits;
  const int64_t k0 = q * L.slice, k1 = k0 + L.slice < L.classes ? k0 + L.slice : L.classes;
  const int64_t views = L.n_teacher + L.n_student;
  const acc_t neg_inf = -std::numeric_limits<acc_t>::infinity();
  for (int64_t v = 0; v < views; ++v) {
    const bool is_teacher = v < L.n_teacher;
    const scalar_t* row = is_teacher ? teacher + v * L.t_sv + n * L.t_sn
                                     : student + (v - L.n_teacher) * L.s_sv + n * L.s_sn;
    acc_t m = neg_inf, s = 0;
    for (int64_t k = k0 + threadIdx.x; k < k1; k += blockDim.x) {
      const acc_t x = is_teacher ? (static_cast<acc_t>(row[k]) - center[k]) * inv_tt : static_cast<acc_t>(row[k]) * inv_ts;
      lse_combine(m, s, x, acc_t(1));
    }
    block_max_sum(m, s);
    if (threadIdx.x == 0) {
      acc_t* out = partial + ((n * views + v) * L.splits + q) * 2;
      out[0] = m;
      out[1] = s;
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    self_distillation_kernel(const scalar_t* __restrict__ student, const scalar_t* __restrict__ teacher,
                             const acc_t* __restrict__ center, scalar_t* __restrict__ grad, const Layout L,
                             acc_t inv_ts, acc_t inv_tt, double scale, const acc_t* __restrict__ partial,
                             double* __restrict__ ws, acc_t* __restrict__ loss_out) {
  __shared__ acc_t lse_t[kMaxViews], lse_s[kMaxViews];
  const int64_t n = blockIdx.x / L.splits, q = blockIdx.x % L.splits;
  const int64_t k0 = q * L.slice, k1 = k0 + L.slice < L.classes ? k0 + L.slice : L.classes;
  const int64_t views = L.n_teacher + L.n_student;
  // Each view's log-sum-exp over all of K from the slices' (max, sum) pairs.
  for (int64_t v = threadIdx.x; v < views; v += blockDim.x) {
    acc_t m = -std::numeric_limits<acc_t>::infinity(), s = 0;
    const acc_t* pv = partial + (n * views + v) * L.splits * 2;
    for (int64_t j = 0; j < L.splits; ++j) lse_combine(m, s, pv[2 * j], pv[2 * j + 1]);
    const acc_t lse = m + log(s);
    if (v < L.n_teacher) {
      lse_t[v] = lse;
    } else {
      lse_s[v - L.n_teacher] = lse;
    }
  }
  __syncthreads();
  double h[1] = {0.0};
  for (int64_t k = k0 + threadIdx.x; k < k1; k += blockDim.x) {
    const acc_t c = center[k];
    acc_t pt_sum = 0;
    for (int64_t v = 0; v < L.n_teacher; ++v)
      pt_sum += exp((static_cast<acc_t>(teacher[v * L.t_sv + n * L.t_sn + k]) - c) * inv_tt - lse_t[v]);
    for (int64_t v = 0; v < L.n_student; ++v) {
      // The teacher views paired with this student view: all of them but the same view.
      const bool has_own = v < L.n_teacher;
      const acc_t own =
          has_own ? exp((static_cast<acc_t>(teacher[v * L.t_sv + n * L.t_sn + k]) - c) * inv_tt - lse_t[v]) : acc_t(0);
      const acc_t target = pt_sum - own;
      const acc_t lp = static_cast<acc_t>(student[v * L.s_sv + n * L.s_sn + k]) * inv_ts - lse_s[v];
      h[0] -= static_cast<double>(target) * lp;
      if (grad) {
        const acc_t paired = static_cast<acc_t>(has_own ? L.n_teacher - 1 : L.n_teacher);
        grad[(v * L.rows + n) * L.classes + k] =
            static_cast<scalar_t>((paired * exp(lp) - target) * inv_ts * static_cast<acc_t>(scale));
      }
    }
  }
  cuda_utils::block_sum<1>(h);
  if (threadIdx.x == 0) atomicAdd(ws, h[0]);
  if (!cuda_utils::is_last_block(reinterpret_cast<unsigned int*>(ws + 1), gridDim.x)) return;
  if (threadIdx.x == 0) *loss_out = static_cast<acc_t>(__ldcg(ws) * scale);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> self_distillation_cuda(const at::Tensor& student, const at::Tensor& teacher,
                                                          const at::Tensor& center, double student_temperature,
                                                          double teacher_temperature, bool compute_grad) {
  const auto [n_student, n_teacher, rows, classes] =
      check_self_distillation_inputs(student, teacher, center, student_temperature, teacher_temperature);
  c10::cuda::CUDAGuard guard(student.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const auto acc = student.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor loss = at::zeros({}, student.options().dtype(acc));
  at::Tensor grad = at::empty(compute_grad ? student.sizes() : at::IntArrayRef{0}, student.options());
  if (rows == 0) return {loss, grad};
  const at::Tensor s = student.stride(2) == 1 ? student : student.contiguous();
  const at::Tensor t = teacher.stride(2) == 1 ? teacher : teacher.contiguous();
  const at::Tensor c = center.to(acc).contiguous();
  at::Tensor ws = at::zeros({2}, student.options().dtype(at::kDouble));  // loss sum, block counter
  const int64_t splits = std::clamp<int64_t>((classes + kSliceTarget - 1) / kSliceTarget, 1, kMaxSplits);
  const int64_t slice = (classes + splits - 1) / splits;
  at::Tensor partial = at::empty({rows * (n_student + n_teacher) * splits * 2}, student.options().dtype(acc));
  const int64_t pairs = n_teacher * n_student - std::min(n_teacher, n_student);
  const double scale = 1.0 / (static_cast<double>(pairs) * static_cast<double>(rows));
  Layout layout{n_student, n_teacher, rows, classes, s.stride(0), s.stride(1), t.stride(0), t.stride(1), splits, slice};
  TORCH_CHECK(rows * splits <= std::numeric_limits<int32_t>::max(), "self_distillation: too many rows for one launch");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student.scalar_type(), "self_distillation_cuda", [&] {
    using acc_t = typename OpMath<scalar_t>::type;
    const auto blocks = static_cast<unsigned>(rows * splits);
    const auto inv_ts = static_cast<acc_t>(1.0 / student_temperature);
    const auto inv_tt = static_cast<acc_t>(1.0 / teacher_temperature);
    self_distillation_lse_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
        s.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), c.const_data_ptr<acc_t>(), layout, inv_ts,
        inv_tt, partial.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    self_distillation_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
        s.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), c.const_data_ptr<acc_t>(),
        compute_grad ? grad.data_ptr<scalar_t>() : nullptr, layout, inv_ts, inv_tt, scale,
        partial.const_data_ptr<acc_t>(), ws.data_ptr<double>(), loss.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, grad};
}

}  // namespace kdsleep
