// Self-distillation (DINO) cross-entropy on the CPU: one parallel pass over rows computes the loss over all
// (teacher view, other student view) pairs and the gradient with respect to the student outputs.
// See kdsleep/ops/self_distill.py for the mathematics.
#include "../kdsleep_math.h"
#include "../kdsleep_ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace kdsleep {
namespace {

template <typename scalar_t>
void self_distillation_impl(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& center,
                            double student_temperature, double teacher_temperature, at::Tensor& loss,
                            at::Tensor& grad) {
  using acc_t = typename OpMath<scalar_t>::type;
  const int64_t n_student = student.size(0), n_teacher = teacher.size(0);
  const int64_t rows = student.size(1), classes = student.size(2);
  const int64_t pairs = n_teacher * n_student - std::min(n_teacher, n_student);
  const double scale = 1.0 / (static_cast<double>(pairs) * static_cast<double>(rows));
  const acc_t inv_ts = static_cast<acc_t>(1.0 / student_temperature);
  const acc_t inv_tt = static_cast<acc_t>(1.0 / teacher_temperature);
  const scalar_t* sp = student.const_data_ptr<scalar_t>();
  const scalar_t* tp = teacher.const_data_ptr<scalar_t>();
  const acc_t* cp = center.const_data_ptr<acc_t>();
  scalar_t* gp = grad.defined() ? grad.data_ptr<scalar_t>() : nullptr;
  const int64_t s_sv = student.stride(0), s_sn = student.stride(1);
  const int64_t t_sv = teacher.stride(0), t_sn = teacher.stride(1);
  std::vector<double> partial(rows, 0.0);

  at::parallel_for(0, rows, 1, [&](int64_t first, int64_t last) {
    std::vector<acc_t> pt(n_teacher * classes), pt_sum(classes), log_ps(classes);
    for (int64_t n = first; n < last; ++n) {
      std::fill(pt_sum.begin(), pt_sum.end(), acc_t(0));
      for (int64_t v = 0; v < n_teacher; ++v) {
        const scalar_t* row = tp + v * t_sv + n * t_sn;
        acc_t* p = pt.data() + v * classes;
        acc_t m = -std::numeric_limits<acc_t>::infinity();
        for (int64_t k = 0; k < classes; ++k) {
          p[k] = (static_cast<acc_t>(row[k]) - cp[k]) * inv_tt;
          m = std::max(m, p[k]);
        }
        acc_t sum = 0;
        for (int64_t k = 0; k < classes; ++k) {
          p[k] = std::exp(p[k] - m);
          sum += p[k];
        }
        const acc_t inv = acc_t(1) / sum;
        for (int64_t k = 0; k < classes; ++k) {
          p[k] *= inv;
          pt_sum[k] += p[k];
        }
      }
      double row_loss = 0.0;
      for (int64_t v = 0; v < n_student; ++v) {
        const scalar_t* row = sp + v * s_sv + n * s_sn;
        acc_t m = -std::numeric_limits<acc_t>::infinity();
        for (int64_t k = 0; k < classes; ++k) {
          log_ps[k] = static_cast<acc_t>(row[k]) * inv_ts;
          m = std::max(m, log_ps[k]);
        }
        acc_t sum = 0;
        for (int64_t k = 0; k < classes; ++k) sum += std::exp(log_ps[k] - m);
        const acc_t lse = m + std::log(sum);
        // The teacher views paired with this student view: all of them but the same view.
        const acc_t* own = v < n_teacher ? pt.data() + v * classes : nullptr;
        const acc_t paired = static_cast<acc_t>(own ? n_teacher - 1 : n_teacher);
        scalar_t* grow = gp ? gp + (v * rows + n) * classes : nullptr;
        double h = 0.0;
        for (int64_t k = 0; k < classes; ++k) {
          const acc_t lp = log_ps[k] - lse;
          const acc_t target = own ? pt_sum[k] - own[k] : pt_sum[k];
          h -= static_cast<double>(target) * lp;
          if (grow)
            grow[k] = static_cast<scalar_t>((paired * std::exp(lp) - target) * inv_ts * static_cast<acc_t>(scale));
        }
        row_loss += h;
      }
      partial[n] = row_loss;
    }
  });
  double total = 0.0;
  for (int64_t n = 0; n < rows; ++n) total += partial[n];
  *loss.data_ptr<acc_t>() = static_cast<acc_t>(total * scale);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> self_distillation_cpu(const at::Tensor& student, const at::Tensor& teacher,
                                                         const at::Tensor& center, double student_temperature,
                                                         double teacher_temperature, bool compute_grad) {
  check_self_distillation_inputs(student, teacher, center, student_temperature, teacher_temperature);
  const auto acc = student.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor loss = at::empty({}, student.options().dtype(acc));
  at::Tensor grad = at::empty(compute_grad ? student.sizes() : at::IntArrayRef{0}, student.options());
  at::Tensor grad_arg = compute_grad ? grad : at::Tensor();
  const at::Tensor c = center.to(acc).contiguous();
  // Rows are read with their strides; the class dimension must be contiguous for the inner loops.
  const at::Tensor s = student.stride(2) == 1 ? student : student.contiguous();
  const at::Tensor t = teacher.stride(2) == 1 ? teacher : teacher.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student.scalar_type(), "self_distillation_cpu", [&] {
    self_distillation_impl<scalar_t>(s, t, c, student_temperature, teacher_temperature, loss, grad_arg);
  });
  return {loss, grad};
}

}  // namespace kdsleep
