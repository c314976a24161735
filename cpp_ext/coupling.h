// Shared by the CPU and CUDA kernels of s2vc::affine_coupling_inverse and
// s2vc::affine_coupling_inverse_out: input checks, the sample-contiguous layout, constants.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

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

// Whether every sample t[b] of t (N, c, *S) is one contiguous block of c * S elements, the
// batch stride being free: the layout of a channel slice x[:, a:a+c] of a contiguous (N, C, *S)
// tensor (and of any contiguous tensor). Strides of size-1 dims do not matter.
inline bool is_sample_contiguous(const at::Tensor& t) {
  int64_t expected = 1;
  for (int64_t d = t.dim() - 1; d >= 1; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) {
      return false;
    }
    expected *= t.size(d);
  }
  return true;
}

// The elements (batch stride) between consecutive samples; 0 when there is only one sample.
inline int64_t batch_stride(const at::Tensor& t) {
  return t.size(0) > 1 ? t.stride(0) : 0;
}

namespace detail {

// Samples of a sample-contiguous tensor as byte ranges: sample i covers
// [start + i * stride, start + i * stride + len).
struct SampleSpans {
  intptr_t start;
  int64_t stride;  // >= 0 (0: every sample is the same range)
  int64_t len;
  int64_t count;
};

inline SampleSpans sample_spans(const at::Tensor& t) {
  const int64_t elem = static_cast<int64_t>(t.element_size());
  return {reinterpret_cast<intptr_t>(t.data_ptr()), batch_stride(t) * elem,
          t.size(0) > 0 ? t.numel() / t.size(0) * elem : 0, t.size(0)};
}

inline int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

}  // namespace detail

// Whether two sample-contiguous tensors share an element: O(N), exact for this layout (channel
// slices of one tensor interleave without touching each other).
inline bool samples_overlap(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0 || !a.has_storage() || !b.has_storage() ||
      !a.storage().is_alias_of(b.storage())) {
    return false;
  }
  const detail::SampleSpans sa = detail::sample_spans(a), sb = detail::sample_spans(b);
  const int64_t a_count = sa.stride == 0 ? 1 : sa.count;
  const int64_t b_count = sb.stride == 0 ? 1 : sb.count;
  for (int64_t i = 0; i < a_count; ++i) {
    const intptr_t lo = sa.start + i * sa.stride;
    const intptr_t hi = lo + sa.len;
    // b's samples are ordered by address: the first one ending after lo is the only candidate
    int64_t j = 0;
    if (sb.stride > 0) {
      j = std::max<int64_t>(0, detail::floor_div(lo - sb.start - sb.len, sb.stride) + 1);
    }
    if (j < b_count) {
      const intptr_t b_lo = sb.start + j * sb.stride;
      if (b_lo < hi && b_lo + sb.len > lo) {
        return true;
      }
    }
  }
  return false;
}

// affine_coupling_inverse_out: the checks of the functional op, plus out (N, n, *S) of v's dtype
// and device; v, raw and out each sample-contiguous; out's samples disjoint from one another and
// out sharing no element with v or raw.
inline void check_affine_coupling_inverse_out(const at::Tensor& v, const at::Tensor& raw,
                                              double clamp, const at::Tensor& out) {
  check_affine_coupling_inverse(v, raw, clamp);
  TORCH_CHECK(out.sizes() == v.sizes(), "affine_coupling_inverse_out: expected out of v's shape ",
              v.sizes(), ", got out of shape ", out.sizes());
  TORCH_CHECK(out.scalar_type() == v.scalar_type(), "affine_coupling_inverse_out: expected out ",
              "of v's dtype ", v.scalar_type(), ", got ", out.scalar_type());
  TORCH_CHECK(out.device() == v.device(), "affine_coupling_inverse_out: expected out on v's ",
              "device ", v.device(), ", got ", out.device());
  const std::pair<const at::Tensor*, const char*> tensors[] = {{&v, "v"}, {&raw, "raw"},
                                                               {&out, "out"}};
  for (const auto& [t, name] : tensors) {
    TORCH_CHECK(is_sample_contiguous(*t), "affine_coupling_inverse_out: expected ", name,
                " with each sample contiguous (a contiguous tensor, or a channel slice x[:, a:b] ",
                "of one), got ", name, " of shape ", t->sizes(), " and strides ", t->strides());
  }
  const int64_t block = v.size(0) > 0 ? v.numel() / v.size(0) : 0;
  TORCH_CHECK(out.size(0) <= 1 || block == 0 || out.stride(0) >= block,
              "affine_coupling_inverse_out: expected out's samples not to overlap (batch stride ",
              ">= n * prod(S) = ", block, "), got out of strides ", out.strides());
  TORCH_CHECK(!samples_overlap(out, v), "affine_coupling_inverse_out: out shares memory with v; ",
              "write into a separate tensor");
  TORCH_CHECK(!samples_overlap(out, raw), "affine_coupling_inverse_out: out shares memory with ",
              "raw; write into a separate tensor");
}

}  // namespace s2vc
