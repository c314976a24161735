"""s2vc.export: TorchScript / ONNX export of the flow and the generator, and the TensorRT engine
builder (``python export/build_trt.py``). Runtime code in ``s2vc.engine`` never imports this."""
