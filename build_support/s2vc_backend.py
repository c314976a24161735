"""The build backend of s2vc: setuptools' own, told which torch to compile the extension against.

``s2vc._C`` must be built against the torch it will be loaded by, i.e. the torch of the
environment s2vc is installed into. With pip's default build isolation the build runs in a fresh
overlay without that torch, so this backend (declared in pyproject.toml) decides:

- the build's Python already imports a torch (``--no-build-isolation``): use it;
- else the target environment holds a torch within setup.py's supported range: put its
  site-packages at the END of sys.path for the build, so the build compiles against exactly the
  torch that will load the extension (and fetches no multi-GB copy);
- else (a fresh environment, or a torch pip will replace): ask pip for the pinned
  ``PINNED_TORCH`` (requirements.txt's), which is also what pip then installs to run it.

pip runs a backend with the target environment's own interpreter, so ``site.getsitepackages()``
names the target's site-packages even while isolation hides them from sys.path. Whatever it
picks, setup.py records the torch used in ``s2vc/_build_info.json`` and the loader refuses an
extension built for another torch, with the command that rebuilds it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import site
import sys

from setuptools import build_meta as _setuptools

PINNED_TORCH = "torch==2.14.1"
SUPPORTED = ((2, 11), (2, 16))              # setup.py's install_requires: torch>=2.11,<2.16 (upper bound excluded)


def _say(msg: str) -> None:
    print(f"[s2vc setup] {msg}", file=sys.stderr, flush=True)


def _release(version: str) -> tuple[int, ...]:
    """(2, 14, 1) from "2.14.1+cu130"."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def target_torch() -> tuple[list[str], str] | None:
    """(site-packages folders, version) of a supported torch in the target environment, or None."""
    folders = [p for p in dict.fromkeys(site.getsitepackages()) if os.path.isdir(p)]
    for dist in importlib.metadata.distributions(path=folders):
        if (dist.metadata["Name"] or "").lower() == "torch":
            version = dist.version
            if SUPPORTED[0] <= _release(version) < SUPPORTED[1]:
                return folders, version
            _say(f"the target environment's torch {version} is outside the supported range; "
                 f"building against {PINNED_TORCH}")
            return None
    return None


def _torch_importable() -> bool:
    return importlib.util.find_spec("torch") is not None


def _extra_requires() -> list[str]:
    if _torch_importable() or target_torch() is not None:
        return []
    return [PINNED_TORCH]


def _borrow_target_torch() -> None:
    """Make the target environment's torch importable for setup.py (appended: the build's own
    setuptools stays first)."""
    if _torch_importable():
        return
    found = target_torch()
    if found is None:
        return                  # setup.py says torch is missing and installs without the ops
    folders, version = found
    _say(f"build isolation: compiling against the target environment's torch {version} ({folders[0]})")
    sys.path.extend(p for p in folders if p not in sys.path)


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _extra_requires()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + _extra_requires()


def get_requires_for_build_sdist(config_settings=None):
    return _setuptools.get_requires_for_build_sdist(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _borrow_target_torch()
    return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    _borrow_target_torch()
    return _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _borrow_target_torch()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _borrow_target_torch()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    return _setuptools.build_sdist(sdist_directory, config_settings)
