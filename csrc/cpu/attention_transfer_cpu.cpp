// Attention-transfer loss over all layers on the CPU: one parallel pass over (layer, sample, chunk) work
// items for the forward, one for the backward. See kdsleep/ops/attention.py for the mathematics.
#include "../kdsleep_math.h"
#include "../kdsleep_ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace kdsleep {
namespace {

struct WorkItem {
  int64_t layer;
  int64_t sample;  // -1: every sample of the batch (joshi forward)
  int64_t begin;
  int64_t end;
};


// The hottest loops for float32 with p = 2, cloned for AVX2+FMA and chosen at load time, so a portable
// build still uses the wide vector units where they exist.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KDS_CPU_CLONES __attribute__((target_clones("avx2,fma", "default")))
#else
#define KDS_CPU_CLONES
#endif

KDS_CPU_CLONES void accumulate_square_f32(const float* __restrict__ row, float* __restrict__ acc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += row[i] * row[i];
}

KDS_CPU_CLONES void scale_by_f32(const float* __restrict__ row, const float* __restrict__ factor,
                                 float* __restrict__ out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = factor[i] * row[i];
}

// acc[i] (+)= sum_c |f[c, i]|^p for i < n; `f` points at (sample, channel 0, position begin).
template <typename scalar_t, typename acc_t, bool kP2>
void accumulate_map(const scalar_t* __restrict__ f, int64_t stride_c, int64_t stride_l, int64_t channels,
                    int64_t n, acc_t p, acc_t* __restrict__ acc) {
  std::fill(acc, acc + n, acc_t(0));
  for (int64_t c = 0; c < channels; ++c) {
    const scalar_t* __restrict__ row = f + c * stride_c;
    if constexpr (kP2 && std::is_same_v<scalar_t, float>) {
      if (stride_l == 1) {
        accumulate_square_f32(row, acc, n);
        continue;
      }
    }
    if (stride_l == 1) {
      for (int64_t i = 0; i < n; ++i) acc[i] += at_power<acc_t, kP2>(static_cast<acc_t>(row[i]), p);
    } else {
      for (int64_t i = 0; i < n; ++i) acc[i] += at_power<acc_t, kP2>(static_cast<acc_t>(row[i * stride_l]), p);
    }
  }
}

// Layout of `saved`: per layer map1 (B*L), map2 (B*L); the coefficients live in their own float64 tensor.
// Positions per work item for a layer: about the same number of feature elements in every item, so that
// the static split of at::parallel_for gives each thread an equal share (a fixed chunk left one thread
// with three quarters of a U-Time layer set, whose channel counts range from 5 to 512).
constexpr int64_t kItemElements = 32768;

int64_t chunk_length(int64_t channels) {
  return std::clamp<int64_t>(kItemElements / std::max<int64_t>(channels, 1), 64, 16384);
}

std::vector<WorkItem> per_sample_items(at::TensorList student, at::TensorList teacher = {}) {
  std::vector<WorkItem> items;
  const int64_t batch = student[0].size(0);
  for (size_t j = 0; j < student.size(); ++j) {
    const int64_t length = student[j].size(2);
    const int64_t channels = student[j].size(1) + (teacher.empty() ? 0 : teacher[j].size(1));
    const int64_t chunk = chunk_length(channels);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t l0 = 0; l0 < length; l0 += chunk)
        items.push_back({static_cast<int64_t>(j), b, l0, std::min(length, l0 + chunk)});
  }
  return items;
}

