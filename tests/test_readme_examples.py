"""The Python examples of the README's "Use S²VC in your own trainer" run as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use S²VC in your own trainer"


def _blocks() -> list[str]:
    text = README.read_text()
    assert SECTION in text, f"README lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_three_forms():
    blocks = _blocks()
    assert len(blocks) == 3
    assert "make_key(clips)" in blocks[0] and "on_after_batch_transfer" in blocks[1] and "v2.Compose" in blocks[2]


@pytest.mark.parametrize("index", range(3))
def test_a_readme_example_runs(index):
    if "import lightning" in _blocks()[index]:
        pytest.importorskip("lightning")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                    # tiny clips: one thread beats a contended pool
    try:
        namespace: dict = {"__name__": f"readme_example_{index}"}
        exec(compile(_blocks()[index], f"README.md example {index}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    if index == 0:
        assert namespace["keys"].shape == namespace["clips"].shape and not torch.equal(namespace["keys"],
                                                                                          namespace["clips"])
    if index == 1:
        assert namespace["MoCoWithS2VCKeys"]().make_key.mean == (0.432, 0.395, 0.376)
    if index == 2:
        key = namespace["key"]
        assert key.dtype == torch.float32 and key.shape == (8, 3, 64, 64) and 0 <= key.min() and key.max() <= 1
