// Input validation shared by every device's kernels. The Python layer validates first with friendlier
// messages; these checks keep direct calls of torch.ops.kdsleep.* safe.
#include "kdsleep_ops.h"

#include "kdsleep_math.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace kdsleep {

namespace {
bool supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}
}  // namespace

int parse_at_mode(const std::string& mode) {
  if (mode == "canonical") return 0;
  if (mode == "joshi") return 1;
  TORCH_CHECK(false, "attention_transfer: mode must be 'canonical' or 'joshi', got '", mode, "'");
}

int parse_at_distance(const std::string& distance) {
  if (distance == "squared") return 0;
  if (distance == "l2") return 1;
  TORCH_CHECK(false, "attention_transfer: distance must be 'squared' or 'l2', got '", distance, "'");
}

void check_attention_transfer_inputs(at::TensorList student, at::TensorList teacher, double p,
                                     at::ArrayRef<double> weights, double eps) {
  TORCH_CHECK(!student.empty(), "attention_transfer: the list of student feature maps is empty");
  TORCH_CHECK(student.size() == teacher.size(), "attention_transfer: ", student.size(),
              " student feature maps but ", teacher.size(), " teacher feature maps");
  TORCH_CHECK(weights.size() == student.size(), "attention_transfer: ", weights.size(),
              " layer weights for ", student.size(), " layers");
  TORCH_CHECK(std::isfinite(p) && p >= 1.0, "attention_transfer: p must be a finite number >= 1, got ", p);
  TORCH_CHECK(std::isfinite(eps) && eps > 0.0, "attention_transfer: eps must be > 0, got ", eps);
  const auto dtype = student[0].scalar_type();
  const auto device = student[0].device();
  TORCH_CHECK(supported_float(dtype), "attention_transfer: feature maps must be float16, bfloat16, float32 or "
              "float64, got ", dtype);
  TORCH_CHECK(student[0].dim() == 3, "attention_transfer: student layer 0 must be (B, C, L), got ",
              student[0].dim(), " dimensions");
  const int64_t batch = student[0].size(0);
  TORCH_CHECK(batch > 0, "attention_transfer: the batch is empty");
  for (size_t j = 0; j < student.size(); ++j) {
    for (int side = 0; side < 2; ++side) {
      const at::Tensor& f = side == 0 ? student[j] : teacher[j];
      const char* who = side == 0 ? "student" : "teacher";
      TORCH_CHECK(f.dim() == 3, "attention_transfer: ", who, " layer ", j, " must be (B, C, L), got ", f.dim(),
                  " dimensions");
      TORCH_CHECK(f.scalar_type() == dtype, "attention_transfer: ", who, " layer ", j, " has dtype ",
                  f.scalar_type(), " but student layer 0 has ", dtype);
      TORCH_CHECK(f.device() == device, "attention_transfer: ", who, " layer ", j, " is on ", f.device(),
                  " but student layer 0 is on ", device);
      TORCH_CHECK(f.size(0) == batch, "attention_transfer: ", who, " layer ", j, " has batch ", f.size(0),
                  ", expected ", batch);
      TORCH_CHECK(f.size(1) > 0 && f.size(2) > 0, "attention_transfer: ", who, " layer ", j,
                  " has an empty channel or length dimension: ", f.sizes());
    }
    TORCH_CHECK(student[j].size(2) == teacher[j].size(2), "attention_transfer: layer ", j,
                " lengths differ: student L=", student[j].size(2), ", teacher L=", teacher[j].size(2));
    TORCH_CHECK(std::isfinite(weights[j]), "attention_transfer: weight of layer ", j, " is not finite");
  }
}

int64_t at_saved_numel(at::TensorList student) {
  const int64_t batch = student[0].size(0);
  int64_t n = 0;
  for (const auto& s : student) n += 2 * batch * s.size(2);
  return n;
}

