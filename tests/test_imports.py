"""The packages of mathforge import each other one way only: no cycle between subpackages.

Every import counts, including those inside functions (they still tie the packages together),
so data flows problems -> sampling -> records -> grading/RM -> trainers without loops.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import mathforge

ROOT = Path(mathforge.__file__).resolve().parent


def _unit(module: str) -> str:
    """``mathforge.eval.runner`` -> ``eval``; ``mathforge.metrics`` -> ``metrics``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mathforge"


def import_graph(root: Path = ROOT) -> dict[str, dict[str, str]]:
    """unit -> {imported unit: the first file that imports it}."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        source = _unit(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = (
                    [node.module]
                    if node.module != "mathforge"
                    else [f"mathforge.{a.name}" for a in node.names]
                )
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] != "mathforge" or name == "mathforge.__version__":
                    continue
                target = _unit(name)
                if target != source:
                    graph.setdefault(source, {}).setdefault(target, str(relative))
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of units (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = 1
        path.append(unit)
        for target in graph.get(unit, {}):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state and (cycle := visit(unit)):
            return cycle
    return None


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        edges = [f"{a} -> {b} ({graph[a][b]})" for a, b in itertools.pairwise(cycle)]
        raise AssertionError("import cycle: " + "; ".join(edges))


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path: Path):
    package = tmp_path / "mathforge"
    (package / "eval").mkdir(parents=True)
    (package / "reward").mkdir()
    (package / "__init__.py").write_text("")
    (package / "eval" / "__init__.py").write_text("from mathforge.metrics import summarize\n")
    (package / "metrics.py").write_text("def f():\n    from mathforge.eval.records import ProblemRecord\n")
    (package / "reward" / "__init__.py").write_text("import mathforge.metrics\n")
    cycle = find_cycle(import_graph(package))
    assert cycle is not None and set(cycle) == {"eval", "metrics"}


def test_the_schema_and_the_metrics_stand_alone():
    graph = import_graph()
    assert set(graph.get("records", {})) == set()
    assert "eval" not in graph.get("metrics", {}) and "eval" not in graph.get("reward", {})


def test_the_command_line_starts_without_torch_or_transformers():
    # Every command imports its heavy libraries in its body: `--help`, `loop status` and
    # `loop plan` answer in a fraction of a second, and the loop runner (alive for the whole run,
    # its commands' environment chosen) holds no torch.
    code = (
        "import io, sys, mathforge.cli; from rich.console import Console; "
        "from mathforge.loop.runner import _child_environment; "
        "_child_environment(Console(file=io.StringIO())); "
        "print(sorted({'torch', 'transformers', 'trl'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
