"""Rules of the codebase that a reader relies on (issue 16)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "analytics_assets"
MAX_FUNCTION_LINES = 60


def test_no_function_in_the_package_is_longer_than_60_lines_closures_included() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert long == []


def test_the_simulator_imports_nothing_from_the_client() -> None:
    """The simulator is the tests' oracle: written from the reference, never from the source."""
    imports = []
    for path in sorted((PACKAGE / "simulator").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            imports += [f"{path.name}: {n}" for n in names if n.startswith("analytics_assets.")]
    assert [i for i in imports if "analytics_assets.simulator" not in i] == []


def test_cursor_tables_are_exactly_the_tables_whose_resource_reads_its_state() -> None:
    """`CURSOR_TABLES` decides which tables may inherit a cursor (`inherited_cursors`): a table
    that starts keeping one must be listed, or a job's first run would read it from scratch."""
    from analytics_assets.source.settings import CURSOR_TABLES

    read = set()
    for path in sorted((PACKAGE / "source" / "tables").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "state"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                read.add(node.args[0].value)
    assert read == set(CURSOR_TABLES)
    # dlt's state is reached only through `Run.state`: no other call, nor dlt's incremental.
    other = []
    for path in sorted((PACKAGE / "source").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            dlt_state = name in ("resource_state", "source_state", "incremental", "state_value")
            if dlt_state and (path.name, name) != ("run.py", "resource_state"):
                other.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    assert other == []