template <typename scalar_t, bool kP2>
void forward_impl(at::TensorList student, at::TensorList teacher, double p_in, at::ArrayRef<double> weights,
                  AtDistance distance, AtMode mode, double eps, at::Tensor& loss, at::Tensor& saved,
                  at::Tensor& coeff_tensor) {
  using acc_t = typename OpMath<scalar_t>::type;
  const acc_t p = static_cast<acc_t>(p_in);
  const int64_t batch = student[0].size(0);
  const int64_t n_layers = static_cast<int64_t>(student.size());
  acc_t* ws = saved.data_ptr<acc_t>();
  const auto offsets = at_map_offsets(student);

  std::vector<WorkItem> items;
  if (mode == AtMode::kCanonical) {
    items = per_sample_items(student, teacher);
  } else {
    // Batch-wise normalisation couples the samples at each position: an item holds every sample.
    for (int64_t j = 0; j < n_layers; ++j) {
      const int64_t chunk = chunk_length(batch * (student[j].size(1) + teacher[j].size(1)));
      for (int64_t l0 = 0; l0 < student[j].size(2); l0 += chunk)
        items.push_back({j, -1, l0, std::min(student[j].size(2), l0 + chunk)});
    }
  }
  std::vector<double> partial(items.size() * 3, 0.0);

  at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t first, int64_t last) {
    std::vector<double> col_s, col_t, col_qg;
    for (int64_t it = first; it < last; ++it) {
      const WorkItem w = items[it];
      const at::Tensor& s = student[w.layer];
      const at::Tensor& t = teacher[w.layer];
      const int64_t length = s.size(2);
      const int64_t n = w.end - w.begin;
      const scalar_t* sp = s.const_data_ptr<scalar_t>();
      const scalar_t* tp = t.const_data_ptr<scalar_t>();
      acc_t* map1 = ws + offsets[w.layer];
      acc_t* map2 = map1 + batch * length;
      if (mode == AtMode::kCanonical) {
        const int64_t b = w.sample;
        acc_t* a = map1 + b * length + w.begin;
        acc_t* c = map2 + b * length + w.begin;
        accumulate_map<scalar_t, acc_t, kP2>(sp + b * s.stride(0) + w.begin * s.stride(2), s.stride(1),
                                              s.stride(2), s.size(1), n, p, a);
        accumulate_map<scalar_t, acc_t, kP2>(tp + b * t.stride(0) + w.begin * t.stride(2), t.stride(1),
                                              t.stride(2), t.size(1), n, p, c);
        const acc_t inv_cs = acc_t(1) / static_cast<acc_t>(s.size(1));
        const acc_t inv_ct = acc_t(1) / static_cast<acc_t>(t.size(1));
        double ss = 0.0, tt = 0.0, st = 0.0;
#pragma omp simd reduction(+ : ss, tt, st)
        for (int64_t i = 0; i < n; ++i) {
          a[i] *= inv_cs;
          c[i] *= inv_ct;
          const double x = a[i], y = c[i];
          ss += x * x;
          tt += y * y;
          st += x * y;
        }
        partial[3 * it] = ss;
        partial[3 * it + 1] = tt;
        partial[3 * it + 2] = st;
      } else {
        col_s.assign(n, 0.0);
        col_t.assign(n, 0.0);
        col_qg.assign(n, 0.0);
        for (int64_t b = 0; b < batch; ++b) {
          acc_t* a = map1 + b * length + w.begin;
          acc_t* c = map2 + b * length + w.begin;
          accumulate_map<scalar_t, acc_t, kP2>(sp + b * s.stride(0) + w.begin * s.stride(2), s.stride(1),
                                                s.stride(2), s.size(1), n, p, a);
          accumulate_map<scalar_t, acc_t, kP2>(tp + b * t.stride(0) + w.begin * t.stride(2), t.stride(1),
                                                t.stride(2), t.size(1), n, p, c);
          for (int64_t i = 0; i < n; ++i) {
            col_s[i] += static_cast<double>(a[i]) * a[i];
            col_t[i] += static_cast<double>(c[i]) * c[i];
          }
        }
        for (int64_t i = 0; i < n; ++i) {
          col_s[i] = std::sqrt(col_s[i]);
          col_t[i] = std::sqrt(col_t[i]);
        }
        const double g_scale = weights[w.layer] / (static_cast<double>(batch) * static_cast<double>(length));
        double l1 = 0.0;
        for (int64_t b = 0; b < batch; ++b) {
          const acc_t* a = map1 + b * length + w.begin;
          const acc_t* c = map2 + b * length + w.begin;
          for (int64_t i = 0; i < n; ++i) {
            const double qs = a[i] / std::max(col_s[i], eps);
            const double qt = c[i] / std::max(col_t[i], eps);
            const double d = qs - qt;
            l1 += std::fabs(d);
            col_qg[i] += qs * g_scale * sign_of(d);
          }
        }
        // dloss/da of the batch-normalised L1 distance, stored in map1 for the backward.
        for (int64_t b = 0; b < batch; ++b) {
          acc_t* a = map1 + b * length + w.begin;
          const acc_t* c = map2 + b * length + w.begin;
          for (int64_t i = 0; i < n; ++i) {
            const double ns = std::max(col_s[i], eps);
            const double qs = a[i] / ns;
            const double g = g_scale * sign_of(qs - c[i] / std::max(col_t[i], eps));
            a[i] = static_cast<acc_t>(col_s[i] > eps ? (g - qs * col_qg[i]) / ns : g / eps);
          }
        }
        partial[3 * it] = l1;
      }
    }
  });

  // Combine the partial sums in a fixed order, so the result does not depend on the thread count.
  double total = 0.0;
  double* coeffs = coeff_tensor.data_ptr<double>();
  if (mode == AtMode::kCanonical) {
    size_t it = 0;
    for (int64_t j = 0; j < n_layers; ++j) {
      const int64_t length = student[j].size(2);
      for (int64_t b = 0; b < batch; ++b) {
        double ss = 0.0, tt = 0.0, st = 0.0;
        for (; it < items.size() && items[it].layer == j && items[it].sample == b; ++it) {
          ss += partial[3 * it];
          tt += partial[3 * it + 1];
          st += partial[3 * it + 2];
        }
        const AtRowResult r = at_canonical_row(ss, tt, st, weights[j], eps, batch, length, distance);
        total += r.loss;
        coeffs[2 * (j * batch + b)] = r.alpha;
        coeffs[2 * (j * batch + b) + 1] = r.beta;
      }
    }
  } else {
    std::vector<double> per_layer(n_layers, 0.0);
    for (size_t it = 0; it < items.size(); ++it) per_layer[items[it].layer] += partial[3 * it];
    for (int64_t j = 0; j < n_layers; ++j) {
      total += weights[j] * per_layer[j] /
               (static_cast<double>(batch) * static_cast<double>(student[j].size(2)));
      for (int64_t b = 0; b < batch; ++b) {
        coeffs[2 * (j * batch + b)] = 1.0;
        coeffs[2 * (j * batch + b) + 1] = 0.0;
      }
    }
  }
  *loss.data_ptr<acc_t>() = static_cast<acc_t>(total);
}

