"""The tests' own shape: conftest.py holds only fixtures and hooks, and one set of mutating calls serves every
"changed nothing" check."""

from __future__ import annotations

import ast
from pathlib import Path

from support.invariants import MUTATING, SIM_MUTATING

TESTS = Path(__file__).resolve().parent


def _is_fixture(node: ast.FunctionDef) -> bool:
    def name(decorator: ast.expr) -> str:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return ast.unparse(target)

    return any(name(d) == "pytest.fixture" for d in node.decorator_list)


def test_every_conftest_holds_only_fixtures_and_hooks() -> None:
    # The bed, the invariants and the helpers live in tests/support/ (or a package's helpers.py), importable by name.
    for conftest in TESTS.rglob("conftest.py"):
        tree = ast.parse(conftest.read_text())
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        others = [f.name for f in functions if not (_is_fixture(f) or f.name.startswith("pytest_"))]
        classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
        assert others == [] and classes == [], f"{conftest.relative_to(TESTS)}: {others + classes}"


def test_the_mutating_calls_are_defined_once() -> None:
    # Each test module imports the set from support.invariants rather than keeping a narrower one of its own.
    definers = []
    for module in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if names & {"MUTATING", "SIM_MUTATING"}:
                    definers.append(module.relative_to(TESTS).as_posix())
    assert sorted(definers) == ["support/invariants.py", "support/invariants.py"]


def test_the_backend_names_of_the_mutating_calls_are_the_client_names() -> None:
    # The simulator records backend operations in snake case; each is one of the clients' mutating calls.
    assert len(SIM_MUTATING) == len(MUTATING)
    assert {"update_service", "stop_task", "register_scalable_target", "put_item", "delete_item"} <= SIM_MUTATING
