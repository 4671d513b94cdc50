// Attention-transfer loss over all layers on CUDA.
//
// Forward: ONE launch covers every layer (up to kMaxLayers; more are split into groups whose losses are
// added). Per-layer metadata is passed by value, as PyTorch's multi-tensor kernels do. Each block reduces a
// tile of positions of one (layer, sample) row to three fp64 sums (sum a_s^2, sum a_t^2, sum a_s a_t, see
// kdsleep_math.h), accumulated with atomics; the last block to finish turns them into the loss and into the
// two float64 coefficients per row (their own tensor) from which the backward builds the gradient. The
// attention maps are kept in the saved workspace so the backward reads the student features once and writes
// their gradient once.
//
// Work is sized by elements, not positions: a layer's channels are split across `groups` groups of warps
// (1 to 8), each summing |x|^p over its share of the channels for the same positions, and the groups' partial
// maps are added in shared memory. Deep, short layers (the bottleneck: 512 + 512 channels, L = 70) thus use
// every warp of a block instead of leaving 70 threads with 1024 loads each.
//
// mode="joshi" normalises across the batch at each position instead, so a block there covers every sample
// of its chunk and stores dloss/da directly.
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
#include <vector>

namespace kdsleep {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 4;                         // positions per thread
constexpr int kChunk = kThreads * kItems;         // positions per block with one channel group
constexpr int kMaxGroups = 8;                     // channel groups per block (one warp each at most 8)
constexpr int kMaxLayers = 32;                    // keeps the by-value metadata under 4 KB
constexpr int64_t kTargetElements = 1 << 18;      // feature elements per block above which channels split
static_assert(kThreads % 32 == 0, "the block reductions assume whole warps");
static_assert(kThreads % (32 * kMaxGroups) == 0, "a channel group must be whole warps");

struct LayerMeta {
  const void* s;
  const void* t;
  void* grad;
  int64_t s_sb, s_sc, s_sl;
  int64_t t_sb, t_sc, t_sl;
  int64_t length;
  int64_t map_offset;  // first element of this layer's maps in the saved workspace
  int32_t cs, ct;
  int32_t groups;       // channel groups; a block covers kChunk / groups positions
  int32_t chunks;       // tiles of positions per row
  int32_t block_begin;  // first block of this layer in the launch
  int32_t layer;        // index among all layers of the call
  double weight;        // the caller's weight, in full precision
};

struct LaunchMeta {
  LayerMeta layers[kMaxLayers];
  int32_t n_layers;
};
static_assert(sizeof(LaunchMeta) <= 4096, "kernel arguments are limited to 4 KB");

// Channel groups for a layer: split the channels across warps while a tile would be mostly past the end of
// the row, or would hold more than kTargetElements feature elements, and each group keeps >= 1 channel.
int choose_groups(int64_t cs, int64_t ct, int64_t length) {
  int groups = 1;
  while (groups < kMaxGroups && 2 * groups <= std::max(cs, ct)) {
    const int64_t positions = kChunk / groups;
    if (positions / 2 >= length || (cs + ct) * positions > kTargetElements) {
      groups *= 2;
    } else {
      break;
    }
  }
  return groups;
}

__device__ __forceinline__ int find_layer(const LaunchMeta& meta, int block) {
  int li = 0;
  while (li + 1 < meta.n_layers && block >= meta.layers[li + 1].block_begin) ++li;
  return li;
}

// a[i] = sum over this group's channels (group, group + groups, ...) of |f[c, l_i]|^p for the thread's
// kItems positions l_i = l0 + i * gsize + r (zero where out of range).
template <typename scalar_t, typename acc_t, bool kP2>
__device__ __forceinline__ void attention_values(const scalar_t* __restrict__ f, int64_t sc, int64_t sl,
                                                 int channels, int group, int groups, int64_t l0, int gsize,
                                                 int r, int64_t length, acc_t p, acc_t (&a)[kItems]) {
#pragma unroll
  for (int i = 0; i < kItems; ++i) a[i] = acc_t(0);
#pragma unroll 2
  for (int c = group; c < channels; c += groups) {
    const scalar_t* row = f + c * sc;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int64_t l = l0 + i * gsize + r;
      if (l < length) a[i] += at_power<acc_t, kP2>(static_cast<acc_t>(row[l * sl]), p);
    }
  }
}