template <typename scalar_t, bool kP2>
void backward_impl(double grad_out, at::TensorList student, const at::Tensor& saved, const at::Tensor& coeff_tensor,
                   double p_in, AtMode mode, std::vector<at::Tensor>& grads) {
  using acc_t = typename OpMath<scalar_t>::type;
  const acc_t p = static_cast<acc_t>(p_in);
  const int64_t batch = student[0].size(0);
  const acc_t* ws = saved.const_data_ptr<acc_t>();
  const auto offsets = at_map_offsets(student);
  const auto items = per_sample_items(student);
  at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t first, int64_t last) {
    std::vector<acc_t> da;
    for (int64_t it = first; it < last; ++it) {
      const WorkItem w = items[it];
      const at::Tensor& s = student[w.layer];
      const int64_t length = s.size(2);
      const int64_t channels = s.size(1);
      const int64_t n = w.end - w.begin;
      da.resize(n);
      const double* coeffs = coeff_tensor.const_data_ptr<double>();
      const double alpha = coeffs[2 * (w.layer * batch + w.sample)];
      const double beta = coeffs[2 * (w.layer * batch + w.sample) + 1];
      const acc_t* m1 = ws + offsets[w.layer] + w.sample * length + w.begin;
      const acc_t* m2 = m1 + batch * length;
      // d|x|^p/dx = p sign(x)|x|^(p-1); canonical maps average over channels, joshi maps sum.
      const double scale = grad_out * p_in *
                           (mode == AtMode::kCanonical ? 1.0 / static_cast<double>(channels) : 1.0);
      if (beta == 0.0) {
        for (int64_t i = 0; i < n; ++i) da[i] = static_cast<acc_t>(alpha * m1[i] * scale);
      } else {
        for (int64_t i = 0; i < n; ++i) da[i] = static_cast<acc_t>((alpha * m1[i] + beta * m2[i]) * scale);
      }
      const scalar_t* sp = s.const_data_ptr<scalar_t>() + w.sample * s.stride(0) + w.begin * s.stride(2);
      scalar_t* gp = grads[w.layer].data_ptr<scalar_t>() + (w.sample * channels) * length + w.begin;
      const int64_t sc = s.stride(1), sl = s.stride(2);
      for (int64_t c = 0; c < channels; ++c) {
        const scalar_t* __restrict__ row = sp + c * sc;
        scalar_t* __restrict__ out = gp + c * length;
        if constexpr (kP2 && std::is_same_v<scalar_t, float>) {
          if (sl == 1) {
            scale_by_f32(row, da.data(), out, n);
            continue;
          }
        }
        if (sl == 1) {
          for (int64_t i = 0; i < n; ++i)
            out[i] = static_cast<scalar_t>(da[i] * at_power_grad<acc_t, kP2>(static_cast<acc_t>(row[i]), p));
        } else {
          for (int64_t i = 0; i < n; ++i)
            out[i] = static_cast<scalar_t>(da[i] *
                                           at_power_grad<acc_t, kP2>(static_cast<acc_t>(row[i * sl]), p));
        }
      }
    }
  });
}

