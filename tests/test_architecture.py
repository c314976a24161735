"""The layering of docs/ARCHITECTURE.md, checked on every module's imports (read from the
sources with scripts/import_graph.py), and the command layer's contract."""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import import_graph  # noqa: E402

LIBRARY = ("engine", "training", "export")
# scripts run as `python export/build_trt.py`: a command of their own, so they parse flags
SCRIPTS = {"export/build_trt.py"}
MAX_LINES = 450   # "about 400": a file past this is asking to be split


def test_no_layer_imports_one_it_must_not():
    assert import_graph.violations(import_graph.graph()) == []


def test_the_graph_sees_lazy_imports(tmp_path, monkeypatch):
    """A function-level import is a dependency too (the check would be blind without it), and an
    engine module importing the trainer is reported as a violation."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "training").mkdir()
    (tmp_path / "engine" / "bad.py").write_text("def f():\n    from s2vc.training import pretrain\n")
    (tmp_path / "engine" / "worse.py").write_text("from ..training import models\n")
    (tmp_path / "engine" / "fine.py").write_text("from . import bad\n")
    (tmp_path / "training" / "pretrain.py").write_text("from s2vc.engine import fine\n")
    (tmp_path / "training" / "models.py").write_text("")
    monkeypatch.setattr(import_graph, "ROOT", tmp_path)
    monkeypatch.setattr(import_graph, "PACKAGE_ROOTS", {"s2vc.engine": "engine", "s2vc.training": "training"})
    g = import_graph.graph()
    assert import_graph.imports_of("s2vc.engine.bad", tmp_path / "engine" / "bad.py") >= {"s2vc.training.pretrain"}
    assert "s2vc.training.models" in import_graph.imports_of("s2vc.engine.worse", tmp_path / "engine" / "worse.py")
    assert set(g) == {"s2vc.engine.bad", "s2vc.engine.worse", "s2vc.engine.fine", "s2vc.training.pretrain",
                      "s2vc.training.models"}
    assert import_graph.violations(g) == [
        "s2vc.engine.bad (engine) imports s2vc.training.pretrain (training)",
        "s2vc.engine.worse (engine) imports s2vc.training.models (training)"]


def test_training_roles_import_only_what_the_table_allows(tmp_path, monkeypatch):
    """An evaluation importing the pretraining loop, or a dataset importing an evaluation, is a
    violation; an experiment importing everything, and a role importing training's top level, are not."""
    for sub in ("data", "evaluation", "pretrain", "experiments"):
        (tmp_path / "training" / sub).mkdir(parents=True)
    (tmp_path / "training" / "models.py").write_text("")
    (tmp_path / "training" / "pretrain" / "loop.py").write_text("from ..models import x\n")
    (tmp_path / "training" / "evaluation" / "frozen.py").write_text(
        "from ..models import x\ndef f():\n    from ..pretrain.loop import y\n")
    (tmp_path / "training" / "data" / "datasets.py").write_text("from s2vc.training.evaluation import frozen\n")
    (tmp_path / "training" / "experiments" / "runner.py").write_text(
        "from ..pretrain import loop\nfrom ..evaluation import frozen\nfrom ..data import datasets\n")
    monkeypatch.setattr(import_graph, "ROOT", tmp_path)
    monkeypatch.setattr(import_graph, "PACKAGE_ROOTS", {"s2vc.training": "training"})
    assert import_graph.violations(import_graph.graph()) == [
        "s2vc.training.data.datasets (training/data) imports s2vc.training.evaluation.frozen (training/evaluation)",
        "s2vc.training.evaluation.frozen (training/evaluation) imports s2vc.training.pretrain.loop (training/pretrain)"]


def test_no_import_cycle_in_the_library():
    """engine/, training/ and export/ import each other in no loop, lazy imports included."""
    assert import_graph.cycles(import_graph.graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path, monkeypatch):
    """A loop closed by a function-level import is found; a module importing its own package
    (``from . import x``) and a loop through the command layer are not library cycles."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "s2vc" / "commands").mkdir(parents=True)
    (tmp_path / "engine" / "__init__.py").write_text("from .a import x\n")
    (tmp_path / "engine" / "a.py").write_text("from . import b\n")
    (tmp_path / "engine" / "b.py").write_text("from .c import y\n")
    (tmp_path / "engine" / "c.py").write_text("def f():\n    from s2vc.engine.a import x\n")
    (tmp_path / "engine" / "leaf.py").write_text("from . import c\n")
    (tmp_path / "s2vc" / "commands" / "go.py").write_text("from s2vc.engine import leaf\n")
    (tmp_path / "engine" / "d.py").write_text("def f():\n    from s2vc.commands import go\n")
    monkeypatch.setattr(import_graph, "ROOT", tmp_path)
    monkeypatch.setattr(import_graph, "PACKAGE_ROOTS", {"s2vc": "s2vc", "s2vc.engine": "engine"})
    assert import_graph.cycles(import_graph.graph()) == [
        ["s2vc.engine.a", "s2vc.engine.b", "s2vc.engine.c", "s2vc.engine.a"]]
    assert import_graph.main(["--check"]) == 1
    (tmp_path / "engine" / "c.py").write_text("def f():\n    from s2vc.engine import leaf\n")
    assert import_graph.cycles(import_graph.graph()) == [
        ["s2vc.engine.c", "s2vc.engine.leaf", "s2vc.engine.c"]]
    (tmp_path / "engine" / "c.py").write_text("def f():\n    import torch\n")
    assert import_graph.cycles(import_graph.graph()) == []


def test_training_keeps_a_handful_of_modules_at_its_top():
    top = sorted(p.name for p in (ROOT / "training").glob("*.py") if p.name != "__init__.py")
    assert top == ["distributed.py", "models.py", "run_files.py", "stats.py"]
    for sub in ("data", "flow", "pretrain", "evaluation", "experiments"):
        doc = ast.get_docstring(ast.parse((ROOT / "training" / sub / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"training/{sub}/__init__.py says what the role is"


def _library_files():
    return [p for folder in LIBRARY for p in sorted((ROOT / folder).rglob("*.py"))]


def test_library_takes_no_argparse_namespace():
    """Libraries take typed settings; only the command layer (and stand-alone scripts) parse flags."""
    offenders = []
    for path in _library_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in SCRIPTS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                offenders.append(rel)
            elif isinstance(node, ast.ImportFrom) and node.module == "argparse":
                offenders.append(rel)
    assert offenders == []


def test_library_files_have_one_job():
    long = {p.relative_to(ROOT).as_posix(): n for p in _library_files()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"library files over {MAX_LINES} lines: {long}"


def test_every_command_module_has_the_contract():
    from s2vc.commands import COMMANDS
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"s2vc.commands.{module_name}")
        assert isinstance(module.HELP, str) and module.HELP, name
        assert callable(module.add_arguments) and callable(module.run), name


@pytest.mark.parametrize("argv", [["--help"], ["eval", "--help"]])
def test_help_lists_every_command(argv, capsys):
    from s2vc.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    names = ("demo", "generate", "pretrain", "reproduce") if argv == ["--help"] else ("retrieval", "finetune", "cam")
    assert all(name in text for name in names)
