"""s2vc: suppressing static visual cues via normalizing flows (S²VC, AAAI 2022).

The names a user's own code needs (see the README, "Use S²VC in your own trainer")::

    from s2vc import MotionPreserve                  # the video transform: tensor in, same kind out
    from s2vc import load_flow, MotionPreservingGenerator, temporal_std_mask

They are imported on first use (PEP 562 ``__getattr__``), so ``import s2vc`` and the ``s2vc``
command's start do not pay for torch before a command needs it.

This package holds the ``s2vc`` command (``s2vc.cli``, ``s2vc.commands``) over the libraries
``s2vc.engine`` (the generator; it loads the compiled ops ``s2vc._C`` when they were built),
``s2vc.training`` and ``s2vc.export``. See docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the engine module that defines it
_EXPORTS = {
    "MotionPreserve": "s2vc.engine.transform",
    "load_flow": "s2vc.engine.checkpoint",
    "MotionPreservingGenerator": "s2vc.engine.generator",
    "GenerationStats": "s2vc.engine.generator",
    "temporal_std_mask": "s2vc.engine.suppression",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 's2vc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value          # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