template <typename scalar_t, typename acc_t, bool kP2>
__global__ void __launch_bounds__(kThreads)
    at_forward_kernel(const LaunchMeta meta, int64_t batch, acc_t p, int mode, int distance, double eps,
                      acc_t* __restrict__ ws, double* __restrict__ coeffs, double* __restrict__ sums,
                      unsigned int* counter, acc_t* __restrict__ loss_out) {
  const int li = find_layer(meta, blockIdx.x);
  const LayerMeta& L = meta.layers[li];
  const int64_t local = blockIdx.x - L.block_begin;
  const int64_t length = L.length;
  acc_t* map1 = ws + L.map_offset;
  acc_t* map2 = map1 + batch * length;
  const scalar_t* S = static_cast<const scalar_t*>(L.s);
  const scalar_t* T = static_cast<const scalar_t*>(L.t);

  if (static_cast<AtMode>(mode) == AtMode::kCanonical) {
    // Tile: `groups` groups of gsize threads; group g sums channels g, g + groups, ... for P positions.
    __shared__ acc_t part_s[kChunk], part_t[kChunk];  // [group][position in the tile]
    const int groups = L.groups;
    const int gsize = kThreads / groups;
    const int64_t tile = static_cast<int64_t>(gsize) * kItems;
    const int group = threadIdx.x / gsize, r = threadIdx.x % gsize;
    const int64_t b = local / L.chunks;
    const int64_t l0 = (local % L.chunks) * tile;
    acc_t a[kItems], c[kItems];
    attention_values<scalar_t, acc_t, kP2>(S + b * L.s_sb, L.s_sc, L.s_sl, L.cs, group, groups, l0, gsize, r,
                                           length, p, a);
    attention_values<scalar_t, acc_t, kP2>(T + b * L.t_sb, L.t_sc, L.t_sl, L.ct, group, groups, l0, gsize, r,
                                           length, p, c);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      part_s[group * tile + i * gsize + r] = a[i];
      part_t[group * tile + i * gsize + r] = c[i];
    }
    __syncthreads();
    const acc_t inv_cs = acc_t(1) / static_cast<acc_t>(L.cs);
    const acc_t inv_ct = acc_t(1) / static_cast<acc_t>(L.ct);
    double v[3] = {0.0, 0.0, 0.0};
    for (int64_t pos = threadIdx.x; pos < tile; pos += kThreads) {
      const int64_t l = l0 + pos;
      if (l < length) {
        acc_t sum_s = 0, sum_t = 0;
        for (int g = 0; g < groups; ++g) {
          sum_s += part_s[g * tile + pos];
          sum_t += part_t[g * tile + pos];
        }
        const acc_t x = sum_s * inv_cs, y = sum_t * inv_ct;
        map1[b * length + l] = x;
        map2[b * length + l] = y;
        v[0] += static_cast<double>(x) * x;
        v[1] += static_cast<double>(y) * y;
        v[2] += static_cast<double>(x) * y;
      }
    }
    cuda_utils::block_sum<3>(v);
    if (threadIdx.x == 0) {
      double* row = sums + 3 * (L.layer * batch + b);
      atomicAdd(row, v[0]);
      atomicAdd(row + 1, v[1]);
      atomicAdd(row + 2, v[2]);
    }
  } else {
    // Batch-wise normalisation: this block handles every sample of its chunk of positions.
    const int64_t l0 = local * kChunk;
    const double g_scale = L.weight / (static_cast<double>(batch) * length);
    double v[1] = {0.0};
    for (int i = 0; i < kItems; ++i) {
      const int64_t l = l0 + i * kThreads + threadIdx.x;
      if (l >= length) continue;
      double col_s = 0.0, col_t = 0.0;
      for (int64_t b = 0; b < batch; ++b) {
        acc_t x = 0, y = 0;
        for (int c = 0; c < L.cs; ++c)
          x += at_power<acc_t, kP2>(static_cast<acc_t>(S[b * L.s_sb + c * L.s_sc + l * L.s_sl]), p);
        for (int c = 0; c < L.ct; ++c)
          y += at_power<acc_t, kP2>(static_cast<acc_t>(T[b * L.t_sb + c * L.t_sc + l * L.t_sl]), p);
        map1[b * length + l] = x;
        map2[b * length + l] = y;
        col_s += static_cast<double>(x) * x;
        col_t += static_cast<double>(y) * y;
      }
      col_s = sqrt(col_s);
      col_t = sqrt(col_t);
      const double ns = col_s > eps ? col_s : eps, nt = col_t > eps ? col_t : eps;
      double qg = 0.0;
      for (int64_t b = 0; b < batch; ++b) {
        const double qs = map1[b * length + l] / ns, qt = map2[b * length + l] / nt;
        v[0] += fabs(qs - qt);
        qg += qs * g_scale * sign_of(qs - qt);
      }
      for (int64_t b = 0; b < batch; ++b) {
        const double qs = map1[b * length + l] / ns;
        const double g = g_scale * sign_of(qs - map2[b * length + l] / nt);
        map1[b * length + l] = static_cast<acc_t>(col_s > eps ? (g - qs * qg) / ns : g / eps);
      }
    }
    cuda_utils::block_sum<1>(v);
    if (threadIdx.x == 0) atomicAdd(sums + 3 * (L.layer * batch), v[0]);
  }

  if (!cuda_utils::is_last_block(counter, gridDim.x)) return;

  // The last block: losses per row and the backward's coefficients.
  double total[1] = {0.0};
  for (int li2 = 0; li2 < meta.n_layers; ++li2) {
    const LayerMeta& M = meta.layers[li2];
    for (int64_t b = threadIdx.x; b < batch; b += blockDim.x) {
      const double* row = sums + 3 * (M.layer * batch + b);
      double* coeff = coeffs + 2 * (M.layer * batch + b);
      if (static_cast<AtMode>(mode) == AtMode::kCanonical) {
        const AtRowResult r = at_canonical_row(__ldcg(row), __ldcg(row + 1), __ldcg(row + 2), M.weight, eps,
                                               batch, M.length, static_cast<AtDistance>(distance));
        total[0] += r.loss;
        coeff[0] = r.alpha;
        coeff[1] = r.beta;
      } else {
        if (b == 0) total[0] += M.weight * __ldcg(row) / (static_cast<double>(batch) * M.length);
        coeff[0] = 1.0;
        coeff[1] = 0.0;
      }
    }
  }
  cuda_utils::block_sum<1>(total);
  if (threadIdx.x == 0) *loss_out = static_cast<acc_t>(total[0]);
}

