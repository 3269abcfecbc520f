"""Layout rules: no import cycle between files, and packages import only what docs/ARCHITECTURE.md allows.

Every ``import`` counts, also those inside functions (a local import does not make a cycle go away);
only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from btcmesh_testkit.paths import REPO_ROOT

PACKAGES = ["http_serving", "btc_staking", "regtest", "cosmos_chain", "checkpoint", "mesh_adapter", "api",
            "btcmesh", "benchmarks"]

#: package -> packages of ours it may import (docs/ARCHITECTURE.md)
ALLOWED = {
    "http_serving": set(),
    "btc_staking": set(),
    "mesh_adapter": set(),
    "regtest": {"btc_staking", "http_serving"},
    "cosmos_chain": {"btc_staking", "mesh_adapter", "http_serving"},
    "checkpoint": {"btc_staking", "cosmos_chain", "regtest"},
    "api": {"btc_staking", "cosmos_chain"},
    "btcmesh": {"api", "btc_staking", "checkpoint", "cosmos_chain", "mesh_adapter", "regtest", "http_serving"},
    "benchmarks": set(PACKAGES) - {"benchmarks"},
}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (REPO_ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _import_graph() -> dict[str, set[str]]:
    mods = _modules()

    def known(name: str | None) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                     and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = mod.split(".")
                if node.level:
                    base = base if path.name == "__init__.py" else base[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [target] + [f"{target}.{a.name}" for a in node.names]
            for t in targets:
                found = known(t)
                if found and found != mod:
                    graph[mod].add(found)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycle_between_files() -> None:
    assert _cycles(_import_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_packages_import_only_what_the_architecture_allows() -> None:
    wrong = sorted({(m.split(".")[0], d.split(".")[0]) for m, ds in _import_graph().items() for d in ds
                    if d.split(".")[0] != m.split(".")[0] and d.split(".")[0] not in ALLOWED[m.split(".")[0]]})
    assert wrong == []


def test_chain_modules_live_in_cosmos_chain_modules() -> None:
    """Every built-in contract (a ``Module`` subclass) is defined under cosmos_chain/modules/."""
    outside = []
    for path in (REPO_ROOT / "cosmos_chain").rglob("*.py"):
        if "modules" in path.relative_to(REPO_ROOT / "cosmos_chain").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "Module" for b in node.bases):
                outside.append(f"{path.name}:{node.name}")
    assert outside == []
