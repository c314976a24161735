"""Reading and writing flow checkpoints.

Two formats are read by :func:`load_flow`:

* the project's own: a dict ``{"format": "s2vc-flow", "config": {...}, "state_dict": {...},
  "sha256": "...", "meta": {...}}``; the hash covers every tensor (name, dtype, shape, bytes) so
  a corrupt or edited file is refused;
* an AdvFlow / FrEIA v0.2 ``state_dict`` (the checkpoint the authors' code loads): keys
  ``[prefix]module_list.<i>.…``; FrEIA's ``tmp_var_<n>`` activation buffers are dropped and the
  architecture is read off the tensor shapes.

Everything is loaded with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence

import torch

from .flow import AdvFlow, FlowConfig

FORMAT = "s2vc-flow"
FORMAT_VERSION = 1
DEFAULT_CHECKPOINT = "default_flow.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, is corrupt, or does not fit what was asked."""


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temp file beside ``path`` (folders made as needed) for writing; on success flush,
    fsync and rename it onto ``path``, with a normal file's permissions (mkstemp makes 0600). On
    any exception (KeyboardInterrupt included) the temp file is removed and ``path`` is left as it
    was: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def replace_together(staged: Mapping[Path, Path], *, stale: Sequence[Path] = ()) -> None:
    """Move files written whole (and fsynced) under temporary names onto their targets,
    ``{target: temp}``, as one set: every existing target (the last given first, e.g. the
    metadata) and every ``stale`` file is removed before the first rename, so that a crash between
    renames leaves a missing file, which a reader refuses, never a new file paired with an old one."""
    for path in [*reversed(list(staged)), *stale]:
        Path(path).unlink(missing_ok=True)
    for path, tmp in staged.items():
        os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through ``atomic_open``: never a half file."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) through ``atomic_open``: a reader never sees half a file, and a
    killed write leaves the old one."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def flow_checkpoint(flow: AdvFlow, meta: Mapping[str, Any] | None = None) -> dict:
    """The project's checkpoint dict for ``flow`` (weights on the CPU, float32 as trained)."""
    sd = {k: v.detach().cpu().clone() for k, v in flow.state_dict().items()}
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": flow.config.to_dict(),
        "state_dict": sd,
        "sha256": state_dict_sha256(sd),
        "meta": dict(meta or {}),
    }


