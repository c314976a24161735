"""Reading the checkpoints the evaluations start from: where one is, what it holds, its backbone.

- ``resolve_checkpoint``: a path given by a user may be the checkpoint file or the run folder
  ``s2vc pretrain --out RUN`` wrote (``RUN/checkpoint.pt``); anything else is refused in one line.
- ``read_checkpoint``: ``torch.load(..., weights_only=True)`` whose failures (a video, a text
  file, a pickle of arbitrary objects) become one ValueError line naming the file and what was
  expected, instead of torch's multi-line help.
- ``load_backbone`` takes ``encoder_q.backbone.*`` out of a pretrain checkpoint with the rigour
  of facebookresearch/moco's linear-probe loader: every backbone key present, none unexpected,
  a checkpoint of another backbone refused with both names.
- ``load_weights`` (``s2vc eval ... --weights FILE``) takes a backbone trained elsewhere: a
  torchvision ``r3d_18`` / ``s3d`` state_dict, or one whose keys carry a prefix (``module.``,
  ``backbone.``, ``encoder_q.``, ``encoder_q.backbone.``, ...), or this project's checkpoints. The
  prefix is found by which one makes the most keys fit, the architecture (unless asked) by
  which backbone they fit; one line says what was stripped, dropped (a classifier head ``fc.*``
  / ``classifier.*``) or ignored. A missing backbone weight is an error, as in ``load_backbone``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..models import BACKBONES, build_backbone
from ..run_files import CHECKPOINT

__all__ = ["BACKBONE_PREFIX", "PRETRAIN_EXPECTED", "WEIGHTS_EXPECTED", "WEIGHT_PREFIXES", "WeightsReport",
           "resolve_checkpoint", "read_checkpoint", "backbone_from_checkpoint", "load_backbone",
           "backbone_from_weights", "load_weights"]

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


# -- backbones trained elsewhere (--weights) ----------------------------------------------------
WEIGHTS_EXPECTED = ("a backbone state_dict (torchvision r3d_18 / s3d names, possibly under a prefix such as "
                    f"'module.', 'backbone.', 'encoder_q.'), or {PRETRAIN_EXPECTED}")
# what trainers put before a backbone's keys (DDP, MoCo, Lightning, timm-style wrappers): any
# prefix is found by fit; these decide a tie (MoCo's query encoder before its key encoder)
WEIGHT_PREFIXES = ("module.encoder_q.backbone.", "encoder_q.backbone.", "module.encoder_q.", "encoder_q.",
                   "module.backbone.", "backbone.", "module.encoder.", "encoder.", "model.encoder_q.backbone.",
                   "model.backbone.", "model.", "module.", "")
# a classifier head trained with the backbone: not part of it, dropped (and said)
HEAD_PREFIXES = ("fc.", "classifier.", "head.")
# the state_dict inside a saved object: a pretrain checkpoint's "model", Lightning's "state_dict"
_WRAPPERS = ("state_dict", "model", "model_state", "module")


@dataclass
class WeightsReport:
    """How ``backbone_from_weights`` read a state_dict: the architecture, the prefix stripped,
    the head keys dropped, other unexpected keys dropped, the count of keys outside the prefix."""

    backbone: str
    prefix: str
    head: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    outside: int = 0

    def line(self, source) -> str:
        """One line: what was loaded from ``source`` and how."""
        parts = [f"prefix {self.prefix!r} stripped" if self.prefix else "no prefix", "no backbone key missing"]
        if self.head:
            parts.append(f"classifier head {self.head} dropped")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys dropped {self.unexpected[:5]}")
        if self.outside:
            parts.append(f"{self.outside} keys outside the prefix ignored")
        return f"{self.backbone} weights from {source} ({'; '.join(parts)})"


def _weights_state(obj: object, source) -> tuple[dict[str, torch.Tensor], str | None]:
    """(the tensors of the state_dict inside ``obj``, the backbone its config names or None)."""
    saved = None
    for _ in range(3):                       # {"state_dict": {...}}, {"model": {...}}, nested once
        if not isinstance(obj, dict):
            break
        if isinstance(obj.get("config"), dict):
            saved = obj["config"].get("backbone", saved)
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{source}: no state_dict of tensors in it (expected {WEIGHTS_EXPECTED})")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}, saved


def _names(model: nn.Module) -> dict[str, str]:
    """A model's state_dict keys by the names a state_dict may use for them: its own, and
    torchvision's (``TorchvisionBackbone`` keeps the torchvision model as ``net``)."""
    names = {}
    for key in model.state_dict():
        names[key] = key
        if key.startswith("net."):
            names[key[len("net."):]] = key
    return names


