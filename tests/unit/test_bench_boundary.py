"""The bench runs from what ships with it: it never imports the test suite."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_bench_imports_nothing_from_tests() -> None:
    offenders = {
        path.name: sorted(
            n for n in _imported(ast.parse(path.read_text())) if n.split(".")[0] == "tests"
        )
        for path in sorted(BENCH.glob("*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_sees_an_import_of_tests() -> None:
    assert "tests.support" in _imported(ast.parse("from tests.support import ROOT\n"))
