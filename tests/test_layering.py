"""The layering rules of DESIGN.md, read from the import graph: a broken rule fails here, not in review.

Folders map to import names: channels/ is `agentchat_server`, agents/ is `agentchat`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentchat_server.protocol import SERVER_FRAME_TYPES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"agentchat_server": ROOT / "channels", "agentchat": ROOT / "agents"}
STDLIB_IO = ("asyncio", "socket", "selectors", "threading", "sqlite3")


def modules() -> Iterator[tuple[str, Path]]:
    """Every module of the server and the SDK, by import name."""
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def imports(path: Path, name: str) -> set[str]:
    """Absolute module names a module imports (relative imports resolved; TYPE_CHECKING included)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


GRAPH = {name: imports(path, name) for name, path in modules()}


def within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def violations(source: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for name, targets in GRAPH.items():
        if not within(name, source):
            continue
        for target in targets:
            if any(within(target, f) for f in forbidden) and not any(within(target, a) for a in allowed):
                out.append(f"{name} imports {target}")
    return sorted(out)


def test_the_server_never_imports_the_sdk() -> None:
    """channels/ (agentchat_server) imports nothing of agents/ (agentchat)."""
    assert violations("agentchat_server", ("agentchat",)) == []


def test_the_sdk_shares_only_the_protocol_with_the_server() -> None:
    """agents/ talks to the server over the wire; it may import the protocol package, nothing else."""
    assert violations("agentchat", ("agentchat_server",), allowed=("agentchat_server.protocol",)) == []


@pytest.mark.parametrize("layer", ["agentchat_server.core", "agentchat_server.protocol"])
def test_the_pure_layers_do_no_io(layer: str) -> None:
    """core/ and protocol/ are sans-I/O: no event loop, sockets, database, Redis or outer layer."""
    outer = ("agentchat_server.broker", "agentchat_server.transport", "agentchat_server.store")
    outer += ("agentchat_server.bus", "agentchat_server.app", "aiohttp", "sqlalchemy", "redis")
    assert violations(layer, (*outer, *STDLIB_IO)) == []


def test_the_protocol_depends_on_nothing_of_the_server() -> None:
    """The protocol package is the innermost layer, shared with the SDK."""
    assert (
        violations("agentchat_server.protocol", ("agentchat_server",), allowed=("agentchat_server.protocol",))
        == []
    )


def test_ports_point_inward() -> None:
    """The broker knows ports, not transports; the Bus does not know the Store; the Store builds no frames."""
    assert violations("agentchat_server.broker", ("agentchat_server.transport", "aiohttp")) == []
    assert violations("agentchat_server.bus", ("agentchat_server.store", "agentchat_server.broker")) == []
    assert (
        violations("agentchat_server.store", ("agentchat_server.protocol.server", "agentchat_server.broker"))
        == []
    )


def test_tests_do_not_import_the_benchmark() -> None:
    """tests/ stands on its own: the benchmark is a separate tool."""
    found = [
        f"{path.name} imports {target}"
        for path in sorted((ROOT / "tests").glob("*.py"))
        for target in imports(path, f"tests.{path.stem}")
        if within(target, "bench")
    ]
    assert found == []


def _internal_cycles(package: str) -> list[list[str]]:
    graph = {
        name: {t for t in targets if t in GRAPH and t != name and not within(name, t)}
        for name, targets in GRAPH.items()
        if within(name, package)
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


@pytest.mark.parametrize("package", ["agentchat_server", "agentchat"])
def test_no_import_cycles(package: str) -> None:
    """Modules import each other in one direction only (a package importing its own parts excepted)."""
    assert _internal_cycles(package) == []


def test_server_frames_are_built_in_one_place() -> None:
    """Only agentchat_server.protocol.server builds server frames (dicts with a server frame `type`)."""
    found = []
    for name, path in modules():
        if not within(name, "agentchat_server") or name == "agentchat_server.protocol.server":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(value, ast.Constant)
                    and value.value in SERVER_FRAME_TYPES
                ):
                    found.append(f"{name}:{node.lineno} builds a {value.value!r} frame")
    assert found == []


def _is_overload(node: ast.AST) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any(
        (isinstance(d, ast.Name) and d.id == "overload")
        or (isinstance(d, ast.Attribute) and d.attr == "overload")
        for d in decorators
    )


def _public_definitions(tree: ast.Module) -> Iterator[ast.AST]:
    for node in tree.body:
        if isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ) and not node.name.startswith("_"):
            yield node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith(
                        "_"
                    ):
                        yield item


@pytest.mark.parametrize("package", ["agentchat_server", "agentchat"])
def test_every_module_and_public_definition_has_a_docstring(package: str) -> None:
    """A contract docstring on every module and public class, function and method."""
    missing = []
    for name, path in modules():
        if not within(name, package):
            continue
        tree = ast.parse(path.read_text())
        if ast.get_docstring(tree) is None and path.stat().st_size:
            missing.append(name)
        missing.extend(
            f"{name}.{node.name}"  # type: ignore[attr-defined]
            for node in _public_definitions(tree)
            if ast.get_docstring(node) is None and not _is_overload(node)  # type: ignore[arg-type]
        )
    assert missing == []
