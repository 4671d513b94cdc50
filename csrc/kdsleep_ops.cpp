// Registers the kdsleep operators with PyTorch's dispatcher, and their autograd in C++. This is the only
// translation unit that sees Python.h; importing `kdsleep._C` loads the library and runs the registrations
// below.
//
// Autograd lives here (kernels at the Autograd dispatch key, as torchvision's ops do) rather than in Python
// (torch.library.register_autograd), so a call with gradients crosses no Python autograd.Function: the
// per-call overhead that dominated `distillation_loss` at the paper's 12 x 35 rows. The fake kernels stay
// in Python (kdsleep/ops/*.py) for torch.compile.
#include <Python.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "kdsleep_ops.h"

extern "C" {
// An empty module: importing it loads this shared library, whose static initialisers register the ops.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "kdsleep compiled kernels", -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace kdsleep {
namespace {

std::string build_info() {
  std::string info = "cpu";
#ifdef KDSLEEP_WITH_CUDA
  info += ",cuda";
#endif
#ifdef KDSLEEP_CUDA_ARCH_LIST
  info += ";cuda_arch=" KDSLEEP_CUDA_ARCH_LIST;
#endif
#ifdef KDSLEEP_TORCH_VERSION
  info += ";torch=" KDSLEEP_TORCH_VERSION;
#endif
  return info;
}

// The dispatcher passes `str` arguments as string views; the kernels take std::string.
template <auto kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> at_forward(at::TensorList student, at::TensorList teacher, double p,
                                              at::ArrayRef<double> weights, c10::string_view distance,
                                              c10::string_view mode, double eps) {
  return kernel(student, teacher, p, weights, std::string(distance), std::string(mode), eps);
}

template <auto kernel>
std::vector<at::Tensor> at_backward(const at::Tensor& grad, at::TensorList student, const at::Tensor& saved,
                                    const at::Tensor& coeffs, double p, c10::string_view mode) {
  return kernel(grad, student, saved, coeffs, p, std::string(mode));
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Identity whose backward refuses: the fused losses give first derivatives only. Applied to the gradients
// a backward returns when it runs with create_graph=True. Where those gradients depend on something that
// requires grad (attention transfer: the student; softmax / DINO: an incoming gradient that requires grad),
// a second backward then fails clearly instead of treating the fused gradient as a constant; otherwise they
// carry no graph and PyTorch itself refuses to differentiate them.
struct NoDoubleBackward : public torch::autograd::Function<NoDoubleBackward> {
  static variable_list forward(AutogradContext* ctx, at::TensorList grads, std::string op) {
    ctx->saved_data["op"] = op;
    return variable_list(grads.begin(), grads.end());
  }
  static variable_list backward(AutogradContext* ctx, variable_list) {
    TORCH_CHECK_NOT_IMPLEMENTED(false, "kdsleep ", ctx->saved_data["op"].toStringRef(),
                                " does not support double backward (create_graph=True); use "
                                "kdsleep.ops.reference for higher-order gradients");
  }
};

variable_list guard_double_backward(variable_list grads, const char* op) {
  if (!at::GradMode::is_enabled()) return grads;
  return NoDoubleBackward::apply(at::TensorList(grads), std::string(op));
}

using AtForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(at::TensorList, at::TensorList, double,
                                                                    at::ArrayRef<double>, c10::string_view,
                                                                    c10::string_view, double);
using AtBackwardSig = std::vector<at::Tensor>(const at::Tensor&, at::TensorList, const at::Tensor&,
                                              const at::Tensor&, double, c10::string_view);
using SdSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                 const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                                                 const std::optional<at::Tensor>&, int64_t, double, double, double,
                                                 bool);
using DinoSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                                   double, bool);

template <typename Sig>
c10::TypedOperatorHandle<Sig> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

struct AttentionTransferFunction : public torch::autograd::Function<AttentionTransferFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList student, at::TensorList teacher, double p,
                               at::ArrayRef<double> weights, c10::string_view distance, c10::string_view mode,
                               double eps) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<AtForwardSig>("kdsleep::attention_transfer");
    auto [loss, saved, coeffs] = op.call(student, teacher, p, weights, distance, mode, eps);
    variable_list to_save{saved, coeffs};
    to_save.insert(to_save.end(), student.begin(), student.end());
    ctx->save_for_backward(to_save);
    ctx->saved_data["p"] = p;
    ctx->saved_data["mode"] = std::string(mode);
    ctx->saved_data["n_teacher"] = static_cast<int64_t>(teacher.size());
    ctx->mark_non_differentiable({saved, coeffs});
    return {loss, saved, coeffs};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static const auto op = op_handle<AtBackwardSig>("kdsleep::attention_transfer_backward");
    const auto saved_vars = ctx->get_saved_variables();
    const std::vector<at::Tensor> student(saved_vars.begin() + 2, saved_vars.end());
    const std::string mode = ctx->saved_data["mode"].toStringRef();
    // grad_outputs are materialised: an unused loss arrives as a zero tensor
    variable_list grads = op.call(grad_outputs[0], student, saved_vars[0], saved_vars[1], ctx->saved_data["p"].toDouble(), mode);
    grads = guard_double_backward(std::move(grads), "attention_transfer_loss");
    // one entry per forward input: each student and teacher tensor, then p, weights, distance, mode, eps
    grads.resize(student.size() + static_cast<size_t>(ctx->saved_data["n_teacher"].toInt()) + 5);
    return grads;
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_transfer_autograd(
    at::TensorList student, at::TensorList teacher, double p, at::ArrayRef<double> weights,
    c10::string_view distance, c10::string_view mode, double eps) {
  auto out = AttentionTransferFunction::apply(student, teacher, p, weights, distance, mode, eps);
  return {out[0], out[1], out[2]};
}

