// CPU kernels of s2vc::affine_coupling_inverse and s2vc::affine_coupling_inverse_out (float32,
// float64), parallel over rows with OpenMP.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "coupling.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

// SLEEF's AVX2 atan / exp (1 ulp): the functions ATen's own vectorised CPU kernels call, exported
// by libtorch_cpu. This file is built for baseline x86-64, so the AVX2 loop below is compiled
// with a target attribute and taken only when the CPU has AVX2 + FMA; the declarations are weak,
// so a torch that does not export them leaves them null and the scalar loop runs instead.
extern "C" {
__attribute__((weak, target("avx2,fma"))) __m256 Sleef_atanf8_u10avx2(__m256);
__attribute__((weak, target("avx2,fma"))) __m256 Sleef_expf8_u10avx2(__m256);
__attribute__((weak, target("avx2,fma"))) __m256d Sleef_atand4_u10avx2(__m256d);
__attribute__((weak, target("avx2,fma"))) __m256d Sleef_expd4_u10avx2(__m256d);
}

namespace s2vc {
namespace {

bool sleef_avx2_usable() {
  static const bool usable = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                             Sleef_atanf8_u10avx2 && Sleef_expf8_u10avx2 &&
                             Sleef_atand4_u10avx2 && Sleef_expd4_u10avx2;
  return usable;
}

// u[j] = (v[j] - t[j]) / exp(scale * atan(s[j] / clamp)) for whole vectors; returns how many
// elements it did (the tail is left to the scalar loop). Same operations, same order.
__attribute__((target("avx2,fma"))) int64_t coupling_inverse_avx2(
    const float* s, const float* t, const float* v, float* u, int64_t len, float scale,
    float clamp) {
  const __m256 scale_v = _mm256_set1_ps(scale);
  const __m256 clamp_v = _mm256_set1_ps(clamp);
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    const __m256 g = _mm256_mul_ps(scale_v,
                                   Sleef_atanf8_u10avx2(_mm256_div_ps(_mm256_loadu_ps(s + j), clamp_v)));
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(v + j), _mm256_loadu_ps(t + j));
    _mm256_storeu_ps(u + j, _mm256_div_ps(d, Sleef_expf8_u10avx2(g)));
  }
  return j;
}

__attribute__((target("avx2,fma"))) int64_t coupling_inverse_avx2(
    const double* s, const double* t, const double* v, double* u, int64_t len, double scale,
    double clamp) {
  const __m256d scale_v = _mm256_set1_pd(scale);
  const __m256d clamp_v = _mm256_set1_pd(clamp);
  int64_t j = 0;
  for (; j + 4 <= len; j += 4) {
    const __m256d g = _mm256_mul_pd(scale_v,
                                    Sleef_atand4_u10avx2(_mm256_div_pd(_mm256_loadu_pd(s + j), clamp_v)));
    const __m256d d = _mm256_sub_pd(_mm256_loadu_pd(v + j), _mm256_loadu_pd(t + j));
    _mm256_storeu_pd(u + j, _mm256_div_pd(d, Sleef_expd4_u10avx2(g)));
  }
  return j;
}

template <typename scalar_t>
int64_t coupling_inverse_vectorised(const scalar_t* s, const scalar_t* t, const scalar_t* v,
                                    scalar_t* u, int64_t len, scalar_t scale, scalar_t clamp) {
  return sleef_avx2_usable() ? coupling_inverse_avx2(s, t, v, u, len, scale, clamp) : 0;
}

}  // namespace
}  // namespace s2vc

#else  // not x86-64: the scalar loop does everything

namespace s2vc {
namespace {
template <typename scalar_t>
int64_t coupling_inverse_vectorised(const scalar_t*, const scalar_t*, const scalar_t*, scalar_t*,
                                    int64_t, scalar_t, scalar_t) {
  return 0;
}
}  // namespace
}  // namespace s2vc

#endif

