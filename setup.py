"""Build and install s2vc: the Python packages and the compiled ops ``s2vc._C``.

Install (the torch already in the environment is built against; build isolation would fetch
another multi-GB torch)::

    pip install -e . --no-build-isolation            # editable, the usual way
    pip install -e . --no-build-isolation --no-deps  # when the pins are satisfied some other way

The extension always holds the C++ CPU kernels (OpenMP). CUDA kernels are added whenever a CUDA
toolkit is found (nvcc and cuda_runtime.h in one folder); a GPU is not needed to build them.

Environment switches:

    S2VC_CUDA=1            CUDA kernels required: stop with an error when no toolkit is found
    S2VC_CUDA=0            C++ CPU kernels only, even when a toolkit is present
    CUDA_HOME / CUDA_PATH  the toolkit to use (ignored, with a message, when it is not one)
    TORCH_CUDA_ARCH_LIST   GPU targets; default "8.0;9.0+PTX" (A100 and H100/H200 machine code,
                           plus sm_90 PTX that newer GPUs compile at load time)
    MAX_JOBS               parallel compile jobs (default 2)

What was decided, and why, is printed as "[s2vc setup] ..." lines; pip shows them with -v.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"
DEFAULT_MAX_JOBS = "2"


def _say(msg: str) -> None:
    # pip hides a build's stdout unless -v is given; stderr shows up in its error report.
    print(f"[s2vc setup] {msg}", file=sys.stderr, flush=True)


try:
    import torch
    from torch.utils import cpp_extension
except ImportError as exc:  # pragma: no cover - the message is the point
    sys.exit(
        "[s2vc setup] PyTorch is not importable in the Python that runs this build "
        f"({sys.executable}): {exc}.\n"
        "The compiled ops are built against the torch already installed, so install torch first "
        "and build without isolation:\n"
        "    pip install torch==2.14.1\n"
        "    pip install -e . --no-build-isolation\n"
        "(With build isolation pip would run this in a fresh environment without torch.)"
    )


# ---------------------------------------------------------------------------------------------
# Packages: import names under one namespace, each mapped onto its top-level folder.
# ---------------------------------------------------------------------------------------------
PACKAGE_ROOTS = {
    "s2vc": "s2vc",
    "s2vc.engine": "engine",
    "s2vc.training": "training",
    "s2vc.export": "export",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    """The four namespace roots plus every sub-package (a folder with ``__init__.py``) below them."""
    packages, package_dir = [], {}
    for name, folder in PACKAGE_ROOTS.items():
        base = os.path.join(ROOT, folder)
        if not os.path.isdir(base):
            # git keeps no empty folders; a checkout may lack one that holds nothing yet
            _say(f"note: {folder}/ does not exist, so {name} is not installed (reinstall once "
                 "it exists)")
            continue
        packages.append(name)
        package_dir[name] = folder
        for init in sorted(glob.glob(os.path.join(base, "**", "__init__.py"), recursive=True)):
            rel = os.path.relpath(os.path.dirname(init), base)
            if rel == ".":
                continue
            sub = name + "." + rel.replace(os.sep, ".")
            packages.append(sub)
            package_dir[sub] = os.path.join(folder, rel)
    return packages, package_dir


# ---------------------------------------------------------------------------------------------
# CUDA toolkit discovery: a folder holding both bin/nvcc and include/cuda_runtime.h.
# ---------------------------------------------------------------------------------------------
def _is_toolkit(path: str | None) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, "bin", "nvcc")) and os.path.isfile(
        os.path.join(path, "include", "cuda_runtime.h")
    )


def _nvcc_target(nvcc: str) -> str:
    """Follow symlinks, and wrapper scripts of the form ``exec /path/to/nvcc "$@"``."""
    seen = set()
    while nvcc not in seen:
        seen.add(nvcc)
        nvcc = os.path.realpath(nvcc)
        try:
            with open(nvcc, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            break
        if not head.startswith(b"#!"):
            break  # a real binary
        match = re.search(rb"exec\s+[\"']?(/[^\s\"']*nvcc)\b", head)
        if not match:
            break
        nvcc = match.group(1).decode()
    return nvcc


def find_cuda_toolkit() -> tuple[str | None, str]:
    """Return (toolkit folder or None, how it was found / why none was)."""
    notes = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(var)
        if value:
            if _is_toolkit(value):
                return os.path.realpath(value), f"from ${var}={value}"
            notes.append(f"${var}={value} holds no bin/nvcc + include/cuda_runtime.h, ignored")

    nvcc = shutil.which("nvcc")
    if nvcc:
        real = _nvcc_target(nvcc)
        home = os.path.dirname(os.path.dirname(real))
        if _is_toolkit(home):
            via = f" (via {nvcc})" if real != nvcc else ""
            return home, f"from nvcc on PATH: {real}{via}"
        notes.append(f"nvcc on PATH ({nvcc} -> {real}) is not inside a toolkit")
    # /usr/local/cuda is usually the distribution's chosen symlink; then the newest version
    for cand in ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True):
        if _is_toolkit(cand):
            return os.path.realpath(cand), f"found at {cand}"
    notes.append("no nvcc on PATH and no /usr/local/cuda*")
    return None, "; ".join(notes)


def _cuda_library_headers(toolkit: str) -> list[str]:
    """Include dirs for cuBLAS / cuSPARSE headers that ATen/cuda/CUDAContext.h pulls in.

    A slim toolkit may lack them; the torch wheel's ``nvidia`` packages ship them
    (``nvidia/cu13/include`` for CUDA 13, ``nvidia/cublas/include`` ... for CUDA 12).
    """
    wanted = ["cublas_v2.h", "cusparse.h"]
    missing = [h for h in wanted if not os.path.isfile(os.path.join(toolkit, "include", h))]
    if not missing:
        return []
    try:
        import nvidia  # namespace package installed with the CUDA build of torch

        roots = list(nvidia.__path__)
    except ImportError:
        roots = []
    found = []
    for header in missing:
        for root in roots:
            hits = sorted(glob.glob(os.path.join(root, "*", "include", header)))
            if hits:
                inc = os.path.dirname(hits[0])
                if inc not in found:
                    found.append(inc)
                break
        else:
            _say(f"warning: {header} is in neither {toolkit}/include nor the nvidia wheels; "
                 "the CUDA build may fail")
    return found


def decide_cuda() -> tuple[str | None, str]:
    """(toolkit or None, reason). Decided from the toolkit's presence, never from a GPU."""
    switch = os.environ.get("S2VC_CUDA", "").strip().lower()
    if switch in ("0", "false", "no", "off"):
        return None, "S2VC_CUDA=0: CPU-only build requested"
    if torch.version.cuda is None:
        if switch in ("1", "true", "yes", "on"):
            sys.exit(f"[s2vc setup] S2VC_CUDA=1 but this torch ({torch.__version__}) is a "
                     "CPU-only build: CUDA kernels could not be loaded by it.")
        return None, f"torch {torch.__version__} has no CUDA support"
    toolkit, how = find_cuda_toolkit()
    if toolkit is None:
        if switch in ("1", "true", "yes", "on"):
            sys.exit("[s2vc setup] S2VC_CUDA=1 but no CUDA toolkit was found "
                     f"(a folder with bin/nvcc and include/cuda_runtime.h): {how}. "
                     "Set CUDA_HOME to the toolkit, or S2VC_CUDA=0 for a CPU-only build.")
        return None, f"no CUDA toolkit found ({how})"
    forced = " (S2VC_CUDA=1)" if switch else ""
    return toolkit, f"CUDA toolkit {how}{forced}"