// The softmax and DINO ops return (loss, dloss/dstudent): the backward only scales the saved gradient.
at::Tensor scaled_gradient(AutogradContext* ctx, const variable_list& grad_outputs, const char* op) {
  const at::Tensor grad = ctx->get_saved_variables()[0];
  TORCH_CHECK(!(grad.dim() == 1 && grad.sym_numel() == 0), "kdsleep::", op,
              " was called with compute_grad=False; call it through kdsleep.ops, which requests the gradient "
              "when it is needed");
  return at::mul(grad, grad_outputs[0].to(grad.scalar_type()));
}

struct SoftmaxDistillationFunction : public torch::autograd::Function<SoftmaxDistillationFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& student, const at::Tensor& teacher,
                               const std::optional<at::Tensor>& labels, const std::optional<at::Tensor>& mask,
                               const std::optional<at::Tensor>& class_weights, int64_t ignore_index,
                               double weight_ce, double weight_kl, double temperature, bool compute_grad) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<SdSig>("kdsleep::softmax_distillation");
    auto [loss, grad] = op.call(student, teacher, labels, mask, class_weights, ignore_index, weight_ce, weight_kl,
                                temperature, compute_grad);
    ctx->save_for_backward({grad});
    ctx->mark_non_differentiable({grad});
    return {loss, grad};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list grads{scaled_gradient(ctx, grad_outputs, "softmax_distillation")};
    grads = guard_double_backward(std::move(grads), "distillation_loss");
    grads.resize(10);  // student, then no gradient for the teacher, labels, mask, weights and scalars
    return grads;
  }
};

std::tuple<at::Tensor, at::Tensor> softmax_distillation_autograd(
    const at::Tensor& student, const at::Tensor& teacher, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& class_weights, int64_t ignore_index,
    double weight_ce, double weight_kl, double temperature, bool compute_grad) {
  auto out = SoftmaxDistillationFunction::apply(student, teacher, labels, mask, class_weights, ignore_index,
                                                weight_ce, weight_kl, temperature, compute_grad);
  return {out[0], out[1]};
}

struct SelfDistillationFunction : public torch::autograd::Function<SelfDistillationFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& student, const at::Tensor& teacher,
                               const at::Tensor& center, double student_temperature, double teacher_temperature,
                               bool compute_grad) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto op = op_handle<DinoSig>("kdsleep::self_distillation");
    auto [loss, grad] = op.call(student, teacher, center, student_temperature, teacher_temperature, compute_grad);
    ctx->save_for_backward({grad});
    ctx->mark_non_differentiable({grad});
    return {loss, grad};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list grads{scaled_gradient(ctx, grad_outputs, "self_distillation")};
    grads = guard_double_backward(std::move(grads), "self_distillation_loss");
    grads.resize(6);
    return grads;
  }
};

std::tuple<at::Tensor, at::Tensor> self_distillation_autograd(const at::Tensor& student, const at::Tensor& teacher,
                                                              const at::Tensor& center, double student_temperature,
                                                              double teacher_temperature, bool compute_grad) {
  auto out = SelfDistillationFunction::apply(student, teacher, center, student_temperature, teacher_temperature,
                                             compute_grad);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace kdsleep

TORCH_LIBRARY(kdsleep, m) {
  m.def(
      "attention_transfer(Tensor[] student, Tensor[] teacher, float p, float[] weights, str distance, "
      "str mode, float eps) -> (Tensor, Tensor, Tensor)");
  m.def(
      "attention_transfer_backward(Tensor grad, Tensor[] student, Tensor saved, Tensor coeffs, float p, str mode) "
      "-> Tensor[]");
  m.def(
      "softmax_distillation(Tensor student, Tensor teacher, Tensor? labels, Tensor? mask, Tensor? class_weights, "
      "int ignore_index, float weight_ce, float weight_kl, float temperature, bool compute_grad) "
      "-> (Tensor, Tensor)");
  m.def(
      "self_distillation(Tensor student, Tensor teacher, Tensor center, float student_temperature, "
      "float teacher_temperature, bool compute_grad) -> (Tensor, Tensor)");
  m.def("build_info() -> str", &kdsleep::build_info);
}

TORCH_LIBRARY_IMPL(kdsleep, CPU, m) {
  m.impl("attention_transfer", &kdsleep::at_forward<kdsleep::attention_transfer_cpu>);
  m.impl("attention_transfer_backward", &kdsleep::at_backward<kdsleep::attention_transfer_backward_cpu>);
  m.impl("softmax_distillation", &kdsleep::softmax_distillation_cpu);
  m.impl("self_distillation", &kdsleep::self_distillation_cpu);
}

#ifdef KDSLEEP_WITH_CUDA
TORCH_LIBRARY_IMPL(kdsleep, CUDA, m) {
  m.impl("attention_transfer", &kdsleep::at_forward<kdsleep::attention_transfer_cuda>);
  m.impl("attention_transfer_backward", &kdsleep::at_backward<kdsleep::attention_transfer_backward_cuda>);
  m.impl("softmax_distillation", &kdsleep::softmax_distillation_cuda);
  m.impl("self_distillation", &kdsleep::self_distillation_cuda);
}
#endif

TORCH_LIBRARY_IMPL(kdsleep, Autograd, m) {
  m.impl("attention_transfer", &kdsleep::attention_transfer_autograd);
  m.impl("softmax_distillation", &kdsleep::softmax_distillation_autograd);
  m.impl("self_distillation", &kdsleep::self_distillation_autograd);
}
