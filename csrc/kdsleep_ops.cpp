// Registers the kdsleep operators with PyTorch's dispatcher. This is the only translation unit that sees
// Python.h; importing `kdsleep._C` loads the library and runs the registrations below.
#include <Python.h>
#include <torch/library.h>

#include <string>

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
std::tuple<at::Tensor, at::Tensor> at_forward(at::TensorList student, at::TensorList teacher, double p,
                                              at::ArrayRef<double> weights, c10::string_view distance,
                                              c10::string_view mode, double eps) {
  return kernel(student, teacher, p, weights, std::string(distance), std::string(mode), eps);
}

template <auto kernel>
std::vector<at::Tensor> at_backward(const at::Tensor& grad, at::TensorList student, const at::Tensor& saved,
                                    double p, c10::string_view mode) {
  return kernel(grad, student, saved, p, std::string(mode));
}

}  // namespace
}  // namespace kdsleep

TORCH_LIBRARY(kdsleep, m) {
  m.def(
      "attention_transfer(Tensor[] student, Tensor[] teacher, float p, float[] weights, str distance, "
      "str mode, float eps) -> (Tensor, Tensor)");
  m.def("attention_transfer_backward(Tensor grad, Tensor[] student, Tensor saved, float p, str mode) -> Tensor[]");
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
