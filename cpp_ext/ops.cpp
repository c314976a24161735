// Schema of the s2vc custom ops and the Python module that loads them.
//
// Importing s2vc._C loads this shared library; its static initialisers register the schema
// below and the kernels in cpu/*.cpp (and cuda/*.cu when built with CUDA) with the dispatcher.
// Python calls the ops as torch.ops.s2vc.<name>; the module itself holds nothing.
#include <Python.h>
#include <torch/library.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",                                                   // name
      "s2vc compiled ops; call them as torch.ops.s2vc.*",    // doc
      -1,                                                     // no per-interpreter state
      nullptr,                                                // no methods
  };
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(s2vc, m) {
  // Inverse of the GLOW-style affine coupling half-step with FrEIA's soft clamp:
  //   v (N, n, *S), raw (N, 2n, *S) = [s | t]  ->  u = (v - t) / exp(clamp * 0.636 * atan(s / clamp))
  // Inference only (no autograd kernel). Inputs whose samples are not each contiguous are made
  // contiguous (channel slices x[:, a:b] of a contiguous tensor are read in place); the output
  // is a new contiguous tensor of v's shape, dtype and device.
  m.def("affine_coupling_inverse(Tensor v, Tensor raw, float clamp) -> Tensor",
        {at::Tag::pt2_compliant_tag});

  // The same, written into out (N, n, *S) of v's dtype and device. v, raw and out may each be a
  // channel slice of a larger (N, C, *S) tensor: every sample's block [1:] contiguous, the batch
  // stride free; any other layout is an error (no copies are made). out must share no memory
  // with v or raw. Inference only.
  m.def("affine_coupling_inverse_out(Tensor v, Tensor raw, float clamp, Tensor(a!) out) -> ()",
        {at::Tag::pt2_compliant_tag});

  // Static-cue suppression of engine/suppression.py (the paper's eqs. (4)-(5)) in one pass:
  //   z (B, T, D) float32/float64, T >= 2  ->  std (B, D): unbiased STD over T (two-pass: mean,
  //   then squared deviations / (T - 1)); mask (B, D) bool: the given mask (copied), else
  //   std < alpha (NaN std -> False); z_p (B, T, D): z with the masked latents replaced.
  // strategy: -1 std and mask only (z_p is an empty (0,) tensor, nothing written); 0 zero;
  //   1 noise: z_p[b, t, d] = noise[b, d] (noise (B, D), z's dtype); 2 shuffle_clip:
  //   z_p[b, t, d] = z[b, order[b, t, d], d] (order (B, T, D) int64, a permutation of 0..T-1
  //   along T; read only where masked: an index out of range is an error on the CPU and a
  //   device-side assert on CUDA). noise / order must be given exactly for their strategy.
  // Inference only (no autograd kernel). Non-contiguous inputs are made contiguous; the outputs
  // are new contiguous tensors on z's device.
  m.def("temporal_std_mask(Tensor z, float alpha, int strategy, Tensor? noise, Tensor? order, "
        "Tensor? mask) -> (Tensor z_p, Tensor mask, Tensor std)",
        {at::Tag::pt2_compliant_tag});
}
