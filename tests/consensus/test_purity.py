"""The consensus package stays pure: no clock, randomness, asyncio, threads or I/O (issue #3)."""

from __future__ import annotations

import ast
from pathlib import Path

import emrchain.consensus

FORBIDDEN_MODULES = {
    "asyncio",
    "datetime",
    "io",
    "multiprocessing",
    "os",
    "pathlib",
    "random",
    "secrets",
    "select",
    "shutil",
    "socket",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "uuid",
}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval"}
PACKAGE = Path(emrchain.consensus.__file__).parent


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def called_names(tree: ast.AST) -> set[str]:
    return {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }


def test_the_checker_sees_every_module() -> None:
    names = {path.name for path in PACKAGE.glob("*.py")}
    assert {"state_machine.py", "signing_guard.py", "proposer.py", "vote_tally.py"} <= names


def test_no_module_imports_clock_randomness_concurrency_or_io() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        assert not imported_roots(tree) & FORBIDDEN_MODULES, path.name
        assert not called_names(tree) & FORBIDDEN_CALLS, path.name
        # Importing the simulator (its PRNG, its broken variants) would also be a leak.
        assert not any(name.startswith("emrchain.sim") for name in _modules(tree)), path.name


def _modules(tree: ast.AST) -> set[str]:
    return {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }


def test_the_import_check_can_fail() -> None:
    tree = ast.parse("import time\nfrom random import Random\nopen('x')\n")
    assert imported_roots(tree) & FORBIDDEN_MODULES == {"time", "random"}
    assert called_names(tree) & FORBIDDEN_CALLS == {"open"}
