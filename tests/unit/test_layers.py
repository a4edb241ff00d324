"""The layering rules of DESIGN.md section 1, checked by reading the imports.

pgha/core is pure: the standard library's value and logic modules only. Only the adapters
talk to the outside world (psycopg, urllib3 for etcd, subprocess).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pgha"
IO_MODULES = {"psycopg", "urllib3", "etcd3gw", "requests", "subprocess"}
IMPURE_FOR_CORE = IO_MODULES | {
    "socket",
    "threading",
    "logging",
    "time",
    "os",
    "random",
    "apscheduler",
    "typer",
    "pydantic",
    "pydantic_settings",
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module)
    return roots


def test_the_core_imports_nothing_impure_and_nothing_outside_the_core() -> None:
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for name in imported_roots(path):
            top = name.split(".")[0]
            assert top not in IMPURE_FOR_CORE, f"{path.name} imports {name}"
            if top == "pgha":
                assert name.startswith("pgha.core"), f"{path.name} imports {name}"


def test_only_adapters_import_io_libraries() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "adapters" in path.parts:
            continue
        for name in imported_roots(path):
            top = name.split(".")[0]
            assert top not in IO_MODULES, f"{path.relative_to(PACKAGE)} imports {name}"
