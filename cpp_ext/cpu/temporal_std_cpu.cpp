// CPU kernel of s2vc::temporal_std_mask (float32, float64): one pass over z in (b, d-block) tiles.
//
// A work item is one clip b and a block of up to kMaxBlock contiguous latents d0..d0+len. Its
// T x len tile of z is read from memory once: the STD of each group of kLanes columns is
// accumulated in registers (the mean, then the squared deviations re-read from L1), and z_p is
// then written row by row from the tile, still in L1/L2. Every inner loop runs over contiguous d
// and vectorises. The STD is accumulated in double for float32 too (ATen's CPU accumulation
// type): rounded to float it is what torch.std returns, so on the CPU the mask agrees with the
// eager reference even at the threshold.
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "temporal_std.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace s2vc {
namespace {

constexpr int64_t kMaxBlock = 256;          // latents per tile: 1 KiB rows of float32
constexpr int64_t kMinBlock = 16;           // a 64-byte cache line of float32
constexpr int64_t kTileBytes = 256 * 1024;  // a tile larger than this (long clips) is narrowed
constexpr int64_t kLanes = 16;              // columns whose STD accumulates in registers at once

template <typename scalar_t>
struct TileOutputs {
  scalar_t* z_p;      // &z_p[b, 0, d0], or null for strategy -1
  bool* mask;         // &mask[b, d0]
  scalar_t* std;      // &std[b, d0]
};

template <typename scalar_t>
struct TileInputs {
  const scalar_t* z;      // &z[b, 0, d0]; row t at z + t * D
  const scalar_t* noise;  // &noise[b, d0] (strategy 1)
  const int64_t* order;   // &order[b, 0, d0] (strategy 2)
  const bool* mask;       // &mask[b, d0] when a mask was given
};

template <typename scalar_t>
inline auto to_bits(scalar_t x) {
  using bits_t = std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint64_t>;
  bits_t b;
  std::memcpy(&b, &x, sizeof(b));
  return b;
}

template <typename scalar_t, typename bits_t>
inline scalar_t from_bits(bits_t b) {
  static_assert(sizeof(scalar_t) == sizeof(bits_t));
  scalar_t x;
  std::memcpy(&x, &b, sizeof(x));
  return x;
}

// Sum of squared deviations from the mean over the T rows, two-pass, for columns 0..n of x
// (row t at x + t * D), n <= kN. With n == kN a compile-time constant the accumulators stay in
// vector registers across the rows instead of going through memory every row.
template <typename scalar_t, typename acc_t, int64_t kN>
__attribute__((always_inline)) inline void column_squared_deviations(const scalar_t* x, int64_t T,
                                                                     int64_t D, int64_t n,
                                                                     acc_t* ss) {
  acc_t mean[kN];
  acc_t sq[kN];
  for (int64_t j = 0; j < n; ++j) {
    mean[j] = 0;
    sq[j] = 0;
  }
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < n; ++j) {
      mean[j] += static_cast<acc_t>(x[t * D + j]);
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    mean[j] /= static_cast<acc_t>(T);
  }
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < n; ++j) {
      const acc_t dev = static_cast<acc_t>(x[t * D + j]) - mean[j];
      sq[j] += dev * dev;
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    ss[j] = sq[j];
  }
}

// sqrt in place over n values. std::sqrt keeps errno semantics (a branch per value for negative
// input), so at the default -fmath-errno GCC leaves this loop scalar; the AVX2 path below uses
// vsqrtpd instead (the same IEEE sqrt; a sum of squares is never negative anyway).
struct ScalarSqrt {
  static void apply(double* v, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
      v[j] = std::sqrt(v[j]);
    }
  }
};

