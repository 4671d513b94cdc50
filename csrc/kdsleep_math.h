// Scalar mathematics shared by the CPU and CUDA kernels of kdsleep.
//
// Keeping the formulas in one place means the CPU tests also check the arithmetic the CUDA kernels use.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define KDS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define KDS_HOST_DEVICE inline
#endif

namespace kdsleep {

// Accumulation type: float for half, bfloat16 and float inputs, double for double.
template <typename T>
struct OpMath {
  using type = float;
};
template <>
struct OpMath<double> {
  using type = double;
};

// Rows of logits as a (B, K, E) strided view; (N, K) inputs are (N, K, 1). Row r is (r / E, r % E).
struct RowView {
  int64_t n_epochs, stride_b, stride_k, stride_e;
  KDS_HOST_DEVICE int64_t offset(int64_t row) const {
    return (row / n_epochs) * stride_b + (row % n_epochs) * stride_e;
  }
};

// Modes of the attention-transfer loss (the Python layer passes strings; the kernels use these).
enum class AtMode : int { kCanonical = 0, kJoshi = 1 };
enum class AtDistance : int { kSquared = 0, kL2 = 1 };

// |x|^p, the summand of an attention map.
template <typename acc_t, bool kP2>
KDS_HOST_DEVICE acc_t at_power(acc_t x, acc_t p) {
  if constexpr (kP2) {
    return x * x;
  } else {
    return std::pow(std::fabs(x), p);
  }
}

// d|x|^p / dx divided by p (the factor p is folded into the per-layer scale): sign(x) |x|^(p-1).
template <typename acc_t, bool kP2>
KDS_HOST_DEVICE acc_t at_power_grad(acc_t x, acc_t p) {
  if constexpr (kP2) {
    return x;
  } else {
    if (x == acc_t(0)) return acc_t(0);
    const acc_t m = std::pow(std::fabs(x), p - acc_t(1));
    return x > acc_t(0) ? m : -m;
  }
}

// Per-sample (canonical) attention-transfer loss term and gradient coefficients.
//
// With a = attention map of the student row, b = that of the teacher row (length L), the three sums
// ss = sum a^2, tt = sum b^2, st = sum a b determine everything:
//   u = a / max(|a|, eps), v = b / max(|b|, eps),  d^2 = |u - v|^2,
//   squared: loss = w d^2 / (B L);   l2: loss = w d / B,
// and dloss/da = alpha * a + beta * b with alpha, beta given below (derivation in kdsleep/ops/attention.py).
struct AtRowResult {
  double loss;
  double alpha;
  double beta;
};

KDS_HOST_DEVICE AtRowResult at_canonical_row(double ss, double tt, double st, double weight, double eps,
                                             int64_t batch, int64_t length, AtDistance distance) {
  const double norm_s = std::sqrt(ss);
  const double norm_t = std::sqrt(tt);
  const double ns = norm_s > eps ? norm_s : eps;
  const double nt = norm_t > eps ? norm_t : eps;
  const double uu = ss / (ns * ns);
  const double vv = tt / (nt * nt);
  const double uv = st / (ns * nt);
  double d2 = uu + vv - 2.0 * uv;
  if (d2 < 0.0) d2 = 0.0;
  AtRowResult r;
  double c;
  if (distance == AtDistance::kSquared) {
    const double denom = static_cast<double>(batch) * static_cast<double>(length);
    r.loss = weight * d2 / denom;
    c = 2.0 * weight / denom;
  } else {
    const double d = std::sqrt(d2);
    r.loss = weight * d / static_cast<double>(batch);
    c = d > 0.0 ? weight / (static_cast<double>(batch) * d) : 0.0;
  }
  // Projection term of the normalisation's Jacobian; absent when the norm is clamped at eps.
  const double k = norm_s > eps ? (uu - uv) : 0.0;
  r.alpha = c * (1.0 - k) / (ns * ns);
  r.beta = -c / (ns * nt);
  return r;
}

// Numerically stable log-sum-exp pieces for one row of logits divided by a temperature.
template <typename acc_t>
KDS_HOST_DEVICE acc_t sign_of(acc_t x) {
  return x > acc_t(0) ? acc_t(1) : (x < acc_t(0) ? acc_t(-1) : acc_t(0));
}

}  // namespace kdsleep