template <typename scalar_t, typename acc_t, bool kP2>
__global__ void __launch_bounds__(kThreads)
    at_backward_kernel(const LaunchMeta meta, int64_t batch, acc_t p, int mode, const acc_t* __restrict__ ws,
                       const double* __restrict__ coeffs, const acc_t* __restrict__ grad_loss) {
  const int li = find_layer(meta, blockIdx.x);
  const LayerMeta& L = meta.layers[li];
  const int64_t local = blockIdx.x - L.block_begin;
  const int groups = L.groups;
  const int gsize = kThreads / groups;
  const int64_t tile = static_cast<int64_t>(gsize) * kItems;
  const int group = threadIdx.x / gsize, r = threadIdx.x % gsize;
  const int64_t b = local / L.chunks;
  const int64_t l0 = (local % L.chunks) * tile;
  const int64_t length = L.length;
  const double alpha = coeffs[2 * (L.layer * batch + b)];
  const double beta = coeffs[2 * (L.layer * batch + b) + 1];
  const acc_t* m1 = ws + L.map_offset + b * length;
  const acc_t* m2 = m1 + batch * length;
  const double scale = static_cast<double>(*grad_loss) * static_cast<double>(p) *
                       (static_cast<AtMode>(mode) == AtMode::kCanonical ? 1.0 / L.cs : 1.0);
  acc_t da[kItems];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int64_t l = l0 + i * gsize + r;
    da[i] = l < length ? static_cast<acc_t>((alpha * m1[l] + beta * m2[l]) * scale) : acc_t(0);
  }
  const scalar_t* S = static_cast<const scalar_t*>(L.s) + b * L.s_sb;
  scalar_t* G = static_cast<scalar_t*>(L.grad) + b * static_cast<int64_t>(L.cs) * length;
  // The group's channels: each thread writes the gradient of its positions for every channel of its group.
