// CUDA kernel of s2vc::temporal_std_mask (float32, float64, float16, bfloat16): one thread per (b, d).
//
// Consecutive threads take consecutive d, so every read of z[b, t, :] and write of z_p[b, t, :]
// is coalesced. For T <= 32 (the kernel is instantiated for T buckets 8 / 16 / 32) a thread keeps
// its T values in registers: z is read from global memory once and z_p written once. Longer clips
// re-read the thread's column of z for the squared deviations and again for z_p (three reads of
// z, the later ones mostly from L2): acceptable for a case the paper's clips (T = 16) never hit.
// The STD is accumulated in at::opmath_type (float for float32 / float16 / bfloat16, double for
// float64), two-pass, and rounded to z's dtype once, as PyTorch's reduction does.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <algorithm>

#include "temporal_std.h"

namespace s2vc {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
struct TemporalStdArgs {
  const scalar_t* z;        // (B, T, D)
  const scalar_t* noise;    // (B, D), strategy 1
  const int64_t* order;     // (B, T, D), strategy 2
  const bool* mask_in;      // (B, D) or null: computed from the STD
  scalar_t* z_p;            // (B, T, D), null for strategy -1
  bool* mask;               // (B, D)
  scalar_t* std;            // (B, D)
  int64_t B, T, D;
  // the threshold in the accumulation type: PyTorch's `std < alpha` with a Python float compares
  // in opmath (alpha is float for float32 / half / bf16, double for float64, never rounded to half)
  at::opmath_type<scalar_t> alpha;
  int strategy;
};

// kMaxT > 0: T <= kMaxT and the column is held in registers; kMaxT == 0: any T, re-read z.
template <typename scalar_t, int kMaxT>
__global__ void __launch_bounds__(kThreads)
    temporal_std_mask_kernel(const TemporalStdArgs<scalar_t> a) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = a.T, D = a.D;
  const int64_t columns = a.B * D;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < columns;
       i += stride) {
    const int64_t b = i / D;
    const int64_t base = i + b * (T - 1) * D;  // z[b, 0, d] = (b * T) * D + d
    const scalar_t* col = a.z + base;
    scalar_t v[kMaxT > 0 ? kMaxT : 1];
    acc_t sum = 0;
    if constexpr (kMaxT > 0) {
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        if (t < T) {
          v[t] = col[t * D];
        }
      }
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        if (t < T) {
          sum += static_cast<acc_t>(v[t]);
        }
      }
    } else {
      for (int64_t t = 0; t < T; ++t) {
        sum += static_cast<acc_t>(col[t * D]);
      }
    }
    const acc_t mean = sum / static_cast<acc_t>(T);
    acc_t ss = 0;
    if constexpr (kMaxT > 0) {
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        if (t < T) {
          const acc_t dev = static_cast<acc_t>(v[t]) - mean;
          ss += dev * dev;
        }
      }
    } else {
      for (int64_t t = 0; t < T; ++t) {
        const acc_t dev = static_cast<acc_t>(col[t * D]) - mean;
        ss += dev * dev;
      }
    }
    const auto s = static_cast<scalar_t>(::sqrt(ss / static_cast<acc_t>(T - 1)));
    a.std[i] = s;
    const bool m = a.mask_in ? a.mask_in[i] : static_cast<acc_t>(s) < a.alpha;  // NaN < alpha: false
    a.mask[i] = m;
    if (a.strategy == kStdOnly) {
      continue;
    }

    scalar_t* out = a.z_p + base;
    const scalar_t fill = (m && a.strategy == kNoise) ? a.noise[i] : scalar_t(0);
    const bool gather = m && a.strategy == kShuffleClip;
    const int64_t* order = a.order + base;
    auto value = [&](int64_t t) -> scalar_t {
      if (gather) {
        int64_t src = order[t * D];
        // an index out of range is a device-side assert, as in torch.gather; clamped as well so
        // that a build with GPU asserts disabled still never reads outside the clip
        CUDA_KERNEL_ASSERT(src >= 0 && src < T && "temporal_std_mask: order index out of range");
        src = src < 0 ? 0 : (src >= T ? T - 1 : src);
        return col[src * D];
      }
      return fill;
    };
    if constexpr (kMaxT > 0) {
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        if (t < T) {
          out[t * D] = m ? value(t) : v[t];
        }
      }
    } else {
      for (int64_t t = 0; t < T; ++t) {
        out[t * D] = m ? value(t) : col[t * D];
      }
    }
  }
}

template <typename scalar_t, int kMaxT>
void launch(const TemporalStdArgs<scalar_t>& args, int64_t blocks, cudaStream_t stream) {
  temporal_std_mask_kernel<scalar_t, kMaxT><<<blocks, kThreads, 0, stream>>>(args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> temporal_std_mask_cuda(
    const at::Tensor& z_in, double alpha, int64_t strategy,
    const std::optional<at::Tensor>& noise_in, const std::optional<at::Tensor>& order_in,
    const std::optional<at::Tensor>& mask_in) {
  check_temporal_std_mask(z_in, strategy, noise_in, order_in, mask_in);
  TORCH_CHECK(z_in.device().is_cuda(), "temporal_std_mask (CUDA kernel): expected CUDA tensors, ",
              "got ", z_in.device());
  const c10::cuda::OptionalCUDAGuard device_guard(z_in.device());
  const at::Tensor z = z_in.contiguous();
  const at::Tensor noise = noise_in ? noise_in->contiguous() : at::Tensor();
  const at::Tensor order = order_in ? order_in->contiguous() : at::Tensor();
  const at::Tensor mask_given = mask_in ? mask_in->contiguous() : at::Tensor();
  const int64_t B = z.size(0), T = z.size(1), D = z.size(2);

  at::Tensor z_p =
      strategy == kStdOnly ? at::empty({0}, z.options()) : at::empty(z.sizes(), z.options());
  at::Tensor mask = at::empty({B, D}, z.options().dtype(at::kBool));
  at::Tensor std_out = at::empty({B, D}, z.options());
  const int64_t columns = B * D;
  if (columns == 0) {
    return {z_p, mask, std_out};
  }
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = std::min<int64_t>((columns + kThreads - 1) / kThreads, sms * 32);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "temporal_std_mask_cuda", [&] {
    TemporalStdArgs<scalar_t> args{
        z.const_data_ptr<scalar_t>(),
        noise.defined() ? noise.const_data_ptr<scalar_t>() : nullptr,
        order.defined() ? order.const_data_ptr<int64_t>() : nullptr,
        mask_given.defined() ? mask_given.const_data_ptr<bool>() : nullptr,
        strategy == kStdOnly ? nullptr : z_p.mutable_data_ptr<scalar_t>(),
        mask.mutable_data_ptr<bool>(),
        std_out.mutable_data_ptr<scalar_t>(),
        B, T, D,
        static_cast<at::opmath_type<scalar_t>>(alpha),
        static_cast<int>(strategy)};
    if (T <= 8) {
      launch<scalar_t, 8>(args, blocks, stream);
    } else if (T <= 16) {
      launch<scalar_t, 16>(args, blocks, stream);
    } else if (T <= 32) {
      launch<scalar_t, 32>(args, blocks, stream);
    } else {
      launch<scalar_t, 0>(args, blocks, stream);
    }
  });
  return {z_p, mask, std_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(s2vc, CUDA, m) {
  m.impl("temporal_std_mask", &temporal_std_mask_cuda);
}

}  // namespace s2vc
