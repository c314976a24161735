// CUDA kernels of s2vc::affine_coupling_inverse and s2vc::affine_coupling_inverse_out (float32,
// float64, float16, bfloat16).
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

// Flat over u's N*n*S elements; per sample b the n*S elements of v, s = raw[b, :n],
// t = raw[b, n:] and u are each contiguous, the samples bs.* elements apart: element k of sample b
// reads v[b*bs.v + k], raw[b*bs.raw + k] and raw[b*bs.raw + nS + k], and writes u[b*bs.u + k].
template <typename index_t>
struct BatchStrides {
  index_t v, raw, u;
};

template <typename scalar_t, typename index_t>
__global__ void affine_coupling_inverse_kernel(const scalar_t* __restrict__ v,
                                               const scalar_t* __restrict__ raw,
                                               scalar_t* __restrict__ u, index_t numel,
                                               index_t nS, BatchStrides<index_t> bs,
                                               at::opmath_type<scalar_t> scale,
                                               at::opmath_type<scalar_t> inv_clamp) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += stride) {
    const index_t b = i / nS;
    const index_t k = i - b * nS;
    const index_t si = b * bs.raw + k;
    const opmath_t s = static_cast<opmath_t>(raw[si]);
    const opmath_t t = static_cast<opmath_t>(raw[si + nS]);
    // s * (1/clamp): what PyTorch's CUDA division by a Python scalar computes, so the
    // float32 result matches the eager reference on the GPU to the last bits
    const opmath_t g = scale * ::atan(s * inv_clamp);
    const opmath_t vk = static_cast<opmath_t>(v[b * bs.v + k]);
    u[b * bs.u + k] = static_cast<scalar_t>((vk - t) / ::exp(g));
  }
}

void check_cuda(const at::Tensor& v, const char* op) {
  TORCH_CHECK(v.device().is_cuda(), op, " (CUDA kernel): expected CUDA tensors, got ",
              v.device());
}

// u = inverse(v, raw) for checked, sample-contiguous v, raw and u (u may be a view).
void coupling_inverse_into(const at::Tensor& v, const at::Tensor& raw, double clamp,
                           const at::Tensor& u) {
  const int64_t numel = v.numel();
  if (numel == 0) {
    return;
  }
  const int64_t N = v.size(0);
  const int64_t nS = numel / N;
  const BatchStrides<int64_t> bs{batch_stride(v), batch_stride(raw), batch_stride(u)};
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = std::min<int64_t>((numel + kThreads - 1) / kThreads, sms * 32);
  // 32-bit indices (cheaper division) whenever the loop and every offset it forms fit
  const int64_t max_offset =
      (N - 1) * std::max({bs.v, bs.raw, bs.u}) + 2 * nS;  // raw's t reaches b*bs.raw + 2nS
  const bool small = numel + blocks * kThreads < std::numeric_limits<int32_t>::max() &&
                     max_offset < std::numeric_limits<int32_t>::max();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(),
                                  "affine_coupling_inverse_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    // scalars as PyTorch rounds a Python float operand: to the op's compute type
    const auto scale = static_cast<opmath_t>(clamp * kAtanFactor);
    const opmath_t inv_clamp = opmath_t(1) / static_cast<opmath_t>(clamp);
    if (small) {
      const BatchStrides<int32_t> bs32{static_cast<int32_t>(bs.v), static_cast<int32_t>(bs.raw),
                                       static_cast<int32_t>(bs.u)};
      affine_coupling_inverse_kernel<scalar_t, int32_t><<<blocks, kThreads, 0, stream>>>(
          v.const_data_ptr<scalar_t>(), raw.const_data_ptr<scalar_t>(),
          u.mutable_data_ptr<scalar_t>(), static_cast<int32_t>(numel), static_cast<int32_t>(nS),
          bs32, scale, inv_clamp);
    } else {
      affine_coupling_inverse_kernel<scalar_t, int64_t><<<blocks, kThreads, 0, stream>>>(
          v.const_data_ptr<scalar_t>(), raw.const_data_ptr<scalar_t>(),
          u.mutable_data_ptr<scalar_t>(), numel, nS, bs, scale, inv_clamp);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

at::Tensor affine_coupling_inverse_cuda(const at::Tensor& v_in, const at::Tensor& raw_in,
                                        double clamp) {
  check_affine_coupling_inverse(v_in, raw_in, clamp);
  check_cuda(v_in, "affine_coupling_inverse");
  const c10::cuda::OptionalCUDAGuard device_guard(v_in.device());
  // channel slices (sample-contiguous) are read in place; anything else is copied first
  const at::Tensor v = is_sample_contiguous(v_in) ? v_in : v_in.contiguous();
  const at::Tensor raw = is_sample_contiguous(raw_in) ? raw_in : raw_in.contiguous();
  at::Tensor u = at::empty(v.sizes(), v.options());
  coupling_inverse_into(v, raw, clamp, u);
  return u;
}

void affine_coupling_inverse_out_cuda(const at::Tensor& v, const at::Tensor& raw, double clamp,
                                      const at::Tensor& out) {
  check_affine_coupling_inverse_out(v, raw, clamp, out);
  check_cuda(v, "affine_coupling_inverse_out");
  const c10::cuda::OptionalCUDAGuard device_guard(v.device());
  coupling_inverse_into(v, raw, clamp, out);
}

}  // namespace

TORCH_LIBRARY_IMPL(s2vc, CUDA, m) {
  m.impl("affine_coupling_inverse", &affine_coupling_inverse_cuda);
  m.impl("affine_coupling_inverse_out", &affine_coupling_inverse_out_cuda);
}

}  // namespace s2vc