def save_flow(flow: AdvFlow, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> None:
    atomic_torch_save(flow_checkpoint(flow, meta), path)


def default_checkpoint_path() -> Path:
    return Path(str(resources.files("s2vc.engine").joinpath("assets", DEFAULT_CHECKPOINT)))


# -- AdvFlow / FrEIA state_dicts --------------------------------------------------------------
_KEY = re.compile(r"module_list\.(\d+)\.(.+)$")


def normalize_advflow_keys(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Strip any prefix before ``module_list.`` and drop FrEIA's ``tmp_var_*`` buffers."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if "tmp_var_" in key.rsplit(".", 1)[-1]:
            continue
        i = key.find("module_list.")
        if i < 0:
            raise CheckpointError(f"not an AdvFlow/FrEIA key: {key!r} (expected '[prefix]module_list.<i>.…')")
        out[key[i:]] = value
    return out


def infer_advflow_config(sd: Mapping[str, torch.Tensor]) -> FlowConfig:
    """Read the architecture off an AdvFlow state_dict's tensor shapes and node numbering."""
    nodes: dict[int, set[str]] = {}
    for key in sd:
        m = _KEY.match(key)
        if m:
            nodes.setdefault(int(m.group(1)), set()).add(m.group(2))
    conv_nodes = sorted(i for i, ks in nodes.items() if "s1.conv1.weight" in ks)
    fc_nodes = sorted(i for i, ks in nodes.items() if "s1.fc1.weight" in ks)
    m_nodes = sorted(i for i, ks in nodes.items() if "M" in ks)
    if not conv_nodes and not fc_nodes:
        raise CheckpointError("state_dict holds no AdvFlow coupling blocks (no 'module_list.<i>.s1.conv1.weight' "
                              "or 's1.fc1.weight' keys)")
    low_blocks = len(m_nodes)
    high_blocks = len(conv_nodes) - low_blocks
    if high_blocks < 1:
        raise CheckpointError("cannot infer the channel count: no high-resolution coupling block")
    first = conv_nodes[0]
    c = sd[f"module_list.{first}.s1.conv1.weight"].shape[1] + sd[f"module_list.{first}.s2.conv1.weight"].shape[1]
    hidden = sd[f"module_list.{first}.s1.conv1.weight"].shape[0]
    if fc_nodes:
        n1 = sd[f"module_list.{fc_nodes[0]}.s2.fc3.weight"].shape[0] // 2
        fc_features = n1 + sd[f"module_list.{fc_nodes[0]}.s2.fc1.weight"].shape[1]
        fc_hidden = sd[f"module_list.{fc_nodes[0]}.s1.fc1.weight"].shape[0]
        side = round((fc_features / c) ** 0.5)
        if c * side * side != fc_features:
            raise CheckpointError(f"FC stage of {fc_features} features does not fit {c} channels")
        resolution = 2 * side
    else:
        raise CheckpointError("AdvFlow state_dict without an FC stage: resolution cannot be inferred")
    cfg = FlowConfig(resolution=resolution, channels=c, high_blocks=high_blocks, low_blocks=low_blocks,
                     fc_blocks=len(fc_nodes), hidden=hidden, fc_hidden=fc_hidden)
    return cfg


# -- loading ------------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object saved at ``path`` (``torch.load(..., weights_only=True)`` on the CPU); a missing
    file raises ``FileNotFoundError``, one torch cannot read a ``CheckpointError`` in one line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"flow checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"could not read flow checkpoint {path}: {_unreadable_reason(path, e)} (expected a "
                              "file from torch.save: an s2vc flow checkpoint or an AdvFlow state_dict)") from e


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """A short reason why ``torch.load(path, weights_only=True)`` failed; torch's own message
    runs to many lines of advice about ``weights_only``, which is kept on for safety."""
    if path.stat().st_size == 0:
        return "the file is empty"
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc):
        if zipfile.is_zipfile(path):
            return "it holds objects other than tensors and plain containers, which a safe load refuses"
        return "it is not (a complete) torch.save archive"
    if not zipfile.is_zipfile(path):
        return "it is not (a complete) torch.save archive"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"torch could not read it ({type(exc).__name__}: {first[:120]})"


def _load_into(flow: AdvFlow, sd: Mapping[str, torch.Tensor], source: str) -> AdvFlow:
    expected = flow.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(sd[k].shape)}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[:3]})")
        raise CheckpointError(f"{source} does not match the flow architecture {flow.config}: " + "; ".join(parts))
    flow.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)
    return flow


def flow_from_checkpoint(obj: Any, source: str = "checkpoint") -> AdvFlow:
    """Build a flow from an already-loaded checkpoint object (either format)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict (a project checkpoint or a state_dict), got {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        for key in ("config", "state_dict", "sha256"):
            if key not in obj:
                raise CheckpointError(f"{source}: project checkpoint lacks {key!r}")
        sd = obj["state_dict"]
        digest = state_dict_sha256(sd)
        if digest != obj["sha256"]:
            raise CheckpointError(f"{source}: weights do not match their hash (expected {obj['sha256'][:12]}…, "
                                  f"got {digest[:12]}…): the file is corrupt or was edited")
        flow = AdvFlow(FlowConfig.from_dict(obj["config"]))
        flow = _load_into(flow, sd, source)
        flow.meta = dict(obj.get("meta", {}))
        flow.sha256 = digest
    else:
        sd = obj
        for wrapper in ("state_dict", "model"):
            if isinstance(sd.get(wrapper), Mapping):
                sd = sd[wrapper]
        if not any("module_list." in str(k) for k in sd):
            raise CheckpointError(f"{source}: neither an s2vc flow checkpoint (no format={FORMAT!r}) nor an "
                                  f"AdvFlow/FrEIA state_dict (no 'module_list.' keys); top-level keys: "
                                  f"{sorted(map(str, obj))[:8]}")
        sd = normalize_advflow_keys(sd)
        flow = _load_into(AdvFlow(infer_advflow_config(sd)), sd, source)
        flow.meta = {"source": "advflow-state-dict"}
        flow.sha256 = state_dict_sha256(flow.state_dict())
    return flow.eval()


def load_flow(path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> AdvFlow:
    """Load a flow in eval mode. ``path=None`` (or ``"bundled"``, as the commands' ``--flow
    bundled`` says it) gives the bundled default checkpoint."""
    path = Path(path) if path not in (None, "bundled") else default_checkpoint_path()
    flow = flow_from_checkpoint(read_checkpoint(path), source=str(path))
    return flow.to(device) if device is not None else flow
