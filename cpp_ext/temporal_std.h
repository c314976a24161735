// Shared by the CPU and CUDA kernels of s2vc::temporal_std_mask: strategy codes and input checks.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cstdint>

namespace s2vc {

// The op's `strategy` argument: the codes of engine/strategies.py's table (tests/test_suppression.py
// compares this enum and kTemporalStdValidCodes with it).
enum TemporalStdStrategy : int64_t {
  kStdOnly = -1,      // std and mask only; z_p is not computed (an empty (0,) tensor)
  kZero = 0,          // z_p = 0 where masked
  kNoise = 1,         // z_p[b, t, d] = noise[b, d] where masked
  kShuffleClip = 2,   // z_p[b, t, d] = z[b, order[b, t, d], d] where masked
};

constexpr const char* kTemporalStdValidCodes =
    "-1 (std and mask only), 0 (zero), 1 (noise), 2 (shuffle_clip)";

// z (B, T, D) float32/float64 (CUDA also float16/bfloat16: each kernel checks its own dtypes)
// with T >= 2; noise (B, D) of z's dtype iff strategy is 1; order (B, T, D) int64 iff strategy is
// 2; mask, when given, (B, D) bool. All on z's device.
inline void check_temporal_std_mask(const at::Tensor& z, int64_t strategy,
                                    const std::optional<at::Tensor>& noise,
                                    const std::optional<at::Tensor>& order,
                                    const std::optional<at::Tensor>& mask) {
  TORCH_CHECK(z.dim() == 3, "temporal_std_mask: expected z of shape (B, T, D), got shape ",
              z.sizes());
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble ||
                  z.scalar_type() == at::kHalf || z.scalar_type() == at::kBFloat16,
              "temporal_std_mask: expected z of dtype float32, float64, float16 or bfloat16, got ",
              z.scalar_type(), " (use the eager backend for other dtypes)");
  TORCH_CHECK(z.size(1) >= 2, "temporal_std_mask: the temporal STD needs T >= 2 frames, got z of ",
              "shape ", z.sizes(), " (T = ", z.size(1), ")");
  TORCH_CHECK(strategy >= kStdOnly && strategy <= kShuffleClip,
              "temporal_std_mask: unknown strategy code ", strategy, "; valid codes: ",
              kTemporalStdValidCodes);
  const int64_t B = z.size(0), T = z.size(1), D = z.size(2);

  if (strategy == kNoise) {
    TORCH_CHECK(noise.has_value(), "temporal_std_mask: strategy 1 (noise) needs noise of shape ",
                "(B, D) = (", B, ", ", D, ") and dtype ", z.scalar_type(), ", got none");
    TORCH_CHECK(noise->dim() == 2 && noise->size(0) == B && noise->size(1) == D,
                "temporal_std_mask: expected noise of shape (B, D) = (", B, ", ", D,
                ") for z of shape ", z.sizes(), ", got noise of shape ", noise->sizes());
    TORCH_CHECK(noise->scalar_type() == z.scalar_type(), "temporal_std_mask: expected noise of ",
                "z's dtype ", z.scalar_type(), ", got ", noise->scalar_type());
    TORCH_CHECK(noise->device() == z.device(), "temporal_std_mask: expected noise on z's device ",
                z.device(), ", got ", noise->device());
  } else {
    TORCH_CHECK(!noise.has_value(), "temporal_std_mask: noise is only used by strategy 1 ",
                "(noise), got noise with strategy ", strategy);
  }

  if (strategy == kShuffleClip) {
    TORCH_CHECK(order.has_value(), "temporal_std_mask: strategy 2 (shuffle_clip) needs order of ",
                "shape (B, T, D) = (", B, ", ", T, ", ", D, ") and dtype int64, got none");
    TORCH_CHECK(order->dim() == 3 && order->size(0) == B && order->size(1) == T &&
                    order->size(2) == D,
                "temporal_std_mask: expected order of shape (B, T, D) = (", B, ", ", T, ", ", D,
                ") for z of shape ", z.sizes(), ", got order of shape ", order->sizes());
    TORCH_CHECK(order->scalar_type() == at::kLong, "temporal_std_mask: expected order of dtype ",
                "int64 (Long), got ", order->scalar_type());
    TORCH_CHECK(order->device() == z.device(), "temporal_std_mask: expected order on z's device ",
                z.device(), ", got ", order->device());
  } else {
    TORCH_CHECK(!order.has_value(), "temporal_std_mask: order is only used by strategy 2 ",
                "(shuffle_clip), got order with strategy ", strategy);
  }

  if (mask.has_value()) {
    TORCH_CHECK(mask->dim() == 2 && mask->size(0) == B && mask->size(1) == D,
                "temporal_std_mask: expected mask of shape (B, D) = (", B, ", ", D,
                ") for z of shape ", z.sizes(), ", got mask of shape ", mask->sizes());
    TORCH_CHECK(mask->scalar_type() == at::kBool, "temporal_std_mask: expected mask of dtype ",
                "bool, got ", mask->scalar_type());
    TORCH_CHECK(mask->device() == z.device(), "temporal_std_mask: expected mask on z's device ",
                z.device(), ", got ", mask->device());
  }
}

}  // namespace s2vc