#pragma unroll 2
  for (int c = group; c < L.cs; c += groups) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int64_t l = l0 + i * gsize + r;
      if (l < length) {
        const acc_t x = static_cast<acc_t>(S[c * L.s_sc + l * L.s_sl]);
        G[c * length + l] = static_cast<scalar_t>(da[i] * at_power_grad<acc_t, kP2>(x, p));
      }
    }
  }
}

LayerMeta layer_meta(const at::Tensor& s, const at::Tensor& t, void* grad, int64_t map_offset, int32_t layer,
                     double weight, int32_t block_begin, int groups) {
  LayerMeta m;
  m.s = s.const_data_ptr();
  m.t = t.defined() ? t.const_data_ptr() : nullptr;
  m.grad = grad;
  m.s_sb = s.stride(0);
  m.s_sc = s.stride(1);
  m.s_sl = s.stride(2);
  m.t_sb = t.defined() ? t.stride(0) : 0;
  m.t_sc = t.defined() ? t.stride(1) : 0;
  m.t_sl = t.defined() ? t.stride(2) : 0;
  m.length = s.size(2);
  m.map_offset = map_offset;
  m.cs = static_cast<int32_t>(s.size(1));
  m.ct = t.defined() ? static_cast<int32_t>(t.size(1)) : 0;
  m.groups = groups;
  const int64_t tile = kChunk / groups;
  m.chunks = static_cast<int32_t>((m.length + tile - 1) / tile);
  m.block_begin = block_begin;
  m.layer = layer;
  m.weight = weight;
  return m;
}

