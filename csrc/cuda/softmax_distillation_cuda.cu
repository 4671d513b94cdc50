// Softmax distillation on CUDA: two plain launches on one stream. Launch 1 counts the valid rows and the
// total class weight (the normalisers of the two means); launch 2 computes every row's loss terms and writes
// the gradient with respect to the student logits, already normalised, so the backward only scales it; its
// last block to finish writes the loss. No grid-wide barrier, so no cooperative launch (which needs the
// whole grid resident and a device that supports it). A thread handles a row: K is small (3-5 sleep stages)
// and rows are many (about 420 at the paper's size).
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
constexpr int kMaxBlocks = 1024;  // grid-stride loops beyond this
static_assert(kThreads % 32 == 0, "the block reductions assume whole warps");

struct Args {
  RowView sv, tv, gv;
  const int64_t* labels;
  const bool* mask;
  const double* class_weights;
  int64_t ignore_index;
  double weight_ce, weight_kl, inv_t;
  int64_t rows, classes;
};

// ws: [0] valid rows, [1] total class weight, [2] sum of weighted CE, [3] sum of KL, [4] invalid labels,
// [5] block counter of launch 2 (zeroed with the rest).
__global__ void __launch_bounds__(kThreads) softmax_distillation_count_kernel(const Args a, double* __restrict__ ws) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool use_ce = a.labels != nullptr && a.weight_ce != 0.0;

  double counts[3] = {0.0, 0.0, 0.0};
  for (int64_t r = first; r < a.rows; r += stride) {
    bool valid = a.mask == nullptr || a.mask[r];
    if (a.labels != nullptr) {
      const int64_t y = a.labels[r];
      if (y == a.ignore_index) {
        valid = false;
      } else if (y < 0 || y >= a.classes) {
        counts[2] += 1.0;
        valid = false;
      }
      if (valid && use_ce) counts[1] += a.class_weights ? a.class_weights[y] : 1.0;
    }
    if (valid) counts[0] += 1.0;
  }
  cuda_utils::block_sum<3>(counts);
  if (threadIdx.x == 0) {
    atomicAdd(ws, counts[0]);
    atomicAdd(ws + 1, counts[1]);
    atomicAdd(ws + 4, counts[2]);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    softmax_distillation_kernel(const scalar_t* __restrict__ student, const scalar_t* __restrict__ teacher,
                                scalar_t* __restrict__ grad, const Args a, double* __restrict__ ws,
                                acc_t* __restrict__ loss_out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool use_ce = a.labels != nullptr && a.weight_ce != 0.0;
  const double n_valid = __ldcg(ws), total_weight = __ldcg(ws + 1);
  const double ce_scale = (use_ce && total_weight > 0.0) ? a.weight_ce / total_weight : 0.0;
  const double kl_scale = (a.weight_kl != 0.0 && n_valid > 0.0) ? a.weight_kl / n_valid : 0.0;
  const acc_t inv_t = static_cast<acc_t>(a.inv_t);
  double sums[2] = {0.0, 0.0};
  for (int64_t r = first; r < a.rows; r += stride) {
    scalar_t* grow = grad ? grad + a.gv.offset(r) : nullptr;
    bool valid = a.mask == nullptr || a.mask[r];
    int64_t y = -1;
    if (a.labels != nullptr) {
      y = a.labels[r];
      valid = valid && y != a.ignore_index && y >= 0 && y < a.classes;
    }
    if (!valid) {
      if (grow)
        for (int64_t k = 0; k < a.classes; ++k) grow[k * a.gv.stride_k] = scalar_t(0);
      continue;
    }
    const scalar_t* srow = student + a.sv.offset(r);
    const scalar_t* trow = teacher + a.tv.offset(r);
    acc_t ms = -std::numeric_limits<acc_t>::infinity(), mt = ms, m1 = ms;
    for (int64_t k = 0; k < a.classes; ++k) {
      const acc_t s = static_cast<acc_t>(srow[k * a.sv.stride_k]);
      ms = max(ms, s * inv_t);
      mt = max(mt, static_cast<acc_t>(trow[k * a.tv.stride_k]) * inv_t);
      m1 = max(m1, s);
    }
    acc_t sum_s = 0, sum_t = 0, sum_1 = 0;
    for (int64_t k = 0; k < a.classes; ++k) {
      const acc_t s = static_cast<acc_t>(srow[k * a.sv.stride_k]);
      sum_s += exp(s * inv_t - ms);
      sum_t += exp(static_cast<acc_t>(trow[k * a.tv.stride_k]) * inv_t - mt);
      sum_1 += exp(s - m1);
    }
    const acc_t lse_s = ms + log(sum_s), lse_t = mt + log(sum_t), lse_1 = m1 + log(sum_1);
    const double w = use_ce ? (a.class_weights ? a.class_weights[y] : 1.0) : 0.0;
    const acc_t cw = static_cast<acc_t>(ce_scale * w);
    acc_t kl = 0;
    for (int64_t k = 0; k < a.classes; ++k) {
      const acc_t s = static_cast<acc_t>(srow[k * a.sv.stride_k]);
      const acc_t log_pt = static_cast<acc_t>(trow[k * a.tv.stride_k]) * inv_t - lse_t;
      const acc_t log_ps = s * inv_t - lse_s;
      const acc_t pt = exp(log_pt);
      kl += pt * (log_pt - log_ps);
      acc_t g = static_cast<acc_t>(kl_scale) * (exp(log_ps) - pt) * inv_t;
      if (use_ce) g += cw * (exp(s - lse_1) - (k == y ? acc_t(1) : acc_t(0)));
      if (grow) grow[k * a.gv.stride_k] = static_cast<scalar_t>(g);
    }
    sums[1] += kl;
    if (use_ce) sums[0] += w * static_cast<double>(lse_1 - static_cast<acc_t>(srow[y * a.sv.stride_k]));
  }
  cuda_utils::block_sum<2>(sums);
  if (threadIdx.x == 0) {
    atomicAdd(ws + 2, sums[0]);
    atomicAdd(ws + 3, sums[1]);
  }
  if (!cuda_utils::is_last_block(reinterpret_cast<unsigned int*>(ws + 5), gridDim.x)) return;
  if (threadIdx.x == 0) {
    // Labels outside [0, K) make the loss NaN: a device-side error without a device-side assert.
    const double loss = __ldcg(ws + 4) > 0.0 ? std::numeric_limits<double>::quiet_NaN()
                                              : ce_scale * __ldcg(ws + 2) + kl_scale * __ldcg(ws + 3);
    *loss_out = static_cast<acc_t>(loss);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> softmax_distillation_cuda(
    const at::Tensor& student, const at::Tensor& teacher, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& class_weights,
    int64_t ignore_index, double weight_ce, double weight_kl, double temperature, bool compute_grad) {
  const auto [rows, classes] =
      check_softmax_distillation_inputs(student, teacher, labels, mask, class_weights, temperature);
  c10::cuda::CUDAGuard guard(student.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const auto acc = student.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor loss = at::empty({}, student.options().dtype(acc));
  at::Tensor grad = at::empty(compute_grad ? student.sizes() : at::IntArrayRef{0}, student.options());
  at::Tensor y = labels.has_value() ? labels->to(at::kLong).contiguous() : at::Tensor();
  at::Tensor m = mask.has_value() ? mask->contiguous() : at::Tensor();
  at::Tensor w = class_weights.has_value() ? class_weights->to(at::kDouble).contiguous() : at::Tensor();
  at::Tensor ws = at::zeros({6}, student.options().dtype(at::kDouble));
  if (rows == 0) {
    loss.zero_();
    return {loss, grad};
  }
  Args args;
  args.sv = row_view(student);
  args.tv = row_view(teacher);
  args.gv = compute_grad ? row_view(grad) : RowView{1, 0, 0, 0};
  args.labels = y.defined() ? y.const_data_ptr<int64_t>() : nullptr;
  args.mask = m.defined() ? m.const_data_ptr<bool>() : nullptr;
  args.class_weights = w.defined() ? w.const_data_ptr<double>() : nullptr;
  args.ignore_index = ignore_index;
  args.weight_ce = weight_ce;
  args.weight_kl = weight_kl;
  args.inv_t = 1.0 / temperature;
  args.rows = rows;
  args.classes = classes;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student.scalar_type(), "softmax_distillation_cuda", [&] {
    using acc_t = typename OpMath<scalar_t>::type;
    const int blocks = static_cast<int>(std::min<int64_t>((rows + kThreads - 1) / kThreads, kMaxBlocks));
    double* wsp = ws.data_ptr<double>();
    softmax_distillation_count_kernel<<<blocks, kThreads, 0, stream>>>(args, wsp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    softmax_distillation_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
        student.const_data_ptr<scalar_t>(), teacher.const_data_ptr<scalar_t>(),
        compute_grad ? grad.data_ptr<scalar_t>() : nullptr, args, wsp, loss.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, grad};
}

}  // namespace kdsleep
