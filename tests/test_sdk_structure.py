"""The SDK's shape: no import cycles, no reaching into other objects' privates, contracts documented."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AGENTS = Path(__file__).resolve().parent.parent / "agents"
PACKAGE = "agentchat"


def module_name(path: Path) -> str:
    parts = path.relative_to(AGENTS).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


MODULES = {module_name(path): path for path in sorted(AGENTS.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def sdk_imports(name: str) -> set[str]:
    """Every agentchat module `name` imports, at any place in the file (TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    for node in ast.walk(TREES[name]):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a path, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    """The cycle check itself works: it reports a planted cycle and passes a tree."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_sdk_import_graph_is_acyclic() -> None:
    """No agentchat module imports, directly or through others, a module that imports it back."""
    graph = {name: sdk_imports(name) for name in MODULES}
    # Every package imports its submodules' names; leave the package roots out (nothing imports them).
    graph = {k: {t for t in v if t not in (PACKAGE, f"{PACKAGE}.examples")} for k, v in graph.items()}
    assert find_cycle(graph) is None


def test_sdk_shares_only_the_protocol_with_the_server() -> None:
    """The SDK imports nothing of the server but its protocol package."""
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agentchat_server"):
                assert (node.module or "").startswith("agentchat_server.protocol"), (name, node.module)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_calls_into_other_objects_privates(name: str) -> None:
    """Objects own their state: no `other._name` access, only `self._name`, `cls._name`, `super()._name`."""
    offenders = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            offenders.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def public_definitions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    """Module-level public functions and classes, and the public methods of public classes."""
    found: list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = []
    for node in tree.body:
        if isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ) and not node.name.startswith("_"):
            found.append(node)
            if isinstance(node, ast.ClassDef):
                found.extend(
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not item.name.startswith("_")
                )
    return [
        d
        for d in found
        if not any(ast.unparse(x) in ("overload", "typing.overload") for x in d.decorator_list)
    ]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_public_definitions_have_contract_docstrings(name: str) -> None:
    """The module and each public class, function and method say what they do in a docstring."""
    tree = TREES[name]
    missing = [] if ast.get_docstring(tree) else ["module"]
    missing += [f"{d.name} (line {d.lineno})" for d in public_definitions(tree) if not ast.get_docstring(d)]
    assert missing == []
