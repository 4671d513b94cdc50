// Small device helpers shared by the kdsleep CUDA kernels.
#pragma once

#include <cuda_runtime.h>

namespace kdsleep {
namespace cuda_utils {

constexpr unsigned kFullMask = 0xffffffffu;

// Sums N doubles across the block; the result is valid in thread 0. All threads must call it.
template <int N>
__device__ __forceinline__ void block_sum(double (&v)[N]) {
  __shared__ double partial[N][32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int k = 0; k < N; ++k)
    for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(kFullMask, v[k], off);
  if (lane == 0)
#pragma unroll
    for (int k = 0; k < N; ++k) partial[k][warp] = v[k];
  __syncthreads();
  const int n_warps = (blockDim.x + 31) >> 5;
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < N; ++k) {
      v[k] = lane < n_warps ? partial[k][lane] : 0.0;
      for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(kFullMask, v[k], off);
    }
  }
  __syncthreads();  // `partial` may be reused by the next call
}

// True in every thread of the block that finishes last among `total_blocks` blocks sharing `counter`.
// Call after this block's atomics; afterwards the last block sees every other block's results.
__device__ __forceinline__ bool is_last_block(unsigned int* counter, unsigned int total_blocks) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == total_blocks - 1;
  __syncthreads();
  if (last) __threadfence();
  return last;
}

}  // namespace cuda_utils
}  // namespace kdsleep
