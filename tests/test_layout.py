"""The project's import graph: data walks one way, nothing climbs back to the entry point."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "sre_tracker"
RULES = "sre_maturity.rules.maturity"


PACKAGE = "sre_maturity"
# The design card's modules: the only ones at the top of the repository and of the wheel.
CARD = {"sre_tracker", "database", "config", "interactive_setup"}


def module_name(path: Path) -> str:
    """``sre_maturity/rules/maturity.py`` -> ``sre_maturity.rules.maturity``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of the tool by its dotted name: the card's four and the package's."""
    paths = sorted(ROOT.glob("*.py")) + sorted((ROOT / PACKAGE).rglob("*.py"))
    return {module_name(path): path for path in paths}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Modules in `known` that `path` imports anywhere (module level, inside functions,
    TYPE_CHECKING): ``from a.b import c`` counts as ``a.b.c`` when that is a module, else
    ``a.b``; ``import a.b`` as ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in known else node.module for name in names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert ENTRY in graph and RULES in graph
    # sre_tracker imports its command modules inside the handlers, so those edges must show.
    assert any(name.startswith(f"{PACKAGE}.commands.") for name in graph[ENTRY])


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_cycle_finder_reports_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_imports_the_entry_point():
    upward = sorted(name for name, targets in import_graph().items() if ENTRY in targets)
    assert upward == []


def test_maturity_rules_stay_pure():
    """The rules are pure functions: no project module, no I/O library."""
    assert import_graph()[RULES] - {PACKAGE} == set()
    io_libraries = {"sqlite3", "pandas", "requests", "subprocess", "os", "pathlib", "io", "csv",
                    "socket", "shutil", "tempfile", "urllib", "http"}
    used = imported_modules(project_modules()[RULES], io_libraries)
    assert used == set()


@pytest.mark.parametrize("module", ["sre_maturity.rules.evidence", "sre_maturity.rules.targets"])
def test_evidence_rules_stay_pure(module):
    """The answer rules and the target quoting read no file, socket or process: only the other
    rules and text functions (``urllib.parse`` quotes URL parts, it opens nothing)."""
    rules = {name for name in project_modules() if name.startswith(f"{PACKAGE}.rules.")}
    assert import_graph()[module] - rules - {PACKAGE, f"{PACKAGE}.rules"} == set()
    io_libraries = {"sqlite3", "pandas", "requests", "subprocess", "os", "pathlib", "io", "csv",
                    "socket", "shutil", "tempfile", "http", "urllib.request"}
    assert imported_modules(project_modules()[module], io_libraries) == set()


def test_sql_runs_only_in_the_database_module():
    """Only database.py (queries) and schema.py (the schema, its migrations, whole-table rows)
    call execute/executemany/executescript: SQL lives in the database modules."""
    sql_calls = {"execute", "executemany", "executescript"}
    offenders = []
    for name, path in project_modules().items():
        if name in ("database", f"{PACKAGE}.store.schema"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in sql_calls):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_readme_map_names_every_module_and_only_existing_ones():
    """The README's "where things live" table matches the code."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## For contributors: where things live"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    named = set(re.findall(r"`([a-z_/]+)\.py`", section))
    expected = {str(path.relative_to(ROOT).with_suffix("")) for path in project_modules().values()
                if path.name != "__init__.py"}
    helpers = {name for name in named if name.startswith(("tests/", "bench/"))}
    assert named - helpers == expected
    # The tests' and the bench's scripts it names exist, and every bench script is named.
    assert [name for name in helpers if not (ROOT / f"{name}.py").is_file()] == []
    assert {f"bench/{path.stem}" for path in (ROOT / "bench").glob("*.py")} <= helpers


def test_the_tool_type_checks():
    """CI runs mypy (.ci/run); the suite runs it too, so a change that breaks the types shows
    before it is pushed. Configuration: [tool.mypy] in pyproject.toml."""
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
