"""The build: the compiled extension is there (or its absence is loud), the install layout,
setup.py's decisions (toolkit, CUDA versions, GPU targets, compiler), the optional build without a
compiler, the build record the loader checks before loading, and the build backend.

S2VC_REQUIRE_EXT=1 (CI sets it) turns a missing or unloadable s2vc._C into a failure here, so the
skips in tests/test_ext_ops.py cannot hide a broken build; S2VC_REQUIRE_EXT=cuda also requires
the CUDA kernels (scripts/gpu_check.sh sets it).
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from s2vc.engine import extension as ext

ROOT = Path(__file__).resolve().parents[1]
REQUIRE = os.environ.get("S2VC_REQUIRE_EXT", "").strip().lower()
REQUIRED = REQUIRE in ("1", "true", "yes", "cuda")


def _need_ext() -> None:
    if ext.EXT_AVAILABLE:
        return
    if REQUIRED:
        pytest.fail(f"S2VC_REQUIRE_EXT={REQUIRE} but the extension is missing: {ext.EXT_ERROR}")
    pytest.skip(f"compiled extension not built: {ext.EXT_ERROR}")


def test_extension_loads():
    _need_ext()
    assert ext.EXT_ERROR is None


def test_cuda_kernels_present_when_required():
    if REQUIRE != "cuda":
        pytest.skip("S2VC_REQUIRE_EXT is not 'cuda'")
    _need_ext()
    assert ext.ext_has_cuda(), "S2VC_REQUIRE_EXT=cuda but s2vc._C holds no CUDA kernels"


def test_extension_registers_ops_from_inside_the_package():
    _need_ext()
    from s2vc import _C

    assert Path(_C.__file__).resolve().parent == ROOT / "s2vc"
    op = torch.ops.s2vc.affine_coupling_inverse.default
    assert str(op._schema) == (
        "s2vc::affine_coupling_inverse(Tensor v, Tensor raw, float clamp) -> Tensor")
    assert ext.ext_has_kernel("affine_coupling_inverse", "cpu")


def test_build_record_matches_this_torch():
    _need_ext()
    info = ext.BUILD_INFO
    assert info["built"] is True
    assert (info["torch"], info["torch_cuda"]) == (torch.__version__, torch.version.cuda)
    assert info["cuda_kernels"] == ext.ext_has_cuda()
    if info["cuda_kernels"]:
        assert info["cuda_sass"] or info["cuda_ptx"]


def test_install_layout(tmp_path):
    """From another folder: s2vc.* resolves to the repo's folders; nothing generic is importable."""
    code = (
        "import importlib.util as u, json, s2vc.engine, s2vc.engine.extension as e\n"
        "print(json.dumps({'engine': s2vc.engine.__path__[0],"
        " 'generic': [n for n in ('engine', 'training', 'export') if u.find_spec(n)],"
        " 'ext': e.EXT_AVAILABLE}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "No module named 's2vc'" in proc.stderr and not REQUIRED:
        pytest.skip("s2vc is not installed (pip install -e . --no-build-isolation)")
    assert proc.returncode == 0, proc.stderr
    import json

    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["engine"]).resolve() == ROOT / "engine"
    assert got["generic"] == []
    assert got["ext"] == ext.EXT_AVAILABLE


# --------------------------------------------------------------------------- setup.py logic


@pytest.fixture()
def setup_module():
    spec = importlib.util.spec_from_file_location("s2vc_setup_under_test", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines functions only; setup() runs under __main__
    return module


def _fake_toolkit(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "bin" / "nvcc").write_bytes(b"\x7fELF not really")
    (root / "bin" / "nvcc").chmod(0o755)
    (root / "include" / "cuda_runtime.h").write_text("// fake\n")
    return root


def test_toolkit_found_through_nvcc_wrapper_script(setup_module, tmp_path, monkeypatch):
    toolkit = _fake_toolkit(tmp_path / "cuda-99.0")
    wrapper_bin = tmp_path / "wrap" / "bin"
    wrapper_bin.mkdir(parents=True)
    (wrapper_bin / "nvcc").write_text(f'#!/bin/sh\nexec {toolkit}/bin/nvcc "$@"\n')
    (wrapper_bin / "nvcc").chmod(0o755)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(wrapper_bin))
    found, how = setup_module.find_cuda_toolkit()
    assert Path(found) == toolkit.resolve(), how


