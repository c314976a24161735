"""The README leads with what a newcomer needs (a picture and both quick-start commands in its
first 40 lines) and names no file the repository does not have: every relative link, and every
path into the repository's own folders (``docs/RESULTS.md``, ``export/build_trt.py``,
``engine/``) or documentation file (``*.md``) it mentions, exists. Paths a command writes
(``s2vc_demo/...``, ``runs/...``, ``RUN/...``) are not the repository's and are not checked."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICK_START = ("bash scripts/demo.sh", "bash scripts/test.sh")

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# a path: segments joined by "/", ending in a name or a "/" (a folder)
PATH = re.compile(r"(?<![\w./$~-])((?:\.?[\w.-]+/)+(?:[\w.-]*[\w-])?/?)")
DOC = re.compile(r"(?<![\w./$~-])([\w-]+\.md)\b")


def _top_level() -> set[str]:
    """The repository's own top-level folders and files (a path starting with one is the repo's):
    what git tracks, where there is a git checkout (an ignored runs/ or outputs/ that a command
    wrote here is not the repository's)."""
    import subprocess

    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        tracked = ""
    if tracked.strip():
        return {line.split("/")[0] for line in tracked.splitlines()}
    return {p.name for p in ROOT.iterdir() if p.name not in (".git", ".venv", "build", "runs", "outputs")}


def names_in(text: str) -> dict[str, set[str]]:
    """{"links", "paths", "docs"}: what a README text refers to (see the module docstring)."""
    links = {m.group(1).split("#")[0] for m in LINK.finditer(text)
             if not re.match(r"[a-z]+:", m.group(1)) and not m.group(1).startswith("#")}
    top = _top_level()
    paths = {m.group(1) for m in PATH.finditer(text) if m.group(1).split("/")[0] in top}
    docs = {m.group(1) for m in DOC.finditer(text)}
    return {"links": links, "paths": paths, "docs": docs}


def missing(text: str) -> list[str]:
    found = names_in(text)
    gone = [f"link {p}" for p in sorted(found["links"]) if not (ROOT / p).exists()]
    gone += [f"path {p}" for p in sorted(found["paths"]) if not (ROOT / p).exists()]
    gone += [f"file {d}" for d in sorted(found["docs"]) if not ((ROOT / d).exists() or (ROOT / "docs" / d).exists())]
    return gone


def test_readme_names_no_file_the_repository_does_not_have():
    assert missing(README.read_text()) == []


def test_the_check_finds_what_is_gone():
    text = ("See [the spec](docs/NOPE.md), ![a](docs/results/none.png), `engine/nothing_here.py`, "
            "ADVFLOW_SPEC.md and [ok](docs/RESULTS.md#history); not checked: s2vc_demo/bikes_sheet.png, "
            "runs/demo/checkpoint.pt, https://example.org/x.md, `/data/ucf101`.")
    assert missing(text) == ["link docs/NOPE.md", "link docs/results/none.png", "path docs/NOPE.md",
                             "path docs/results/none.png", "path engine/nothing_here.py", "file ADVFLOW_SPEC.md"]
    assert {"docs/RESULTS.md", "engine/nothing_here.py"} <= names_in(text)["paths"]


def test_first_40_lines_hold_a_picture_and_both_quick_start_commands():
    head = "\n".join(README.read_text().splitlines()[:40])
    images = [m.group(1) for m in LINK.finditer(head) if m.group(0).startswith("!")]
    assert images, "no image in the README's first 40 lines"
    assert all((ROOT / p).is_file() and (ROOT / p).stat().st_size < 400_000 for p in images), images
    for command in QUICK_START:
        assert command in head, f"{command!r} is not in the README's first 40 lines"


@pytest.mark.parametrize("command", QUICK_START)
def test_quick_start_commands_exist(command):
    assert (ROOT / command.split()[1]).is_file()
