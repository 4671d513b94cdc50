// Self-distillation (DINO) cross-entropy on CUDA: one launch, a block per row. Each view's log-sum-exp is
// found with an online (max, sum) reduction over the classes, then one pass over the classes accumulates
// the loss over all (teacher view, other student view) pairs and writes the gradient. K may be large (the
// DINO head has 65 536 outputs), so the classes of a row are spread over the block's threads.
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

template <typename acc_t>
__device__ __forceinline__ void lse_combine(acc_t& m, acc_t& s, acc_t m2, acc_t s2) {
  if (m2 > m) {
    s = s * exp(m - m2) + s2;
    m = m2;
  } else if (s2 > acc_t(0)) {
    s += s2 * exp(m2 - m);
  }
}

// log(sum exp) over the block from per-thread (max, sum) pairs; the result reaches every thread.
template <typename acc_t>
__device__ acc_t block_logsumexp(acc_t m, acc_t s) {
  __shared__ acc_t ms[32], ss[32];
  __shared__ acc_t result;
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
    if (lane == 0) result = m + log(s);
  }
  __syncthreads();
  return result;
}

struct Layout {
  int64_t n_student, n_teacher, rows, classes;
  int64_t s_sv, s_sn, t_sv, t_sn;
};

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    self_distillation_kernel(const scalar_t* __restrict__ student, const scalar_t* __restrict__ teacher,
                             const acc_t* __restrict__ center, scalar_t* __restrict__ grad, const Layout L,
                             acc_t inv_ts, acc_t inv_tt, double scale, double* __restrict__ ws,
                             acc_t* __restrict__ loss_out) {
  __shared__ acc_t lse_t[kMaxViews], lse_s[kMaxViews];
  const int64_t n = blockIdx.x;
  const acc_t neg_inf = -std::numeric_limits<acc_t>::infinity();
  for (int64_t v = 0; v < L.n_teacher; ++v) {
    const scalar_t* row = teacher + v * L.t_sv + n * L.t_sn;
    acc_t m = neg_inf, s = 0;
    for (int64_t k = threadIdx.x; k < L.classes; k += blockDim.x)
      lse_combine(m, s, (static_cast<acc_t>(row[k]) - center[k]) * inv_tt, acc_t(1));
    const acc_t lse = block_logsumexp(m, s);
    if (threadIdx.x == 0) lse_t[v] = lse;
  }
  for (int64_t v = 0; v < L.n_student; ++v) {
    const scalar_t* row = student + v * L.s_sv + n * L.s_sn;
    acc_t m = neg_inf, s = 0;
    for (int64_t k = threadIdx.x; k < L.classes; k += blockDim.x)
      lse_combine(m, s, static_cast<acc_t>(row[k]) * inv_ts, acc_t(1));
    const acc_t lse = block_logsumexp(m, s);
    if (threadIdx.x == 0) lse_s[v] = lse;
  }
  __syncthreads();
  double h[1] = {0.0};
  for (int64_t k = threadIdx.x; k < L.classes; k += blockDim.x) {
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
  const int64_t pairs = n_teacher * n_student - std::min(n_teacher, n_student);
  const double scale = 1.0 / (static_cast<double>(pairs) * static_cast<double>(rows));
  Layout layout{n_student, n_teacher, rows, classes, s.stride(0), s.stride(1), t.stride(0), t.stride(1)};
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "self_distillation: too many rows for one launch");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student.scalar_type(), "self_distillation_cuda", [&] {
    using acc_t = typename OpMath<scalar_t>::type;
    self_distillation_kernel<scalar_t, acc_t><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        s.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), c.const_data_ptr<acc_t>(),
        compute_grad ? grad.data_ptr<scalar_t>() : nullptr, layout, static_cast<acc_t>(1.0 / student_temperature),
        static_cast<acc_t>(1.0 / teacher_temperature), scale, ws.data_ptr<double>(), loss.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, grad};
}

}  // namespace kdsleep