def test_toolkit_found_through_symlink_and_env(setup_module, tmp_path, monkeypatch):
    toolkit = _fake_toolkit(tmp_path / "cuda-99.0")
    link_bin = tmp_path / "links"
    link_bin.mkdir()
    (link_bin / "nvcc").symlink_to(toolkit / "bin" / "nvcc")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "not-a-toolkit"))  # ignored: no nvcc there
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(link_bin))
    found, how = setup_module.find_cuda_toolkit()
    assert Path(found) == toolkit.resolve()
    monkeypatch.setenv("CUDA_HOME", str(toolkit))
    found, how = setup_module.find_cuda_toolkit()
    assert Path(found) == toolkit.resolve() and "CUDA_HOME" in how


def _fake_nvcc(path: Path, release: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.88'\n")
    path.chmod(0o755)


def _fake_cu13_wheels(site: Path) -> Path:
    """site-packages/nvidia/cu13 as nvidia-cuda-nvcc, -nvvm, -crt, -cccl and -runtime 13.0 lay it
    out (read from the 13.0.88 wheels: one shared folder, no version.json, lib/ not lib64/)."""
    cu13 = site / "nvidia" / "cu13"
    _fake_nvcc(cu13 / "bin" / "nvcc", "13.0")
    for rel in ("nvvm/bin/cicc", "include/crt/host_config.h", "include/cccl/nv/target", "include/nv/target",
                "include/cuda_runtime.h", "include/cusolverDn.h", "lib/libcudart.so.13"):
        (cu13 / rel).parent.mkdir(parents=True, exist_ok=True)
        (cu13 / rel).write_text("// fake\n")
    return cu13


@pytest.fixture()
def no_system_toolkit(setup_module, tmp_path, monkeypatch):
    """No $CUDA_HOME, no nvcc on PATH, no /usr/local/cuda*: only what a test lays out counts."""
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(setup_module, "SYSTEM_TOOLKITS", (str(tmp_path / "usr-local" / "cuda-*"),))
    return setup_module


def test_toolkit_found_in_the_cuda13_pip_wheels(no_system_toolkit, tmp_path):
    setup = no_system_toolkit
    cu13 = _fake_cu13_wheels(tmp_path / "site")
    roots = [str(tmp_path / "site" / "nvidia")]
    found, how = setup.find_cuda_toolkit("13.0", roots)
    assert Path(found) == cu13 and "pip wheels" in how
    assert setup.toolkit_version(found) == "13.0"
    assert setup.wheel_toolkit_missing(found, "13.0") is None
    # a CUDA 12 system toolkit earlier in the search does not hide it from a CUDA 13 torch ...
    system = _fake_toolkit(tmp_path / "usr-local" / "cuda-12.8")
    (system / "version.json").write_text(json.dumps({"cuda": {"version": "12.8.1"}}))
    found, how = setup.find_cuda_toolkit("13.0", roots)
    assert Path(found) == cu13 and "skipped" in how, how
    # ... and is the one a CUDA 12 torch gets
    assert Path(setup.find_cuda_toolkit("12.8", roots)[0]) == system
    # the wheels hold libcudart.so.13 only: the linker's -lcudart gets a libcudart.so beside the build
    shim = setup.cudart_link_dir(found, str(tmp_path / "build"))
    assert os.readlink(os.path.join(shim, "libcudart.so")) == str(cu13 / "lib" / "libcudart.so.13")
    assert setup.cudart_link_dir(str(system), str(tmp_path / "build2")) is None  # no runtime there


def test_incomplete_wheel_toolkit_names_the_wheels_to_install(no_system_toolkit, tmp_path, monkeypatch):
    setup = no_system_toolkit
    cu13 = _fake_cu13_wheels(tmp_path / "site")
    (cu13 / "nvvm" / "bin" / "cicc").unlink()
    for rel in ("include/cccl/nv/target", "include/nv/target"):
        (cu13 / rel).unlink()
    why = setup.wheel_toolkit_missing(str(cu13), "13.0")
    assert "lacks nvidia-nvvm, nvidia-cuda-cccl" in why
    assert 'pip install "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*"' in why
    monkeypatch.setattr(setup, "nvidia_wheel_roots", lambda: [str(tmp_path / "site" / "nvidia")])
    cuda13_torch = types.SimpleNamespace(version=types.SimpleNamespace(cuda="13.0"), __version__="2.14.1+cu130")
    toolkit, reason = setup.decide_cuda(cuda13_torch)
    assert toolkit is None and "lacks nvidia-nvvm" in reason
    assert setup.wheel_toolkit_missing("/usr/local/cuda-13.0", "13.0") is None  # a system toolkit


def test_cuda12_wheel_layout_and_library_headers(no_system_toolkit, tmp_path, monkeypatch):
    """CUDA 12's wheels: one folder per wheel; cuda_runtime.h and cuSOLVER's header (CUDAContext.h
    includes cusolverDn.h) come from their own folders."""
    setup = no_system_toolkit
    nvidia = tmp_path / "site" / "nvidia"
    _fake_nvcc(nvidia / "cuda_nvcc" / "bin" / "nvcc", "12.8")
    for rel in ("cuda_runtime/include/cuda_runtime.h", "cublas/include/cublas_v2.h",
                "cusparse/include/cusparse.h", "cusolver/include/cusolverDn.h", "cuda_runtime/lib/libcudart.so.12"):
        (nvidia / rel).parent.mkdir(parents=True, exist_ok=True)
        (nvidia / rel).write_text("// fake\n")
    found, how = setup.find_cuda_toolkit("12.8", [str(nvidia)])
    assert Path(found) == nvidia / "cuda_nvcc", how
    monkeypatch.setattr(setup, "nvidia_wheel_roots", lambda: [str(nvidia)])
    assert setup._cuda_library_headers(found) == [
        str(nvidia / f"{lib}/include") for lib in ("cuda_runtime", "cublas", "cusparse", "cusolver")]
    shim = setup.cudart_link_dir(found, str(tmp_path / "build"))
    assert os.readlink(os.path.join(shim, "libcudart.so")).endswith("cuda_runtime/lib/libcudart.so.12")


@pytest.mark.skipif(torch.version.cuda is None, reason="this torch is a CPU build: no CUDA kernels to miss")
def test_a_cuda_torch_without_cuda_kernels_says_so_on_the_terminal(setup_module, monkeypatch):
    """pip shows a successful build's output only with -v: the line goes to the terminal too."""
    written = []

    class Tty(io.StringIO):
        def close(self):
            written.append(self.getvalue())
            super().close()

    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: Tty() if path == "/dev/tty" else real_open(path, *a, **k))
    monkeypatch.delenv("S2VC_CUDA", raising=False)
    monkeypatch.setattr(setup_module, "decide_cuda", lambda torch_module=None: (None, "no CUDA toolkit found"))
    plan, _ = setup_module.plan_build()
    assert plan.info["cuda_kernels"] is False and plan.info["cuda_reason"] == "no CUDA toolkit found"
    assert written == ["[s2vc setup] building C++ CPU kernels only (no CUDA kernels): no CUDA toolkit found\n"]


