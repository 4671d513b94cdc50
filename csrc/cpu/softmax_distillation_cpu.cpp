// Softmax distillation on the CPU: (weight_ce * WCE + weight_kl * KL_T) over rows of logits, with the gradient
// with respect to the student logits computed in the same pass. See kdsleep/ops/distill.py.
#include "../kdsleep_math.h"
#include "../kdsleep_ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace kdsleep {
namespace {

template <typename scalar_t>
void softmax_distillation_impl(const at::Tensor& student, const at::Tensor& teacher, const int64_t* labels,
                               const bool* mask, const double* class_weights, int64_t ignore_index,
                               double weight_ce, double weight_kl, double temperature, int64_t rows,
                               int64_t classes, at::Tensor& loss, at::Tensor& grad_out) {
  scalar_t* grad = grad_out.defined() ? grad_out.data_ptr<scalar_t>() : nullptr;
  const RowView gv = grad_out.defined() ? row_view(grad_out) : RowView{1, 0, 0, 0};
  using acc_t = typename OpMath<scalar_t>::type;
  const bool use_ce = labels != nullptr && weight_ce != 0.0;
  auto is_valid = [&](int64_t r) {
    if (mask != nullptr && !mask[r]) return false;
    if (labels != nullptr && labels[r] == ignore_index) return false;
    return true;
  };
  // Normalisers first (a cheap pass over labels): the gradient of a weighted mean needs the total weight.
  int64_t n_valid = 0;
  double total_weight = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    if (labels != nullptr && labels[r] != ignore_index) {
      TORCH_CHECK(labels[r] >= 0 && labels[r] < classes, "softmax_distillation: label ", labels[r], " at row ", r,
                  " is outside [0, ", classes, ") and is not ignore_index=", ignore_index);
    }
    if (!is_valid(r)) continue;
    ++n_valid;
    if (use_ce) total_weight += class_weights ? class_weights[labels[r]] : 1.0;
  }
  const double ce_scale = (use_ce && total_weight > 0.0) ? weight_ce / total_weight : 0.0;
  const double kl_scale = (weight_kl != 0.0 && n_valid > 0) ? weight_kl / static_cast<double>(n_valid) : 0.0;
  const acc_t inv_t = static_cast<acc_t>(1.0 / temperature);

  const RowView sv = row_view(student), tv = row_view(teacher);
  const scalar_t* sp = student.const_data_ptr<scalar_t>();
  const scalar_t* tp = teacher.const_data_ptr<scalar_t>();
  constexpr int64_t kGrain = 256;
  const int64_t n_chunks = (rows + kGrain - 1) / kGrain;
  std::vector<double> partial_ce(n_chunks, 0.0), partial_kl(n_chunks, 0.0);

