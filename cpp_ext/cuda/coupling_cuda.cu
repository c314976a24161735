// CUDA kernel of s2vc::affine_coupling_inverse (float32, float64, float16, bfloat16).
// Half types are computed in float (at::opmath_type) and rounded once on store.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "coupling.h"

namespace s2vc {
namespace {

constexpr int kThreads = 256;

// Flat over u's N*n*S elements; per sample b the n*S elements of v, s = raw[b, :n] and
// t = raw[b, n:] are each contiguous, so element k of sample b reads raw[b*2nS + k] and
// raw[b*2nS + nS + k].
template <typename scalar_t, typename index_t>
__global__ void affine_coupling_inverse_kernel(const scalar_t* __restrict__ v,
                                               const scalar_t* __restrict__ raw,
                                               scalar_t* __restrict__ u, index_t numel,
                                               index_t nS, at::opmath_type<scalar_t> scale,
                                               at::opmath_type<scalar_t> inv_clamp) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += stride) {
    const index_t b = i / nS;
    const index_t si = i + b * nS;  // = b*2nS + (i - b*nS)
    const opmath_t s = static_cast<opmath_t>(raw[si]);
    const opmath_t t = static_cast<opmath_t>(raw[si + nS]);
    // s * (1/clamp): what PyTorch's CUDA division by a Python scalar computes, so the
    // float32 result matches the eager reference on the GPU to the last bits
    const opmath_t g = scale * ::atan(s * inv_clamp);
    u[i] = static_cast<scalar_t>((static_cast<opmath_t>(v[i]) - t) / ::exp(g));
  }
}

at::Tensor affine_coupling_inverse_cuda(const at::Tensor& v_in, const at::Tensor& raw_in,
                                        double clamp) {
  check_affine_coupling_inverse(v_in, raw_in, clamp);
  TORCH_CHECK(v_in.device().is_cuda(), "affine_coupling_inverse (CUDA kernel): expected CUDA ",
              "tensors, got ", v_in.device());
  const c10::cuda::OptionalCUDAGuard device_guard(v_in.device());
  const at::Tensor v = v_in.contiguous();
  const at::Tensor raw = raw_in.contiguous();
  at::Tensor u = at::empty(v.sizes(), v.options());
  const int64_t numel = v.numel();
  if (numel == 0) {
    return u;
  }
  const int64_t nS = numel / v.size(0);
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = std::min<int64_t>((numel + kThreads - 1) / kThreads, sms * 32);
  // 32-bit indices (cheaper division) whenever the whole loop, raw's indices included, fits
  const bool small = 2 * numel + blocks * kThreads < std::numeric_limits<int32_t>::max();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(),
                                  "affine_coupling_inverse_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    // scalars as PyTorch rounds a Python float operand: to the op's compute type
    const auto scale = static_cast<opmath_t>(clamp * kAtanFactor);
    const opmath_t inv_clamp = opmath_t(1) / static_cast<opmath_t>(clamp);
    if (small) {
      affine_coupling_inverse_kernel<scalar_t, int32_t><<<blocks, kThreads, 0, stream>>>(
          v.const_data_ptr<scalar_t>(), raw.const_data_ptr<scalar_t>(),
          u.mutable_data_ptr<scalar_t>(), static_cast<int32_t>(numel), static_cast<int32_t>(nS),
          scale, inv_clamp);
    } else {
      affine_coupling_inverse_kernel<scalar_t, int64_t><<<blocks, kThreads, 0, stream>>>(
          v.const_data_ptr<scalar_t>(), raw.const_data_ptr<scalar_t>(),
          u.mutable_data_ptr<scalar_t>(), numel, nS, scale, inv_clamp);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return u;
}

}  // namespace

TORCH_LIBRARY_IMPL(s2vc, CUDA, m) {
  m.impl("affine_coupling_inverse", &affine_coupling_inverse_cuda);
}

}  // namespace s2vc
