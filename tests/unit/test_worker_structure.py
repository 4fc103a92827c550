"""The worker's shape: no import cycle (nor an import hidden in a function to dodge one),
and `worker/lifecycle.py` the only module that writes a job's or a chunk's status."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "worker"


def _modules() -> dict[str, ast.Module]:
    return {
        f"worker.{path.stem}" if path.stem != "__init__" else "worker": ast.parse(
            path.read_text(), str(path)
        )
        for path in sorted(WORKER.glob("*.py"))
    }


def _imported(node: ast.AST, names: set[str]) -> set[str]:
    """The worker modules an import statement names."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        found |= {a.name for a in node.names if a.name in names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        if node.module in names:
            found.add(node.module)
        found |= {f"{node.module}.{a.name}" for a in node.names} & names
    return found - {"worker"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    return {
        name: {dep for node in ast.walk(tree) for dep in _imported(node, names)}
        for name, tree in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_worker() -> None:
    graph = _graph()
    assert graph["worker.jobs"] >= {"worker.whole", "worker.chunked"}
    assert _cycle(graph) is None


def test_whole_and_chunked_are_peers() -> None:
    graph = _graph()
    assert "worker.chunked" not in graph["worker.whole"]
    assert "worker.whole" not in graph["worker.chunked"]
    for runner in ("worker.whole", "worker.chunked"):
        assert {"worker.lifecycle", "worker.heartbeat", "worker.engine"} <= graph[runner]


def test_no_worker_import_hides_in_a_function() -> None:
    """A worker module imported inside a function is how a cycle is usually dodged.
    (A third-party import may be lazy, as chunk_plan's faster-whisper VAD is.)"""
    modules = _modules()
    hidden = [
        f"{name}:{getattr(node, 'lineno', 0)}"
        for name, tree in modules.items()
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
        if _imported(node, set(modules))
    ]
    assert hidden == []


def _status_writes(tree: ast.Module) -> list[int]:
    """Lines that assign `<row>.status`, or pass `status=` to an UPDATE's `.values()`."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "values"
            and any(k.arg == "status" for k in node.keywords)
        ):
            lines.append(node.lineno)
    return lines


def test_the_status_check_sees_a_write() -> None:
    tree = ast.parse("job.status = 'failed'\nsession.execute(update(Job).values(status='x'))")
    assert _status_writes(tree) == [1, 2]


def test_only_lifecycle_writes_status() -> None:
    writers = {name: lines for name, tree in _modules().items() if (lines := _status_writes(tree))}
    assert set(writers) == {"worker.lifecycle"}