  at::parallel_for(0, n_chunks, 1, [&](int64_t first, int64_t last) {
    // zs, zt: tempered logits, then their exponentials; e1: exp of the raw student logits (CE at T = 1)
    std::vector<acc_t> zs(classes), zt(classes), es(classes), et(classes), e1(classes), g(classes);
    const bool t_is_one = inv_t == acc_t(1);
    for (int64_t chunk = first; chunk < last; ++chunk) {
      double ce_sum = 0.0, kl_sum = 0.0;
      for (int64_t r = chunk * kGrain; r < std::min(rows, (chunk + 1) * kGrain); ++r) {
        scalar_t* grow = grad ? grad + gv.offset(r) : nullptr;
        if (!is_valid(r)) {
          if (grow)
            for (int64_t k = 0; k < classes; ++k) grow[k * gv.stride_k] = scalar_t(0);
          continue;
        }
        const scalar_t* srow = sp + sv.offset(r);
        const scalar_t* trow = tp + tv.offset(r);
        acc_t ms = -std::numeric_limits<acc_t>::infinity(), mt = ms;
        for (int64_t k = 0; k < classes; ++k) {
          zs[k] = static_cast<acc_t>(srow[k * sv.stride_k]) * inv_t;
          zt[k] = static_cast<acc_t>(trow[k * tv.stride_k]) * inv_t;
          ms = std::max(ms, zs[k]);
          mt = std::max(mt, zt[k]);
        }
        // One exponential per logit: probabilities are exp(z - max) / sum, log-probabilities z - lse.
        acc_t sum_s = 0, sum_t = 0;
        for (int64_t k = 0; k < classes; ++k) {
          es[k] = std::exp(zs[k] - ms);
          et[k] = std::exp(zt[k] - mt);
          sum_s += es[k];
          sum_t += et[k];
        }
        const acc_t lse_s = ms + std::log(sum_s), lse_t = mt + std::log(sum_t);
        const acc_t inv_sum_s = acc_t(1) / sum_s, inv_sum_t = acc_t(1) / sum_t;
        acc_t kl = 0;
        for (int64_t k = 0; k < classes; ++k) {
          const acc_t log_pt = zt[k] - lse_t, log_ps = zs[k] - lse_s;
          const acc_t pt = et[k] * inv_sum_t;
          kl += pt * (log_pt - log_ps);
          // dKL/ds_k = (p_T(s)_k - p_T(t)_k) / T
          g[k] = static_cast<acc_t>(kl_scale) * (es[k] * inv_sum_s - pt) * inv_t;
        }
        kl_sum += kl;
        if (use_ce) {
          // Cross-entropy at temperature 1 on the raw student logits (the tempered softmax when T = 1).
          const int64_t y = labels[r];
          const double w = class_weights ? class_weights[y] : 1.0;
          acc_t lse = lse_s, inv_sum = inv_sum_s;
          const acc_t* e = es.data();
          if (!t_is_one) {
            acc_t m = -std::numeric_limits<acc_t>::infinity();
            for (int64_t k = 0; k < classes; ++k) m = std::max(m, static_cast<acc_t>(srow[k * sv.stride_k]));
            acc_t sum = 0;
            for (int64_t k = 0; k < classes; ++k) {
              e1[k] = std::exp(static_cast<acc_t>(srow[k * sv.stride_k]) - m);
              sum += e1[k];
            }
            lse = m + std::log(sum);
            inv_sum = acc_t(1) / sum;
            e = e1.data();
          }
          ce_sum += w * static_cast<double>(lse - static_cast<acc_t>(srow[y * sv.stride_k]));
          const acc_t cw = static_cast<acc_t>(ce_scale * w);
          for (int64_t k = 0; k < classes; ++k) g[k] += cw * (e[k] * inv_sum - (k == y ? acc_t(1) : acc_t(0)));
        }
        if (grow)
          for (int64_t k = 0; k < classes; ++k) grow[k * gv.stride_k] = static_cast<scalar_t>(g[k]);
      }
      partial_ce[chunk] = ce_sum;
      partial_kl[chunk] = kl_sum;
    }
  });
  double ce_total = 0.0, kl_total = 0.0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    ce_total += partial_ce[c];
    kl_total += partial_kl[c];
  }
  *loss.data_ptr<acc_t>() = static_cast<acc_t>(ce_scale * ce_total + kl_scale * kl_total);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> softmax_distillation_cpu(
    const at::Tensor& student, const at::Tensor& teacher, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& class_weights,
    int64_t ignore_index, double weight_ce, double weight_kl, double temperature, bool compute_grad) {
  const auto [rows, classes] =
      check_softmax_distillation_inputs(student, teacher, labels, mask, class_weights, temperature);
  const auto acc = student.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor loss = at::empty({}, student.options().dtype(acc));
  // Contiguous, in the student's shape; an empty tensor when no gradient is wanted.
  at::Tensor grad = at::empty(compute_grad ? student.sizes() : at::IntArrayRef{0}, student.options());
  at::Tensor grad_arg = compute_grad ? grad : at::Tensor();
  at::Tensor y = labels.has_value() ? labels->to(at::kLong).contiguous() : at::Tensor();
  at::Tensor m = mask.has_value() ? mask->contiguous() : at::Tensor();
  at::Tensor w = class_weights.has_value() ? class_weights->to(at::kDouble).contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student.scalar_type(), "softmax_distillation_cpu", [&] {
    softmax_distillation_impl<scalar_t>(student, teacher, y.defined() ? y.const_data_ptr<int64_t>() : nullptr,
                                        m.defined() ? m.const_data_ptr<bool>() : nullptr,
                                        w.defined() ? w.const_data_ptr<double>() : nullptr, ignore_index,
                                        weight_ce, weight_kl, temperature, rows, classes, loss, grad_arg);
  });
  return {loss, grad};
}

}  // namespace kdsleep