namespace s2vc {
namespace {

// Batch strides, in elements, of the three tensors; within a sample each is contiguous.
struct BatchStrides {
  int64_t v, raw, u;
};

// Rows are the N*n (sample, channel) pairs of v, each S contiguous elements. The rows of one
// sample are contiguous in v, in s = raw[b, :n], in t = raw[b, n:] and in u, so consecutive rows
// of one sample are processed as one flat run.
template <typename scalar_t>
void coupling_inverse_rows(const scalar_t* v, const scalar_t* raw, scalar_t* u, int64_t n,
                           int64_t S, BatchStrides bs, int64_t begin, int64_t end,
                           scalar_t scale, scalar_t clamp) {
  int64_t row = begin;
  while (row < end) {
    const int64_t b = row / n;
    const int64_t c = row - b * n;
    const int64_t rows = std::min(end - row, n - c);
    const int64_t len = rows * S;
    const scalar_t* s = raw + b * bs.raw + c * S;
    const scalar_t* t = s + n * S;
    const scalar_t* vr = v + b * bs.v + c * S;
    scalar_t* ur = u + b * bs.u + c * S;
    for (int64_t j = coupling_inverse_vectorised(s, t, vr, ur, len, scale, clamp); j < len; ++j) {
      // the reference's order: g = (clamp * 0.636) * atan(s / clamp); u = (v - t) / exp(g)
      const scalar_t g = scale * std::atan(s[j] / clamp);
      ur[j] = (vr[j] - t[j]) / std::exp(g);
    }
    row += rows;
  }
}

void check_cpu(const at::Tensor& v, const char* op) {
  TORCH_CHECK(v.device().is_cpu(), op, " (CPU kernel): expected CPU tensors, got ", v.device());
  TORCH_CHECK(v.scalar_type() == at::kFloat || v.scalar_type() == at::kDouble, op,
              ": the CPU kernel supports float32 and float64, got ", v.scalar_type(),
              " (use the eager backend for other dtypes)");
}

// u = inverse(v, raw) for checked, sample-contiguous v, raw and u (u may be a view).
void coupling_inverse_into(const at::Tensor& v, const at::Tensor& raw, double clamp,
                           const at::Tensor& u) {
  if (u.numel() == 0) {
    return;
  }
  const int64_t n = v.size(1);
  const int64_t rows = v.size(0) * n;
  const int64_t S = v.numel() / rows;
  const BatchStrides bs{batch_stride(v), batch_stride(raw), batch_stride(u)};
  // atan + exp cost tens of cycles per element: a few thousand elements per task pay for it
  const int64_t grain = std::max<int64_t>(1, 4096 / S);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "affine_coupling_inverse_cpu", [&] {
    const scalar_t* v_ptr = v.const_data_ptr<scalar_t>();
    const scalar_t* raw_ptr = raw.const_data_ptr<scalar_t>();
    scalar_t* u_ptr = u.mutable_data_ptr<scalar_t>();
    // scalars rounded to the tensor's dtype, as PyTorch does for a Python float operand
    const auto scale = static_cast<scalar_t>(clamp * kAtanFactor);
    const auto clamp_s = static_cast<scalar_t>(clamp);
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      coupling_inverse_rows<scalar_t>(v_ptr, raw_ptr, u_ptr, n, S, bs, begin, end, scale,
                                      clamp_s);
    });
  });
}

at::Tensor affine_coupling_inverse_cpu(const at::Tensor& v_in, const at::Tensor& raw_in,
                                       double clamp) {
  check_affine_coupling_inverse(v_in, raw_in, clamp);
  check_cpu(v_in, "affine_coupling_inverse");
  // channel slices (sample-contiguous) are read in place; anything else is copied first
  const at::Tensor v = is_sample_contiguous(v_in) ? v_in : v_in.contiguous();
  const at::Tensor raw = is_sample_contiguous(raw_in) ? raw_in : raw_in.contiguous();
  at::Tensor u = at::empty(v.sizes(), v.options());
  coupling_inverse_into(v, raw, clamp, u);
  return u;
}

void affine_coupling_inverse_out_cpu(const at::Tensor& v, const at::Tensor& raw, double clamp,
                                     const at::Tensor& out) {
  check_affine_coupling_inverse_out(v, raw, clamp, out);
  check_cpu(v, "affine_coupling_inverse_out");
  coupling_inverse_into(v, raw, clamp, out);
}

}  // namespace

TORCH_LIBRARY_IMPL(s2vc, CPU, m) {
  m.impl("affine_coupling_inverse", &affine_coupling_inverse_cpu);
  m.impl("affine_coupling_inverse_out", &affine_coupling_inverse_out_cpu);
}

}  // namespace s2vc