def _prefix_counts(state: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, int]:
    """{prefix: how many keys of ``state`` are that prefix + a model key name}, every split of
    every key at a '.' tried (so any wrapper's prefix is found, not only the known ones)."""
    counts: dict[str, int] = {}
    for key in state:
        parts = key.split(".")
        for i in range(len(parts)):
            if ".".join(parts[i:]) in names:
                prefix = "".join(p + "." for p in parts[:i])
                counts[prefix] = counts.get(prefix, 0) + 1
    return counts


def _fit(state: dict[str, torch.Tensor], names: dict[str, str]) -> tuple[str, dict[str, torch.Tensor], list[str], int]:
    """(prefix, {model key: tensor}, keys under the prefix that fit no model key, keys outside
    the prefix) for the prefix under which most keys fit; on a tie (a MoCo checkpoint holds the
    query and the key encoder) the first of ``WEIGHT_PREFIXES``, else the one saved first."""
    counts = _prefix_counts(state, names)
    if not counts:
        return "", {}, sorted(state), 0
    rank = {p: i for i, p in enumerate(WEIGHT_PREFIXES)}
    prefix = min(counts, key=lambda p: (-counts[p], rank.get(p, len(rank))))   # dicts keep the order seen
    inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    fitted = {names[k]: v for k, v in inside.items() if k in names}
    return prefix, fitted, sorted(k for k in inside if k not in names), len(state) - len(inside)


def backbone_from_weights(obj: object, backbone: str | None = None,
                          source: str | Path = "weights") -> tuple[nn.Module, WeightsReport]:
    """(the backbone, on the CPU, in eval mode, with ``backbone_name``; how it was read) of a
    loaded state_dict from anywhere (see the module docstring). ``backbone`` None: the
    checkpoint's config names it, else the one of ``BACKBONES`` most of its keys fit. Raises
    ValueError when no backbone fits, a backbone weight is missing or of another shape."""
    state, saved = _weights_state(obj, source)
    if backbone is not None and saved is not None and saved != backbone:
        raise ValueError(f"{source}: the checkpoint is of backbone {saved!r}, but backbone {backbone!r} was asked for")
    candidates = [backbone or saved] if (backbone or saved) else list(BACKBONES)
    fits = []
    for name in candidates:
        with torch.device("meta"):           # key names and shapes only: nothing allocated
            names = _names(build_backbone(name))
        fits.append((len(_fit(state, names)[1]) / len(set(names.values())), name, names))
    share, name, names = max(fits, key=lambda f: f[0])
    prefix, fitted, unexpected, outside = _fit(state, names)
    if not fitted:
        raise ValueError(f"{source}: no key fits a {' / '.join(candidates)} backbone, with or without a prefix "
                         f"('module.', 'backbone.', 'encoder_q.', ...); its keys begin {sorted(state)[:3]}")
    model = build_backbone(name)
    expected = model.state_dict()
    missing = [k for k in expected if k not in fitted]
    if missing:
        shown = [k.removeprefix("net.") for k in missing[:5]]
        raise ValueError(f"{source}: {len(missing)} of the {len(expected)} weights of a {name!r} backbone are missing "
                         f"(prefix {prefix!r} stripped), e.g. {shown}; {len(unexpected)} keys fit none, e.g. "
                         f"{unexpected[:3]}")
    _check_fits(model, fitted, name, saved, source)
    model.load_state_dict(fitted, strict=True)
    model.backbone_name = name
    head = [k for k in unexpected if k.startswith(HEAD_PREFIXES)]
    report = WeightsReport(name, prefix, head, [k for k in unexpected if k not in head], outside)
    return model.eval(), report


def load_weights(path: str | os.PathLike, backbone: str | None = None) -> tuple[nn.Module, str]:
    """(the backbone of the weights file ``path`` — or a pretrain run folder —, on the CPU, in
    eval mode; one line saying how it was read). Errors as ``backbone_from_weights``."""
    obj, file = read_checkpoint(path, what="backbone weights", expected=WEIGHTS_EXPECTED)
    model, report = backbone_from_weights(obj, backbone, file)
    return model, report.line(file)