def test_toolkit_versions_sort_as_numbers(setup_module):
    paths = ["/usr/local/cuda-12.9", "/usr/local/cuda-12.10", "/usr/local/cuda-13.0", "/usr/local/cuda-9.2"]
    assert sorted(paths, key=setup_module._version_key, reverse=True) == [
        "/usr/local/cuda-13.0", "/usr/local/cuda-12.10", "/usr/local/cuda-12.9", "/usr/local/cuda-9.2"]


def test_cuda_switch(setup_module, monkeypatch):
    monkeypatch.setenv("S2VC_CUDA", "0")
    assert setup_module.decide_cuda()[0] is None
    monkeypatch.setattr(setup_module, "find_cuda_toolkit", lambda *a, **k: (None, "none here"))
    monkeypatch.setenv("S2VC_CUDA", "1")
    with pytest.raises(SystemExit, match="S2VC_CUDA=1 but"):
        setup_module.decide_cuda()
    monkeypatch.delenv("S2VC_CUDA")
    assert setup_module.decide_cuda()[0] is None  # no toolkit: CPU only, no error


def test_cuda_major_mismatch_builds_cpu_only(setup_module):
    decide = setup_module.cuda_decision
    toolkit, reason = decide("", "13.0", "2.14.1+cu130", "/opt/cuda-12.8", "found", "12.8")
    assert toolkit is None
    assert "CUDA 12.8 but torch 2.14.1+cu130 is built for CUDA 13.0 (major versions differ)" in reason
    assert decide("", "13.0", "2.14.1", "/opt/cuda-13.1", "found", "13.1")[0] == "/opt/cuda-13.1"
    with pytest.raises(SystemExit, match="S2VC_CUDA=1 but CUDA kernels cannot be built: .*major versions differ"):
        decide("1", "12.8", "2.11.0+cu128", "/opt/cuda-13.0", "found", "13.0")
    assert "CPU-only build" in decide("", None, "2.14.1+cpu", "/opt/cuda-13.0", "found", "13.0")[1]
    assert decide("0", "13.0", "2.14.1", "/opt/cuda-13.0", "found", "13.0") == (
        None, "S2VC_CUDA=0: CPU-only build requested")


