// Declarations of the kdsleep kernels, one set per device. Registration lives in kdsleep_ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <string>
#include <tuple>
#include <vector>

namespace kdsleep {

// ---- shared helpers (kdsleep_common.cpp) ----

// Validates the inputs of the attention-transfer op and returns the (mode, distance) enums as ints.
void check_attention_transfer_inputs(at::TensorList student, at::TensorList teacher, double p,
                                     at::ArrayRef<double> weights, double eps);
int parse_at_mode(const std::string& mode);
int parse_at_distance(const std::string& distance);

// What the attention-transfer forward returns for the backward:
//  * `saved` (float32, or float64 for float64 inputs): two maps of B * L_j values per layer, the student's
//    and the teacher's attention maps (mode "joshi": dloss/da and the teacher map);
//  * `coeffs` (always float64, its own tensor): (alpha, beta) per (layer, sample), shape (J, B, 2) -- kept in
//    double because the gradient alpha * a_s + beta * a_t cancels when student and teacher maps agree.
int64_t at_saved_numel(at::TensorList student);
// Offset of each layer's first map in `saved`.
std::vector<int64_t> at_map_offsets(at::TensorList student);
// Validates every argument of the raw backward op (each layer, the saved maps and the coefficients).
void check_attention_transfer_backward_inputs(const at::Tensor& grad, at::TensorList student,
                                              const at::Tensor& saved, const at::Tensor& coeffs);

struct RowView;
// The (B, K, E) row view of (N, K) or (B, K, E) logits (see RowView in kdsleep_math.h).
RowView row_view(const at::Tensor& logits);

// Checks of the softmax-distillation op. Returns the number of rows and classes.
std::pair<int64_t, int64_t> check_softmax_distillation_inputs(
    const at::Tensor& student, const at::Tensor& teacher, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& class_weights,
    double temperature);

// Checks of the self-distillation op. Returns (student views, teacher views, rows, classes).
std::tuple<int64_t, int64_t, int64_t, int64_t> check_self_distillation_inputs(const at::Tensor& student,
                                                                              const at::Tensor& teacher,
                                                                              const at::Tensor& center,
                                                                              double student_temperature,
                                                                              double teacher_temperature);

// ---- CPU ----
std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_transfer_cpu(at::TensorList student,
                                                                      at::TensorList teacher, double p,
                                                                      at::ArrayRef<double> weights,
                                                                      const std::string& distance,
                                                                      const std::string& mode, double eps);
std::vector<at::Tensor> attention_transfer_backward_cpu(const at::Tensor& grad, at::TensorList student,
                                                        const at::Tensor& saved, const at::Tensor& coeffs,
                                                        double p, const std::string& mode);
std::tuple<at::Tensor, at::Tensor> softmax_distillation_cpu(
    const at::Tensor& student, const at::Tensor& teacher, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& class_weights,
    int64_t ignore_index, double weight_ce, double weight_kl, double temperature, bool compute_grad);

std::tuple<at::Tensor, at::Tensor> self_distillation_cpu(const at::Tensor& student, const at::Tensor& teacher,
                                                         const at::Tensor& center, double student_temperature,
                                                         double teacher_temperature, bool compute_grad);

#ifdef KDSLEEP_WITH_CUDA
// ---- CUDA ----
std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_transfer_cuda(at::TensorList student,
                                                                       at::TensorList teacher, double p,
                                                                       at::ArrayRef<double> weights,
                                                                       const std::string& distance,
                                                                       const std::string& mode, double eps);
std::vector<at::Tensor> attention_transfer_backward_cuda(const at::Tensor& grad, at::TensorList student,
                                                         const at::Tensor& saved, const at::Tensor& coeffs,
                                                         double p, const std::string& mode);
std::tuple<at::Tensor, at::Tensor> softmax_distillation_cuda(
    const at::Tensor& student, const at::Tensor& teacher, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& class_weights,
    int64_t ignore_index, double weight_ce, double weight_kl, double temperature, bool compute_grad);
std::tuple<at::Tensor, at::Tensor> self_distillation_cuda(const at::Tensor& student, const at::Tensor& teacher,
                                                          const at::Tensor& center, double student_temperature,
                                                          double teacher_temperature, bool compute_grad);
#endif

}  // namespace kdsleep
