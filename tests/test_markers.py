"""Every test that starts a subprocess is marked `slow`, so that `pytest -m "not slow"` stays a fast loop.

Checked statically: each test module is parsed with `ast`, and a test function that is not
marked slow (itself, through its class, or through the module's `pytestmark`) must not use
`subprocess`, `trio.run_process`, the process starters of tests.conftest (`start`, `meshsim`,
`serve_replicas`, `start_proxy`) or its `proxy` fixture, nor a module-level helper or fixture
of its own file that uses them. Processes started from another test module's helpers, real
servers kept up in-process and long sleeps are marked by hand (README.md, "Running the tests").
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
STARTERS = {"start", "meshsim", "serve_replicas", "start_proxy"}
"""The helpers of tests.conftest that run meshsim in a subprocess."""
ASYNC_STARTERS = {"run_process", "create_subprocess_exec", "create_subprocess_shell"}
"""`trio.run_process`, `asyncio.create_subprocess_exec` and `_shell`, whatever they are imported as."""

Function = ast.FunctionDef | ast.AsyncFunctionDef


def marked_slow(decorators: list[ast.expr]) -> bool:
    """`@pytest.mark.slow`, with or without arguments, or `pytestmark = pytest.mark.slow` (or a list with it)."""
    for decorator in decorators:
        for node in ast.walk(decorator):
            if isinstance(node, ast.Attribute) and node.attr == "slow" and ast.unparse(node.value).endswith("mark"):
                return True
    return False


def annotations(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            yield node.annotation
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            yield node.returns


def uses(function: Function, starters: set[str], modules: set[str]) -> str | None:
    """What in `function` starts a process (a name, or `subprocess.X`), annotations aside; None if nothing."""
    typing_only = {id(node) for annotation in annotations(function) for node in ast.walk(annotation)}
    for node in ast.walk(function):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in starters:
            return node.id
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id in modules or node.attr in ASYNC_STARTERS)
        ):
            return f"{node.value.id}.{node.attr}"
    return None


def is_fixture(function: Function) -> bool:
    return any("fixture" in ast.unparse(decorator) for decorator in function.decorator_list)


def starters_of(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names that start a process in this module (imported from tests.conftest or `subprocess`,
    and its own helpers and fixtures that use them, transitively), and the local names of `subprocess`."""
    starters: set[str] = set()
    modules: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name for alias in node.names if alias.name == "subprocess")
        elif isinstance(node, ast.ImportFrom) and node.module == "subprocess":
            starters.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "tests.conftest":
            starters.update(alias.asname or alias.name for alias in node.names if alias.name in STARTERS)
    helpers = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    helpers = [helper for helper in helpers if not helper.name.startswith("test")]
    grown = True
    while grown:
        grown = False
        for helper in helpers:
            if helper.name not in starters and uses(helper, starters, modules):
                starters.add(helper.name)
                grown = True
    return starters, modules


def conftest_fixtures_that_start_processes() -> frozenset[str]:
    tree = ast.parse((TESTS / "conftest.py").read_text(encoding="utf-8"))
    starters, _ = starters_of(tree)
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_fixture(node) and node.name in starters
    )


def collected_tests(tree: ast.Module) -> Iterator[tuple[str, Function, bool]]:
    """Each test function: its name as pytest shows it, its node, and whether a class marks it slow."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            yield node.name, node, False
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and member.name.startswith("test"):
                    yield f"{node.name}::{member.name}", member, marked_slow(node.decorator_list)


def unmarked_process_starters(path: Path, fixtures: frozenset[str] = frozenset()) -> list[str]:
    """`FILE::TEST (uses WHAT)` for each test in the file that starts a process and is not marked slow;
    `fixtures` are the fixtures of tests.conftest that start processes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module_marks = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
    ]
    if marked_slow(module_marks):
        return []
    starters, modules = starters_of(tree)
    local_fixtures = {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_fixture(node) and node.name in starters
    }
    found = []
    for name, function, by_class in collected_tests(tree):
        if by_class or marked_slow(function.decorator_list):
            continue
        arguments = {a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs}
        what = uses(function, starters, modules) or next(iter(sorted(arguments & (fixtures | local_fixtures))), None)
        if what is not None:
            found.append(f"{path.name}::{name} (uses {what})")
    return found


def test_every_test_that_starts_a_process_is_marked_slow() -> None:
    fixtures = conftest_fixtures_that_start_processes()
    assert "proxy" in fixtures  # the check reads conftest
    modules = sorted(TESTS.glob("test_*.py"))
    unmarked = [found for path in modules for found in unmarked_process_starters(path, fixtures)]
    assert not unmarked, "mark these @pytest.mark.slow (they start a process):\n" + "\n".join(unmarked)


EXAMPLE = """\
import subprocess
import sys

import pytest
import trio

from tests.conftest import meshsim as run_meshsim, serve_replicas


def run_protoc() -> None:
    subprocess.run([sys.executable, "--version"], check=True)


def indirectly() -> None:
    run_protoc()


@pytest.fixture
def replicas() -> list[str]:
    return serve_replicas(1)[1]


def test_direct() -> None:
    subprocess.run([sys.executable, "--version"], check=True)


async def test_from_trio() -> None:
    await trio.run_process([sys.executable, "--version"])


def test_through_conftest() -> None:
    assert run_meshsim("--help").returncode == 0


def test_through_a_helper_of_a_helper() -> None:
    indirectly()


async def test_passed_as_a_function(trio_thread) -> None:
    await trio_thread(run_meshsim, "--help")


def test_through_a_fixture(replicas: list[str]) -> None:
    pass


def test_through_a_conftest_fixture(proxy: str) -> None:
    assert proxy


def test_annotations_alone_start_nothing(process: subprocess.Popen[str] | None = None) -> None:
    started: list[subprocess.Popen[str]] = []
    assert not started


@pytest.mark.slow
def test_marked() -> None:
    indirectly()


@pytest.mark.slow
class TestMarkedClass:
    def test_in_a_marked_class(self) -> None:
        indirectly()


class TestUnmarkedClass:
    def test_in_an_unmarked_class(self) -> None:
        indirectly()
"""


def test_the_check_finds_an_unmarked_test_that_starts_a_process(tmp_path: Path) -> None:
    path = tmp_path / "test_example.py"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert unmarked_process_starters(path, frozenset({"proxy"})) == [
        "test_example.py::test_direct (uses subprocess.run)",
        "test_example.py::test_from_trio (uses trio.run_process)",
        "test_example.py::test_through_conftest (uses run_meshsim)",
        "test_example.py::test_through_a_helper_of_a_helper (uses indirectly)",
        "test_example.py::test_passed_as_a_function (uses run_meshsim)",
        "test_example.py::test_through_a_fixture (uses replicas)",
        "test_example.py::test_through_a_conftest_fixture (uses proxy)",
        "test_example.py::TestUnmarkedClass::test_in_an_unmarked_class (uses indirectly)",
    ]


@pytest.mark.parametrize("mark", ["pytest.mark.slow", "[pytest.mark.slow, pytest.mark.filterwarnings('ignore')]"])
def test_a_module_marked_slow_passes_whole(tmp_path: Path, mark: str) -> None:
    path = tmp_path / "test_example.py"
    path.write_text(EXAMPLE + f"\npytestmark = {mark}\n", encoding="utf-8")
    assert unmarked_process_starters(path, frozenset({"proxy"})) == []
