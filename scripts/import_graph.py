#!/usr/bin/env python
"""The project's import graph, read from the sources (nothing is imported or run).

    python scripts/import_graph.py            module -> the s2vc modules it imports, one per line
    python scripts/import_graph.py --layers   folded into layers (engine, runtime, export, training, commands)
    python scripts/import_graph.py --check    exit 1 when an import breaks docs/ARCHITECTURE.md's rules
                                              or closes a cycle in engine/, training/ or export/
    python scripts/import_graph.py --cycles   print the import cycles (one line each)

Function-level imports count as much as module-level ones: a lazy import is still a dependency,
and a cycle closed by one is still a cycle (it only moves the failure to the first call).
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name of each top-level folder (setup.py's PACKAGE_ROOTS)
PACKAGE_ROOTS = {"s2vc": "s2vc", "s2vc.engine": "engine", "s2vc.training": "training", "s2vc.export": "export"}

# layer -> layers it must not import (docs/ARCHITECTURE.md)
FORBIDDEN = {
    "engine": ("training", "export", "commands"),
    "runtime": ("training", "export", "commands"),
    "export": ("training", "commands"),
    "training": ("export", "commands"),
}

# training's sub-packages (docs/ARCHITECTURE.md): role -> the roles it may import besides itself
# and training's top-level modules (models, distributed, run_files), which import no role.
TRAINING_MAY_IMPORT = {
    "data": (),
    "flow": ("data",),
    "pretrain": ("data", "flow"),
    "evaluation": ("data",),
    "experiments": ("data", "flow", "pretrain", "evaluation"),
    "top": (),
}


def training_role(module: str) -> str | None:
    """``data``/``flow``/``pretrain``/``evaluation``/``experiments`` for a module of that
    sub-package of s2vc.training, ``top`` for one at training's top level, else None."""
    parts = module.split(".")
    if len(parts) < 3 or parts[:2] != ["s2vc", "training"]:
        return None
    return parts[2] if parts[2] in TRAINING_MAY_IMPORT else "top"


def modules() -> dict[str, Path]:
    """{import name: file} of every module of the four packages."""
    found = {}
    for name, folder in PACKAGE_ROOTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mod = ".".join([name, *parts])
            if name == "s2vc" and parts and parts[0] in ("engine", "training", "export"):
                continue   # not a real folder of s2vc/
            found[mod] = path
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "engine":
        return "runtime" if len(parts) > 2 and parts[2].startswith("runtime_") else "engine"
    if len(parts) > 1 and parts[1] in ("training", "export"):
        return parts[1]
    if len(parts) > 1 and parts[1] in ("commands", "cli"):
        return "commands"
    if module == "s2vc._C":
        return "compiled"
    return "s2vc"


def imports_of(module: str, path: Path) -> set[str]:
    """The s2vc modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import mod` imports the module pkg.mod when there is one
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        out.update(n for n in names if n == "s2vc" or n.startswith("s2vc."))
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods) | {"s2vc._C"}
    result = {}
    for mod, path in mods.items():
        deps = {d for d in imports_of(mod, path) if d in known and d != mod}
        result[mod] = deps
    return result


def violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(g.items()):
        for dep in sorted(deps):
            if layer(dep) in FORBIDDEN.get(layer(mod), ()):
                bad.append(f"{mod} ({layer(mod)}) imports {dep} ({layer(dep)})")
            role, dep_role = training_role(mod), training_role(dep)
            if role and dep_role and dep_role not in (role, "top", *TRAINING_MAY_IMPORT[role]):
                bad.append(f"{mod} (training/{role}) imports {dep} (training/{dep_role})")
            elif role == "top" and dep_role not in (None, "top"):
                bad.append(f"{mod} (training top level) imports {dep} (training/{dep_role})")
    return bad


# the packages in which no import cycle is allowed (docs/ARCHITECTURE.md)
ACYCLIC = ("s2vc.engine", "s2vc.training", "s2vc.export")


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def cycles(g: dict[str, set[str]], within: tuple[str, ...] = ACYCLIC) -> list[list[str]]:
    """One import cycle ``[a, b, ..., a]`` per group of modules of ``within`` that import each
    other in a loop (a strongly connected component of the graph), sorted.

    An import of a module's own parent package (``from . import video_io`` names
    ``s2vc.engine`` too) is left out: Python initialises a package before its modules, so that
    edge orders nothing; what such a line imports is the sibling module, which is kept.
    """
    import networkx as nx   # torch's own dependency: always installed beside it

    def inside(mod: str) -> bool:
        return any(mod == p or mod.startswith(p + ".") for p in within)

    dg = nx.DiGraph()
    for mod, deps in g.items():
        if inside(mod):
            dg.add_node(mod)
            dg.add_edges_from((mod, d) for d in deps if inside(d) and d not in _ancestors(mod))
    found = []
    for component in nx.strongly_connected_components(dg):
        sub = dg.subgraph(component)
        if len(component) > 1 or sub.has_edge(next(iter(component)), next(iter(component))):
            start = min(component)
            loop = [u for u, _ in nx.find_cycle(sub, source=start)]
            found.append(loop + [loop[0]])
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", action="store_true", help="fold modules into layers")
    p.add_argument("--check", action="store_true",
                   help="exit 1 on an import against the layering rules or an import cycle")
    p.add_argument("--cycles", action="store_true", help="print only the import cycles")
    args = p.parse_args(argv)
    g = graph()
    loops = cycles(g)
    if args.cycles:
        for loop in loops:
            print(" -> ".join(loop))
        return 1 if loops else 0
    if args.layers:
        folded: dict[str, set[str]] = {}
        for mod, deps in g.items():
            folded.setdefault(layer(mod), set()).update(layer(d) for d in deps if layer(d) != layer(mod))
        for name in sorted(folded):
            print(f"{name} -> {', '.join(sorted(folded[name])) or '(nothing)'}")
    elif not args.check:
        for mod in sorted(g):
            print(f"{mod} -> {', '.join(sorted(g[mod])) or '(nothing)'}")
    bad = violations(g)
    for line in bad:
        print(f"layering violation: {line}", file=sys.stderr)
    for loop in loops:
        print(f"import cycle: {' -> '.join(loop)}", file=sys.stderr)
    return 1 if ((bad or loops) and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