std::vector<int64_t> at_map_offsets(at::TensorList student) {
  const int64_t batch = student[0].size(0);
  std::vector<int64_t> offsets(student.size());
  int64_t off = 0;
  for (size_t j = 0; j < student.size(); ++j) {
    offsets[j] = off;
    off += 2 * batch * student[j].size(2);
  }
  return offsets;
}

void check_attention_transfer_backward_inputs(const at::Tensor& grad, at::TensorList student,
                                              const at::Tensor& saved, const at::Tensor& coeffs) {
  TORCH_CHECK(!student.empty(), "attention_transfer_backward: no student feature maps");
  const auto dtype = student[0].scalar_type();
  const auto device = student[0].device();
  TORCH_CHECK(supported_float(dtype), "attention_transfer_backward: feature maps must be floating point, got ",
              dtype);
  TORCH_CHECK(student[0].dim() == 3, "attention_transfer_backward: student layer 0 must be (B, C, L), got ",
              student[0].dim(), " dimensions");
  const int64_t batch = student[0].size(0);
  TORCH_CHECK(batch > 0, "attention_transfer_backward: the batch is empty");
  for (size_t j = 0; j < student.size(); ++j) {
    const at::Tensor& s = student[j];
    TORCH_CHECK(s.dim() == 3, "attention_transfer_backward: student layer ", j, " must be (B, C, L), got ",
                s.dim(), " dimensions");
    TORCH_CHECK(s.scalar_type() == dtype, "attention_transfer_backward: student layer ", j, " has dtype ",
                s.scalar_type(), " but layer 0 has ", dtype);
    TORCH_CHECK(s.device() == device, "attention_transfer_backward: student layer ", j, " is on ", s.device(),
                " but layer 0 is on ", device);
    TORCH_CHECK(s.size(0) == batch && s.size(1) > 0 && s.size(2) > 0, "attention_transfer_backward: student layer ",
                j, " has shape ", s.sizes(), "; expected batch ", batch, " and non-empty channels and length");
    TORCH_CHECK(s.size(1) <= std::numeric_limits<int32_t>::max(), "attention_transfer_backward: student layer ",
                j, " has too many channels");
  }
  const auto acc = dtype == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(saved.dim() == 1 && saved.numel() == at_saved_numel(student) && saved.is_contiguous() &&
                  saved.scalar_type() == acc && saved.device() == device,
              "attention_transfer_backward: the saved maps (", saved.scalar_type(), ", ", saved.sizes(),
              ") do not match the student feature maps (expected ", acc, ", ", at_saved_numel(student),
              " contiguous values on ", device, ")");
  const int64_t n_coeffs = 2 * static_cast<int64_t>(student.size()) * batch;
  TORCH_CHECK(coeffs.scalar_type() == at::kDouble && coeffs.numel() == n_coeffs && coeffs.is_contiguous() &&
                  coeffs.device() == device,
              "attention_transfer_backward: the coefficients (", coeffs.scalar_type(), ", ", coeffs.sizes(),
              ") must be ", n_coeffs, " contiguous float64 values on ", device);
  TORCH_CHECK(grad.numel() == 1, "attention_transfer_backward: the loss gradient must be a scalar");
}

RowView row_view(const at::Tensor& x) {
  if (x.dim() == 2) return {1, x.stride(0), x.stride(1), 0};
  return {x.size(2), x.stride(0), x.stride(1), x.stride(2)};
}