// Returns false (and the offending value in *bad) when an order index read is out of range.
// Inlined into the two entry points below, one per instruction set.
template <typename scalar_t, typename Sqrt>
__attribute__((always_inline)) inline bool temporal_std_tile(
    const TileInputs<scalar_t>& in, const TileOutputs<scalar_t>& out, int64_t T, int64_t D,
    int64_t len, scalar_t alpha, int64_t strategy, int64_t* bad) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;
  static_assert(std::is_same_v<acc_t, double>, "the STD is accumulated in double");
  acc_t ss[kMaxBlock];
  bool m[kMaxBlock];
  int64_t j0 = 0;
  for (; j0 + kLanes <= len; j0 += kLanes) {
    column_squared_deviations<scalar_t, acc_t, kLanes>(in.z + j0, T, D, kLanes, ss + j0);
  }
  if (j0 < len) {
    column_squared_deviations<scalar_t, acc_t, kMaxBlock>(in.z + j0, T, D, len - j0, ss + j0);
  }
  const acc_t dof = static_cast<acc_t>(T - 1);
  for (int64_t j = 0; j < len; ++j) {
    ss[j] /= dof;  // the variance
  }
  Sqrt::apply(ss, len);
  for (int64_t j = 0; j < len; ++j) {
    out.std[j] = static_cast<scalar_t>(ss[j]);
  }
  if (in.mask) {
    std::memcpy(m, in.mask, len * sizeof(bool));
  } else {
    for (int64_t j = 0; j < len; ++j) {
      m[j] = out.std[j] < alpha;  // NaN < alpha is false
    }
  }
  std::memcpy(out.mask, m, len * sizeof(bool));

  // zero / noise select with bit masks (keep = all ones where not masked): exact, branch-free,
  // so the loops over d vectorise even at baseline x86-64 (SSE2 has no blend)
  using bits_t = std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint64_t>;
  bits_t keep[kMaxBlock];
  for (int64_t j = 0; j < len; ++j) {
    keep[j] = m[j] ? bits_t(0) : ~bits_t(0);
  }
  switch (strategy) {
    case kZero:
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* x = in.z + t * D;
        scalar_t* y = out.z_p + t * D;
        for (int64_t j = 0; j < len; ++j) {
          y[j] = from_bits<scalar_t>(to_bits(x[j]) & keep[j]);
        }
      }
      break;
    case kNoise: {
      bits_t fill[kMaxBlock];
      for (int64_t j = 0; j < len; ++j) {
        fill[j] = to_bits(in.noise[j]) & ~keep[j];
      }
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* x = in.z + t * D;
        scalar_t* y = out.z_p + t * D;
        for (int64_t j = 0; j < len; ++j) {
          y[j] = from_bits<scalar_t>((to_bits(x[j]) & keep[j]) | fill[j]);
        }
      }
      break;
    }
    case kShuffleClip:
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* x = in.z + t * D;
        const int64_t* o = in.order + t * D;
        scalar_t* y = out.z_p + t * D;
        for (int64_t j = 0; j < len; ++j) {
          if (!m[j]) {
            y[j] = x[j];
            continue;
          }
          const int64_t src = o[j];
          if (src < 0 || src >= T) {
            *bad = src;
            return false;
          }
          y[j] = in.z[src * D + j];
        }
      }
      break;
    default:  // kStdOnly
      break;
  }
  return true;
}

template <typename scalar_t>
using TileFn = bool (*)(const TileInputs<scalar_t>&, const TileOutputs<scalar_t>&, int64_t,
                        int64_t, int64_t, scalar_t, int64_t, int64_t*);

template <typename scalar_t>
bool temporal_std_tile_baseline(const TileInputs<scalar_t>& in, const TileOutputs<scalar_t>& out,
                                int64_t T, int64_t D, int64_t len, scalar_t alpha,
                                int64_t strategy, int64_t* bad) {
  return temporal_std_tile<scalar_t, ScalarSqrt>(in, out, T, D, len, alpha, strategy, bad);
}

#if defined(__x86_64__) && defined(__GNUC__)
// The extension is built for baseline x86-64 (SSE2): the same tile code compiled once more for
// AVX2 + FMA, taken when the CPU has them. The float32 STD is accumulated in double, so the
// wider vectors are what keeps the kernel at memory speed rather than conversion-bound.
struct Avx2Sqrt {
  __attribute__((target("avx2,fma"))) static void apply(double* v, int64_t n) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      _mm256_storeu_pd(v + j, _mm256_sqrt_pd(_mm256_loadu_pd(v + j)));
    }
    for (; j < n; ++j) {
      v[j] = std::sqrt(v[j]);
    }
  }
};

template <typename scalar_t>
__attribute__((target("avx2,fma"))) bool temporal_std_tile_avx2(
    const TileInputs<scalar_t>& in, const TileOutputs<scalar_t>& out, int64_t T, int64_t D,
    int64_t len, scalar_t alpha, int64_t strategy, int64_t* bad) {
  return temporal_std_tile<scalar_t, Avx2Sqrt>(in, out, T, D, len, alpha, strategy, bad);
}

template <typename scalar_t>
TileFn<scalar_t> select_tile_fn() {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2 ? &temporal_std_tile_avx2<scalar_t> : &temporal_std_tile_baseline<scalar_t>;
}

#else  // not x86-64: the compiler's baseline vectors only

template <typename scalar_t>
TileFn<scalar_t> select_tile_fn() {
  return &temporal_std_tile_baseline<scalar_t>;
}

#endif

