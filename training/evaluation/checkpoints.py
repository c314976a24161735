"""Reading the checkpoints the evaluations start from: where one is, what it holds, its backbone.

- ``resolve_checkpoint``: a path given by a user may be the checkpoint file or the run folder
  ``s2vc pretrain --out RUN`` wrote (``RUN/checkpoint.pt``); anything else is refused in one line.
- ``read_checkpoint``: ``torch.load(..., weights_only=True)`` whose failures (a video, a text
  file, a pickle of arbitrary objects) become one ValueError line naming the file and what was
  expected, instead of torch's multi-line help.
- ``load_backbone`` takes ``encoder_q.backbone.*`` out of a pretrain checkpoint with the rigour
  of facebookresearch/moco's linear-probe loader: every backbone key present, none unexpected,
  a checkpoint of another backbone refused with both names.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..models import BACKBONES, build_backbone
from ..run_files import CHECKPOINT

__all__ = ["BACKBONE_PREFIX", "PRETRAIN_EXPECTED", "resolve_checkpoint", "read_checkpoint",
           "backbone_from_checkpoint", "load_backbone"]

BACKBONE_PREFIX = "encoder_q.backbone."
# what a user may give as a pretrain checkpoint, said in every error about one
PRETRAIN_EXPECTED = f"RUN/{CHECKPOINT} or a .pt file written by s2vc pretrain"


def resolve_checkpoint(path: str | os.PathLike, expected: str = PRETRAIN_EXPECTED) -> Path:
    """The checkpoint file ``path`` names: ``path`` itself when it is a file, ``path/checkpoint.pt``
    when it is a pretrain run folder. Raises FileNotFoundError (missing path, or a folder without
    a checkpoint) with one line naming ``path`` and ``expected``."""
    p = Path(path)
    if p.is_dir():
        inside = p / CHECKPOINT
        if inside.is_file():
            return inside
        raise FileNotFoundError(f"checkpoint {p} is a folder without {CHECKPOINT} (expected {expected})")
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist (expected {expected})")
    return p


def _load_error_reason(exc: BaseException) -> str:
    """The informative part of a ``torch.load`` failure, on one line: weights-only refusals carry
    several paragraphs of advice around a short 'WeightsUnpickler error: ...'."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else ""
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def read_checkpoint(path: str | os.PathLike, *, what: str = "pretrain",
                    expected: str = PRETRAIN_EXPECTED) -> tuple[object, Path]:
    """``(torch.load(file, weights_only=True) on the CPU, file)`` for the checkpoint ``path``
    names (``resolve_checkpoint``). A file torch cannot read raises ValueError: "checkpoint X is
    not a {what} checkpoint (expected {expected}): <reason>", one line."""
    file = resolve_checkpoint(path, expected)
    try:
        return torch.load(file, map_location="cpu", weights_only=True), file
    except Exception as exc:  # noqa: BLE001 - any load failure means "not a checkpoint"; said in one line
        raise ValueError(f"checkpoint {path} is not a {what} checkpoint (expected {expected}): "
                         f"{_load_error_reason(exc)}") from exc


def backbone_from_checkpoint(ckpt: object, backbone: str | None = None,
                             source: str | Path = "checkpoint") -> nn.Module:
    """The query encoder's backbone of a loaded pretrain checkpoint ``ckpt`` (the dict
    ``s2vc pretrain`` saves), on the CPU, in eval mode, with ``backbone_name`` set.

    ``backbone``: the architecture expected (one of ``BACKBONES``); None takes the checkpoint's
    ``config["backbone"]``. ``source`` names the checkpoint in errors. Raises ValueError when the
    checkpoint is of another backbone than asked (naming both), is not a pretrain checkpoint, or
    its backbone keys are not exactly the model's (naming the missing and unexpected ones).
    """
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"{source}: expected a pretrain checkpoint (a dict with 'model' = the MoCo state_dict), "
                         f"got {type(ckpt).__name__}" + (f" with keys {sorted(ckpt)[:8]}" if isinstance(ckpt, dict) else ""))
    saved = (ckpt.get("config") or {}).get("backbone")
    if backbone is None:
        if saved is None:
            raise ValueError(f"{source}: the checkpoint does not say its backbone (config['backbone']); "
                             f"pass one of {BACKBONES}")
        backbone = saved
    elif saved is not None and saved != backbone:
        raise ValueError(f"{source}: the checkpoint is of backbone {saved!r}, but backbone {backbone!r} was asked for")
    state = _backbone_state(ckpt["model"], source)
    model = build_backbone(backbone)
    _check_fits(model, state, backbone, saved, source)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    model.backbone_name = backbone
    return model.eval()


def _backbone_state(model_state: dict, source) -> dict[str, torch.Tensor]:
    # a state_dict saved from a DDP-wrapped model has "module." in front (as facebookresearch/moco's)
    state = {k.removeprefix("module."): v for k, v in model_state.items()}
    state = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    if not state:
        raise ValueError(f"{source}: no '{BACKBONE_PREFIX}*' keys in the checkpoint's model; "
                         "is it a pretrain checkpoint?")
    return state


def _check_fits(model: nn.Module, state: dict[str, torch.Tensor], backbone: str, saved, source) -> None:
    """Raise ValueError unless ``state`` has exactly ``model``'s keys, each of its shape."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source}: the checkpoint's backbone weights do not fit a {backbone!r} backbone "
                         f"(saved as {saved!r}): {len(missing)} missing {missing[:5]}, "
                         f"{len(unexpected)} unexpected {unexpected[:5]}")
    shapes = [k for k, v in expected.items() if v.shape != state[k].shape]
    if shapes:
        k = shapes[0]
        raise ValueError(f"{source}: {len(shapes)} backbone weights have other shapes than a {backbone!r} backbone's, "
                         f"e.g. {k}: {tuple(state[k].shape)} in the checkpoint, {tuple(expected[k].shape)} expected")


def load_backbone(checkpoint_path: str | os.PathLike, backbone: str | None = None) -> nn.Module:
    """The query encoder's backbone of the pretrain checkpoint at ``checkpoint_path`` (the file,
    or the run folder holding ``checkpoint.pt``), on the CPU, in eval mode. Errors as
    ``read_checkpoint`` and ``backbone_from_checkpoint``."""
    ckpt, file = read_checkpoint(checkpoint_path)
    return backbone_from_checkpoint(ckpt, backbone, file)