std::pair<int64_t, int64_t> check_softmax_distillation_inputs(
    const at::Tensor& student, const at::Tensor& teacher, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& class_weights,
    double temperature) {
  TORCH_CHECK(student.dim() == 2 || student.dim() == 3,
              "softmax_distillation: student logits must be (N, K) or (B, K, n_epochs), got ", student.sizes());
  TORCH_CHECK(student.sizes() == teacher.sizes(), "softmax_distillation: student logits ", student.sizes(),
              " and teacher logits ", teacher.sizes(), " differ in shape");
  TORCH_CHECK(supported_float(student.scalar_type()),
              "softmax_distillation: logits must be floating point, got ", student.scalar_type());
  TORCH_CHECK(teacher.scalar_type() == student.scalar_type(), "softmax_distillation: teacher dtype ",
              teacher.scalar_type(), " differs from student dtype ", student.scalar_type());
  TORCH_CHECK(teacher.device() == student.device(), "softmax_distillation: teacher on ", teacher.device(),
              ", student on ", student.device());
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0.0,
              "softmax_distillation: temperature must be > 0, got ", temperature);
  const int64_t classes = student.size(1);
  TORCH_CHECK(classes > 0, "softmax_distillation: no classes");
  const int64_t rows = student.dim() == 2 ? student.size(0) : student.size(0) * student.size(2);
  if (labels.has_value()) {
    const auto& y = *labels;
    TORCH_CHECK(y.scalar_type() == at::kLong || y.scalar_type() == at::kInt,
                "softmax_distillation: labels must be int64 or int32, got ", y.scalar_type());
    TORCH_CHECK(y.numel() == rows, "softmax_distillation: ", y.numel(), " labels for ", rows, " rows");
    TORCH_CHECK(y.device() == student.device(), "softmax_distillation: labels on ", y.device());
  }
  if (mask.has_value()) {
    const auto& m = *mask;
    TORCH_CHECK(m.scalar_type() == at::kBool, "softmax_distillation: mask must be bool, got ", m.scalar_type());
    TORCH_CHECK(m.numel() == rows, "softmax_distillation: mask has ", m.numel(), " entries for ", rows, " rows");
    TORCH_CHECK(m.device() == student.device(), "softmax_distillation: mask on ", m.device());
  }
  if (class_weights.has_value()) {
    const auto& w = *class_weights;
    TORCH_CHECK(w.dim() == 1 && w.size(0) == classes, "softmax_distillation: class_weights must have shape (",
                classes, ",), got ", w.sizes());
    TORCH_CHECK(w.device() == student.device(), "softmax_distillation: class_weights on ", w.device());
  }
  return {rows, classes};
}

std::tuple<int64_t, int64_t, int64_t, int64_t> check_self_distillation_inputs(const at::Tensor& student,
                                                                              const at::Tensor& teacher,
                                                                              const at::Tensor& center,
                                                                              double student_temperature,
                                                                              double teacher_temperature) {
  TORCH_CHECK(student.dim() == 3 && teacher.dim() == 3,
              "self_distillation: student and teacher outputs must be (views, N, K), got ", student.sizes(), " and ",
              teacher.sizes());
  TORCH_CHECK(student.size(1) == teacher.size(1) && student.size(2) == teacher.size(2),
              "self_distillation: student ", student.sizes(), " and teacher ", teacher.sizes(),
              " differ in rows or classes");
  TORCH_CHECK(supported_float(student.scalar_type()) && teacher.scalar_type() == student.scalar_type(),
              "self_distillation: outputs must share one floating dtype, got ", student.scalar_type(), " and ",
              teacher.scalar_type());
  TORCH_CHECK(teacher.device() == student.device() && center.device() == student.device(),
              "self_distillation: student, teacher and center must be on one device");
  TORCH_CHECK(center.dim() == 1 && center.size(0) == student.size(2), "self_distillation: center must be (",
              student.size(2), ",), got ", center.sizes());
  TORCH_CHECK(student.size(0) >= 1 && teacher.size(0) >= 1 && student.size(0) <= 64 && teacher.size(0) <= 64,
              "self_distillation: between 1 and 64 views each, got ", student.size(0), " student and ",
              teacher.size(0), " teacher views");
  TORCH_CHECK(student.size(0) * teacher.size(0) > std::min(student.size(0), teacher.size(0)),
              "self_distillation: no (teacher view, other student view) pair: use at least two views");
  TORCH_CHECK(std::isfinite(student_temperature) && student_temperature > 0.0 &&
                  std::isfinite(teacher_temperature) && teacher_temperature > 0.0,
              "self_distillation: temperatures must be > 0, got ", student_temperature, " and ",
              teacher_temperature);
  return {student.size(0), teacher.size(0), student.size(1), student.size(2)};
}

}  // namespace kdsleep
