"""s2vc: suppressing static visual cues via normalizing flows (S²VC, AAAI 2022).

``import s2vc`` loads the compiled op library (``s2vc._C``) when it was built; everything works
without it through the plain PyTorch reference path (``s2vc._extension.EXT_AVAILABLE`` says which).
"""
from s2vc import _extension  # noqa: F401  (registers torch.ops.s2vc.* when the extension is built)

__version__ = "0.1.0"