def test_default_gpu_targets(setup_module):
    # T4, A100, A10, L4, H100 and PTX of the highest, restricted to what nvcc supports
    assert setup_module.default_arch_list(None) == "7.5;8.0;8.6;8.9;9.0+PTX"
    cuda13 = {"7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "12.0"}
    assert setup_module.default_arch_list(cuda13) == "7.5;8.0;8.6;8.9;9.0+PTX"
    cuda11_4 = {"3.5", "5.0", "6.0", "7.0", "7.5", "8.0", "8.6"}           # no 8.9 / 9.0 yet
    assert setup_module.default_arch_list(cuda11_4) == "7.5;8.0;8.6+PTX"
    with pytest.raises(ValueError, match="set TORCH_CUDA_ARCH_LIST"):
        setup_module.default_arch_list({"12.0"})
    flags = ["-gencode=arch=compute_75,code=sm_75", "-gencode=arch=compute_90,code=compute_90",
             "-gencode=arch=compute_90,code=sm_90", "-gencode=arch=compute_100a,code=[sm_100a,compute_100a]"]
    assert setup_module.compiled_arches(flags) == (["7.5", "9.0", "10.0a"], ["9.0", "10.0a"])


def test_missing_compiler_is_named(setup_module, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++ -O2")
    assert "$CXX=/nonexistent/g++ -O2 is not an executable" in setup_module.missing_compiler()
    monkeypatch.setenv("CXX", sys.executable)              # any executable will do for the probe
    monkeypatch.setenv("CC", "/nonexistent/gcc")
    assert "$CC=/nonexistent/gcc" in setup_module.missing_compiler()


def _build_copy(tmp_path: Path) -> Path:
    """A copy of what setup.py builds from (sources and package folders), to build in."""
    copy = tmp_path / "repo"
    for name in ("setup.py", "cpp_ext", "s2vc", "engine", "training", "export"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("*.so", "__pycache__", "_build_info.json"))
        else:
            copy.mkdir(exist_ok=True)
            shutil.copy2(src, copy / name)
    return copy


@pytest.mark.parametrize("required", [False, True])
def test_no_compiler_installs_without_the_ops(tmp_path, required):
    copy = _build_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("S2VC_REQUIRE_EXT", "S2VC_CUDA")}
    env.update(CC="/nonexistent/cc", CXX="/nonexistent/c++")
    if required:
        env["S2VC_REQUIRE_EXT"] = "1"
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if "were not built" in ln]
    assert len(lines) == 1, proc.stderr
    assert "no C++ compiler: $CXX=/nonexistent/c++ is not an executable on PATH" in lines[0]
    assert (proc.returncode != 0) == required, proc.stderr
    info = json.loads((copy / "s2vc" / "_build_info.json").read_text())
    assert info["built"] is False and "no C++ compiler" in info["reason"]
    assert not list((copy / "s2vc").glob("_C*.so"))


# --------------------------------------------------------------------------- the loader


def test_loader_refuses_an_extension_built_for_another_torch(monkeypatch):
    record = {"built": True, "torch": "2.11.0+cu128", "torch_cuda": "12.8"}
    monkeypatch.setattr(ext, "_read_build_info", lambda: (record, True))
    available, error, info = ext._load()
    assert not available and info == record
    assert f"built against torch 2.11.0+cu128 (CUDA 12.8) but this environment has torch {torch.__version__}" in error
    assert "pip install -e . --no-build-isolation" in error
    assert ext.build_mismatch_reason(record, "2.11.0+cu128", "12.8") is None
    assert ext.build_mismatch_reason(record, "2.11.0+cu126", "12.6") is not None


def test_loader_says_why_nothing_was_built(monkeypatch):
    monkeypatch.setattr(ext, "_read_build_info", lambda: ({"built": False, "reason": "no C++ compiler: cc"}, False))
    available, error, _ = ext._load()
    assert not available and "was not built at install: no C++ compiler: cc" in error
    monkeypatch.setattr(ext, "_read_build_info", lambda: (None, True))
    available, error, _ = ext._load()
    assert not available and "no build record" in error and "pip install -e . --no-build-isolation" in error
    monkeypatch.setattr(ext, "_read_build_info", lambda: (None, False))
    assert "s2vc._C is not built" in ext._load()[1]


