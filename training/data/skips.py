"""Bad videos: never padded, skipped with a reason, counted and reported.

A video that cannot be decoded, is shorter than a clip or has vanished makes a dataset raise
``SkipSample`` (path + reason); ``__getitem__`` turns that into a picklable ``Skipped`` record
(unless the dataset is strict), the collate functions drop those and list ``"path: reason"``
under ``batch["skipped"]`` (this works from DataLoader workers too), and a ``SkippedCounter`` in
the training loop adds them up and reports per epoch. Every reason starts with one of
``SKIP_KINDS``.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from s2vc.engine.video_io import VideoDecodeError

__all__ = [
    "SKIP_KINDS",
    "SkipSample",
    "Skipped",
    "SkippedCounter",
    "skip_for",
    "split_skipped",
]

SKIP_KINDS = ("cannot decode", "too short", "missing")


class SkipSample(RuntimeError):
    """A video that cannot give a clip; ``reason`` starts with one of ``SKIP_KINDS``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def skip_for(path: str | os.PathLike, error: FileNotFoundError | VideoDecodeError) -> SkipSample:
    """The ``SkipSample`` for a video whose reading raised ``error``: a vanished file is
    "missing", a decoder's "shorter than asked" is "too short", any other decode error
    "cannot decode" (the reason without the file name the decoder put in front)."""
    if isinstance(error, FileNotFoundError):
        return SkipSample(path, f"missing: {error}")
    reason = str(error).removeprefix(f"{path}: ")
    if "shorter than asked" in reason:
        return SkipSample(path, f"too short: {reason}")
    return SkipSample(path, f"cannot decode: {reason}")


@dataclass(frozen=True)
class Skipped:
    """What ``__getitem__`` returns for a skipped video (picklable, so it leaves workers)."""

    index: int
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def split_skipped(batch: list) -> tuple[list, list[str]]:
    """A batch's items without the ``Skipped`` ones, and those as ``"path: reason"``."""
    return [b for b in batch if not isinstance(b, Skipped)], [str(b) for b in batch if isinstance(b, Skipped)]


class SkippedCounter:
    """Skipped videos of one epoch: ``update(batch)`` after each batch, ``report()`` and
    ``reset()`` at the end of the epoch. Counts what this process saw (one DDP rank)."""

    def __init__(self):
        self.messages: list[str] = []

    def update(self, batch_or_messages: dict | Sequence[str]) -> int:
        """Add ``batch["skipped"]`` (or a list of ``"path: reason"``); returns how many."""
        msgs = batch_or_messages.get("skipped", []) if isinstance(batch_or_messages, dict) else batch_or_messages
        self.messages.extend(str(m) for m in msgs)
        return len(msgs)

    def reset(self) -> None:
        self.messages = []

    @property
    def total(self) -> int:
        return len(self.messages)

    def by_kind(self) -> dict[str, int]:
        """Counts per reason kind (``SKIP_KINDS``; anything else is "other")."""
        kinds = Counter()
        for m in self.messages:
            kinds[next((k for k in SKIP_KINDS if f": {k}" in m), "other")] += 1
        return dict(kinds)

    def report(self, max_lines: int = 10) -> str:
        """One summary line, then the first ``max_lines`` messages (each video once)."""
        if not self.messages:
            return "skipped videos: none"
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.by_kind().items()))
        unique = list(dict.fromkeys(self.messages))
        lines = [f"skipped videos: {self.total} ({kinds})"] + [f"  {m}" for m in unique[:max_lines]]
        if len(unique) > max_lines:
            lines.append(f"  ... and {len(unique) - max_lines} more")
        return "\n".join(lines)