# ---------------------------------------------------------------------------------------------
# The extension.
# ---------------------------------------------------------------------------------------------
def _rel(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def extensions() -> list:
    toolkit, reason = decide_cuda()
    sources = _rel("cpp_ext/ops.cpp") + _rel("cpp_ext/cpu/*.cpp")
    cxx_flags = ["-O3", "-fopenmp"]
    link_flags = ["-fopenmp"]
    include_dirs = [os.path.join(ROOT, "cpp_ext")]
    if toolkit is None:
        _say(f"building C++ CPU kernels only: {reason}")
        return [cpp_extension.CppExtension(
            "s2vc._C", sources, include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags,
        )]

    # torch guessed CUDA_HOME at import (from the first nvcc on PATH, which may be a wrapper
    # script outside any toolkit); point it, and the compile steps, at the real one.
    os.environ["CUDA_HOME"] = toolkit
    cpp_extension.CUDA_HOME = toolkit
    include_dirs += _cuda_library_headers(toolkit)
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if not arch:
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch = DEFAULT_ARCH_LIST
        arch_note = "default"
    else:
        arch_note = "from $TORCH_CUDA_ARCH_LIST"
    sources += _rel("cpp_ext/cuda/*.cu")
    _say(f"building C++ CPU + CUDA kernels: {reason}; CUDA_HOME={toolkit}; "
         f"arch list {arch!r} ({arch_note}); extra includes {include_dirs[1:]}")
    return [cpp_extension.CUDAExtension(
        "s2vc._C", sources, include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
        extra_link_args=link_flags,
    )]


def main() -> None:
    os.environ.setdefault("MAX_JOBS", DEFAULT_MAX_JOBS)
    packages, package_dir = _packages()
    setup(
        name="s2vc",
        version="0.1.0",
        description="S2VC: self-supervised video representation learning with motion-preserved "
                    "videos from a normalizing flow (PyTorch implementation)",
        python_requires=">=3.10",
        packages=packages,
        package_dir=package_dir,
        # data shipped inside the packages (e.g. the bundled flow checkpoint) for wheel installs
        package_data={name: ["*.pt", "*.json", "*.yaml", "*.tsv", "**/*.pt", "**/*.json", "**/*.yaml"]
                      for name in PACKAGE_ROOTS},
        ext_modules=extensions(),
        cmdclass={"build_ext": cpp_extension.BuildExtension},
        # ranges here (the engine also runs on the torch 2.11 of GPU images); requirements.txt
        # holds the exact versions the project is tested with
        install_requires=[
            "torch>=2.11,<=2.14.1",
            "torchvision>=0.26,<=0.29.1",
            "numpy>=1.26",
            "av>=12",
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "onnxscript>=0.2",
            "tqdm>=4.60",
            "tensorboard>=2.14",
            "pillow>=10",
            "scikit-video>=1.1.11",
            "matplotlib>=3.7",       # sample photo for flow training; figures
        ],
        extras_require={
            "test": ["pytest", "pytest-benchmark"],
            "tensorrt": ["tensorrt"],
        },
        entry_points={"console_scripts": ["s2vc = s2vc.cli:main"]},
        zip_safe=False,
    )


if __name__ == "__main__":
    main()