@pytest.mark.parametrize("capability,sass,ptx,runs", [
    ((8, 6), ["8.0"], [], True),                  # sm_80 machine code runs on 8.6 (same major)
    ((8, 0), ["8.6"], [], False),                 # ... not the other way round
    ((7, 5), ["8.0", "9.0"], ["9.0"], False),     # T4 on an A100/H100-only build
    ((7, 5), ["7.5", "8.0"], [], True),
    ((12, 0), ["7.5", "9.0"], ["9.0"], True),     # a newer GPU JIT-compiles the PTX
    ((12, 0), ["7.5", "9.0"], [], False),
    ((9, 0), [], ["8.0"], True),
    ((10, 0), ["9.0a"], ["9.0a"], False),         # arch-specific targets run on 9.0 only
    ((9, 0), ["9.0a"], [], True),
])
def test_cuda_arch_matching(capability, sass, ptx, runs):
    reason = ext.cuda_arch_unsupported_reason(capability, sass, ptx)
    assert (reason is None) == runs
    if not runs:
        assert f"compute capability {capability[0]}.{capability[1]}" in reason
        assert f'TORCH_CUDA_ARCH_LIST="{capability[0]}.{capability[1]}"' in reason


def test_auto_falls_back_on_a_gpu_the_build_has_no_kernel_for(monkeypatch):
    from s2vc.engine import ops
    monkeypatch.setattr(ext, "EXT_AVAILABLE", True)
    monkeypatch.setattr(ext, "_KERNELS", {("affine_coupling_inverse", "cuda"): True})
    monkeypatch.setattr(ext, "BUILD_INFO", {"built": True, "cuda_sass": ["8.0", "9.0"], "cuda_ptx": ["9.0"]})
    monkeypatch.setattr(ext, "_CUDA_DEVICE_REASONS", {})
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 5))
    # stand-ins for CUDA tensors (no GPU here): the decision reads device, dtype and requires_grad
    v = types.SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float32, requires_grad=False)
    assert "compute capability 7.5" in ext.ext_unusable_reason("affine_coupling_inverse", v, v)
    assert ops.affine_coupling_inverse_backend(v, v, "auto") == "eager"
    with pytest.raises(RuntimeError, match="no kernel for this GPU"):
        ops.affine_coupling_inverse_backend(v, v, "ext")


# --------------------------------------------------------------------------- the build backend


@pytest.fixture()
def backend():
    spec = importlib.util.spec_from_file_location("s2vc_backend_under_test",
                                                  ROOT / "build_support" / "s2vc_backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backend_pins_the_torch_of_requirements_and_setup(backend):
    pins = re.findall(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert backend.PINNED_TORCH == f"torch=={pins[0]}"
    lo, hi = re.search(r'"torch>=([\d.]+),<([\d.]+)"', (ROOT / "setup.py").read_text()).groups()
    assert backend.SUPPORTED == (backend._release(lo)[:2], backend._release(hi)[:2])
    # the upper bound is excluded, as pip reads "<2.16"
    assert backend.SUPPORTED[0] <= backend._release("2.15.9") < backend.SUPPORTED[1]
    assert not backend._release("2.16.0") < backend.SUPPORTED[1]
    assert 'build-backend = "s2vc_backend"' in (ROOT / "pyproject.toml").read_text()


def test_backend_uses_the_target_torch_or_asks_for_the_pinned_one(backend, monkeypatch, tmp_path):
    # this environment's torch is the target's: nothing more to install for the build
    found = backend.target_torch()
    assert found is not None and found[1].split("+")[0] == torch.__version__.split("+")[0]
    monkeypatch.setattr(backend, "_torch_importable", lambda: False)    # as under build isolation
    assert backend._extra_requires() == []
    # a target without torch (a fresh environment): the build asks pip for the pinned torch
    monkeypatch.setattr(backend.site, "getsitepackages", lambda: [str(tmp_path)])
    assert backend.target_torch() is None
    assert backend._extra_requires() == [backend.PINNED_TORCH]
    # a torch outside the supported range would be replaced by pip: build against the pinned one
    dist = tmp_path / "torch-2.9.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.9.0\n")
    assert backend.target_torch() is None
