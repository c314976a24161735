// Shared by the CPU and CUDA kernels of s2vc::affine_coupling_inverse: input checks and constants.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace s2vc {

// FrEIA's soft clamp uses a truncated 2/pi; the AdvFlow checkpoints depend on it
// (engine/ops.py ATAN_FACTOR).
constexpr double kAtanFactor = 0.636;

// v: (N, n, *S), raw: (N, 2n, *S) on one device, one floating dtype; clamp > 0 and finite.
inline void check_affine_coupling_inverse(const at::Tensor& v, const at::Tensor& raw,
                                          double clamp) {
  TORCH_CHECK(v.dim() >= 2, "affine_coupling_inverse: expected v of shape (N, n, *S) with at ",
              "least 2 dims, got shape ", v.sizes());
  TORCH_CHECK(raw.dim() == v.dim(), "affine_coupling_inverse: expected raw of shape (N, 2n, *S) ",
              "with as many dims as v ", v.sizes(), ", got raw of shape ", raw.sizes());
  TORCH_CHECK(raw.device() == v.device(), "affine_coupling_inverse: expected v and raw on one ",
              "device, got v on ", v.device(), " and raw on ", raw.device());
  TORCH_CHECK(at::isFloatingType(v.scalar_type()), "affine_coupling_inverse: expected a floating ",
              "dtype, got v of dtype ", v.scalar_type());
  TORCH_CHECK(raw.scalar_type() == v.scalar_type(), "affine_coupling_inverse: expected v and raw ",
              "of one dtype, got v ", v.scalar_type(), " and raw ", raw.scalar_type());
  TORCH_CHECK(raw.size(1) == 2 * v.size(1), "affine_coupling_inverse: expected raw with 2n = ",
              2 * v.size(1), " channels (scale then shift) for v with n = ", v.size(1),
              ", got raw of shape ", raw.sizes());
  bool same_rest = raw.size(0) == v.size(0);
  for (int64_t d = 2; d < v.dim(); ++d) {
    same_rest = same_rest && raw.size(d) == v.size(d);
  }
  TORCH_CHECK(same_rest, "affine_coupling_inverse: expected raw (N, 2n, *S) to match v (N, n, *S) ",
              "in N and S, got v of shape ", v.sizes(), " and raw of shape ", raw.sizes());
  TORCH_CHECK(std::isfinite(clamp) && clamp > 0, "affine_coupling_inverse: expected clamp > 0 ",
              "and finite, got ", clamp);
}

}  // namespace s2vc