// Latents per tile: as wide as kMaxBlock while the T x block tile fits kTileBytes.
int64_t block_width(int64_t T, int64_t D, size_t elem_size) {
  const auto fit = static_cast<int64_t>(kTileBytes / (static_cast<int64_t>(elem_size) * T));
  return std::min(D, std::clamp(fit, kMinBlock, kMaxBlock));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> temporal_std_mask_cpu(
    const at::Tensor& z_in, double alpha, int64_t strategy,
    const std::optional<at::Tensor>& noise_in, const std::optional<at::Tensor>& order_in,
    const std::optional<at::Tensor>& mask_in) {
  check_temporal_std_mask(z_in, strategy, noise_in, order_in, mask_in);
  TORCH_CHECK(z_in.device().is_cpu(), "temporal_std_mask (CPU kernel): expected CPU tensors, got ",
              z_in.device());
  TORCH_CHECK(z_in.scalar_type() == at::kFloat || z_in.scalar_type() == at::kDouble,
              "temporal_std_mask (CPU kernel): expected z of dtype float32 or float64, got ",
              z_in.scalar_type(), " (the CPU kernel has no reduced precision: use the eager backend)");
  const at::Tensor z = z_in.contiguous();
  const at::Tensor noise = noise_in ? noise_in->contiguous() : at::Tensor();
  const at::Tensor order = order_in ? order_in->contiguous() : at::Tensor();
  const at::Tensor mask_given = mask_in ? mask_in->contiguous() : at::Tensor();
  const int64_t B = z.size(0), T = z.size(1), D = z.size(2);

  at::Tensor z_p =
      strategy == kStdOnly ? at::empty({0}, z.options()) : at::empty(z.sizes(), z.options());
  at::Tensor mask = at::empty({B, D}, z.options().dtype(at::kBool));
  at::Tensor std_out = at::empty({B, D}, z.options());
  if (B * D == 0) {
    return {z_p, mask, std_out};
  }

  const int64_t block = block_width(T, D, z.element_size());
  const int64_t blocks_per_clip = (D + block - 1) / block;
  // a tile is T * block elements, already thousands: a few per task are enough
  const int64_t grain = std::max<int64_t>(1, 16384 / (T * block));
  std::atomic<bool> in_range{true};
  std::atomic<int64_t> bad_index{0};
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "temporal_std_mask_cpu", [&] {
    const scalar_t* z_ptr = z.const_data_ptr<scalar_t>();
    const scalar_t* noise_ptr = noise.defined() ? noise.const_data_ptr<scalar_t>() : nullptr;
    const int64_t* order_ptr = order.defined() ? order.const_data_ptr<int64_t>() : nullptr;
    const bool* mask_in_ptr = mask_given.defined() ? mask_given.const_data_ptr<bool>() : nullptr;
    scalar_t* z_p_ptr = strategy == kStdOnly ? nullptr : z_p.mutable_data_ptr<scalar_t>();
    bool* mask_ptr = mask.mutable_data_ptr<bool>();
    scalar_t* std_ptr = std_out.mutable_data_ptr<scalar_t>();
    // alpha rounded to z's dtype, as PyTorch does for `std < alpha` with a Python float
    const auto alpha_s = static_cast<scalar_t>(alpha);
    const TileFn<scalar_t> tile_fn = select_tile_fn<scalar_t>();
    at::parallel_for(0, B * blocks_per_clip, grain, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end && in_range.load(std::memory_order_relaxed); ++item) {
        const int64_t b = item / blocks_per_clip;
        const int64_t d0 = (item - b * blocks_per_clip) * block;
        const int64_t len = std::min(block, D - d0);
        const int64_t tile = b * T * D + d0;  // z[b, 0, d0]
        const int64_t row = b * D + d0;       // std[b, d0]
        const TileInputs<scalar_t> in{z_ptr + tile, noise_ptr ? noise_ptr + row : nullptr,
                                      order_ptr ? order_ptr + tile : nullptr,
                                      mask_in_ptr ? mask_in_ptr + row : nullptr};
        const TileOutputs<scalar_t> out{z_p_ptr ? z_p_ptr + tile : nullptr, mask_ptr + row,
                                        std_ptr + row};
        int64_t bad = 0;
        if (!tile_fn(in, out, T, D, len, alpha_s, strategy, &bad)) {
          bad_index.store(bad, std::memory_order_relaxed);
          in_range.store(false, std::memory_order_relaxed);
        }
      }
    });
  });
  TORCH_CHECK(in_range.load(), "temporal_std_mask: order holds index ", bad_index.load(),
              ", out of range for T = ", T, " frames (expected a permutation of 0..", T - 1,
              " along T)");
  return {z_p, mask, std_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(s2vc, CPU, m) {
  m.impl("temporal_std_mask", &temporal_std_mask_cpu);
}

}  // namespace s2vc