at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_transfer_cuda(at::TensorList student,
                                                                       at::TensorList teacher, double p,
                                                                       at::ArrayRef<double> weights,
                                                                       const std::string& distance,
                                                                       const std::string& mode, double eps) {
  check_attention_transfer_inputs(student, teacher, p, weights, eps);
  const int mode_i = parse_at_mode(mode);
  const int dist_i = parse_at_distance(distance);
  c10::cuda::CUDAGuard guard(student[0].device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t batch = student[0].size(0);
  const int64_t n_layers = static_cast<int64_t>(student.size());
  const int64_t n_groups = (n_layers + kMaxLayers - 1) / kMaxLayers;
  const auto opts = student[0].options().dtype(acc_dtype(student[0].scalar_type()));
  at::Tensor loss = at::empty({}, opts);
  at::Tensor group_loss = n_groups == 1 ? loss : at::empty({n_groups}, opts);
  at::Tensor saved = at::empty({at_saved_numel(student)}, opts);
  at::Tensor coeffs = at::empty({n_layers, batch, 2}, opts.dtype(at::kDouble));
  // Three fp64 sums per (layer, sample), then one zeroed 8-byte slot per group for its block counter.
  at::Tensor sums = at::zeros({3 * n_layers * batch + n_groups}, opts.dtype(at::kDouble));
  const auto offsets = at_map_offsets(student);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student[0].scalar_type(), "attention_transfer_cuda", [&] {
    using acc_t = typename OpMath<scalar_t>::type;
    for (int64_t g = 0; g < n_groups; ++g) {
      LaunchMeta meta;
      meta.n_layers = 0;
      int32_t blocks = 0;
      for (int64_t j = g * kMaxLayers; j < std::min(n_layers, (g + 1) * kMaxLayers); ++j) {
        // joshi's forward normalises across the batch: one channel group, a block per chunk of positions
        const int groups = mode_i == 0 ? choose_groups(student[j].size(1), teacher[j].size(1), student[j].size(2)) : 1;
        LayerMeta m = layer_meta(student[j], teacher[j], nullptr, offsets[j], static_cast<int32_t>(j), weights[j],
                                 blocks, groups);
        meta.layers[meta.n_layers++] = m;
        blocks += mode_i == 0 ? static_cast<int32_t>(batch) * m.chunks : m.chunks;
      }
      auto* counter = reinterpret_cast<unsigned int*>(sums.data_ptr<double>() + 3 * n_layers * batch + g);
      auto* loss_ptr = group_loss.data_ptr<acc_t>() + (n_groups == 1 ? 0 : g);
      if (p == 2.0) {
        at_forward_kernel<scalar_t, acc_t, true><<<blocks, kThreads, 0, stream>>>(
            meta, batch, static_cast<acc_t>(p), mode_i, dist_i, eps, saved.data_ptr<acc_t>(),
            coeffs.data_ptr<double>(), sums.data_ptr<double>(), counter, loss_ptr);
      } else {
        at_forward_kernel<scalar_t, acc_t, false><<<blocks, kThreads, 0, stream>>>(
            meta, batch, static_cast<acc_t>(p), mode_i, dist_i, eps, saved.data_ptr<acc_t>(),
            coeffs.data_ptr<double>(), sums.data_ptr<double>(), counter, loss_ptr);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  if (n_groups > 1) loss.copy_(group_loss.sum());
  return {loss, saved, coeffs};
}

std::vector<at::Tensor> attention_transfer_backward_cuda(const at::Tensor& grad, at::TensorList student,
                                                         const at::Tensor& saved, const at::Tensor& coeffs,
                                                         double p, const std::string& mode) {
  check_attention_transfer_backward_inputs(grad, student, saved, coeffs);
  const int mode_i = parse_at_mode(mode);
  c10::cuda::CUDAGuard guard(student[0].device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t batch = student[0].size(0);
  const int64_t n_layers = static_cast<int64_t>(student.size());
  const at::Tensor grad_acc = grad.to(saved.options()).contiguous();
  std::vector<at::Tensor> grads;
  grads.reserve(student.size());
  for (const auto& s : student) grads.push_back(at::empty(s.sizes(), s.options()));
  const auto offsets = at_map_offsets(student);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, student[0].scalar_type(), "attention_transfer_backward_cuda", [&] {
    using acc_t = typename OpMath<scalar_t>::type;
    for (int64_t g0 = 0; g0 < n_layers; g0 += kMaxLayers) {
      LaunchMeta meta;
      meta.n_layers = 0;
      int32_t blocks = 0;
      for (int64_t j = g0; j < std::min(n_layers, g0 + kMaxLayers); ++j) {
        const int groups = choose_groups(student[j].size(1), student[j].size(1), student[j].size(2));
        LayerMeta m = layer_meta(student[j], at::Tensor(), grads[j].data_ptr(), offsets[j], static_cast<int32_t>(j),
                                 0.0, blocks, groups);
        meta.layers[meta.n_layers++] = m;
        blocks += static_cast<int32_t>(batch) * m.chunks;
      }
      if (p == 2.0) {
        at_backward_kernel<scalar_t, acc_t, true><<<blocks, kThreads, 0, stream>>>(
            meta, batch, static_cast<acc_t>(p), mode_i, saved.const_data_ptr<acc_t>(), coeffs.const_data_ptr<double>(),
            grad_acc.const_data_ptr<acc_t>());
      } else {
        at_backward_kernel<scalar_t, acc_t, false><<<blocks, kThreads, 0, stream>>>(
            meta, batch, static_cast<acc_t>(p), mode_i, saved.const_data_ptr<acc_t>(), coeffs.const_data_ptr<double>(),
            grad_acc.const_data_ptr<acc_t>());
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return grads;
}

}  // namespace kdsleep
