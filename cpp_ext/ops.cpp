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
  // Inference only (no autograd kernel). Non-contiguous inputs are made contiguous; the
  // output is a new contiguous tensor of v's shape, dtype and device.
  m.def("affine_coupling_inverse(Tensor v, Tensor raw, float clamp) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