at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_transfer_cpu(at::TensorList student,
                                                                      at::TensorList teacher, double p,
                                                                      at::ArrayRef<double> weights,
                                                                      const std::string& distance,
                                                                      const std::string& mode, double eps) {
  check_attention_transfer_inputs(student, teacher, p, weights, eps);
  const auto mode_e = static_cast<AtMode>(parse_at_mode(mode));
  const auto dist_e = static_cast<AtDistance>(parse_at_distance(distance));
  const auto opts = student[0].options().dtype(acc_dtype(student[0].scalar_type()));
  at::Tensor loss = at::empty({}, opts);
  at::Tensor saved = at::empty({at_saved_numel(student)}, opts);
  at::Tensor coeffs = at::empty({static_cast<int64_t>(student.size()), student[0].size(0), 2}, opts.dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student[0].scalar_type(), "attention_transfer_cpu",
                                  [&] {
                                    if (p == 2.0)
                                      forward_impl<scalar_t, true>(student, teacher, p, weights, dist_e, mode_e,
                                                                   eps, loss, saved, coeffs);
                                    else
                                      forward_impl<scalar_t, false>(student, teacher, p, weights, dist_e, mode_e,
                                                                    eps, loss, saved, coeffs);
                                  });
  return {loss, saved, coeffs};
}

std::vector<at::Tensor> attention_transfer_backward_cpu(const at::Tensor& grad, at::TensorList student,
                                                        const at::Tensor& saved, const at::Tensor& coeffs,
                                                        double p, const std::string& mode) {
  check_attention_transfer_backward_inputs(grad, student, saved, coeffs);
  const auto mode_e = static_cast<AtMode>(parse_at_mode(mode));
  const double grad_out = grad.item<double>();
  std::vector<at::Tensor> grads;
  grads.reserve(student.size());
  for (const auto& s : student) grads.push_back(at::empty(s.sizes(), s.options()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student[0].scalar_type(),
                                  "attention_transfer_backward_cpu", [&] {
                                    if (p == 2.0)
                                      backward_impl<scalar_t, true>(grad_out, student, saved, coeffs, p, mode_e, grads);
                                    else
                                      backward_impl<scalar_t, false>(grad_out, student, saved, coeffs, p, mode_e, grads);
                                  });
  return grads;
}

}  // namespace kdsleep
