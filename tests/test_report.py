"""Reports: the run table, report.md, and the side-by-side comparison with paired CIs and HTML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import mathforge.cli.report  # noqa: F401  (registers the command)
from mathforge.cli.app import app
from mathforge.data import Problem
from mathforge.errors import MathforgeError
from mathforge.eval.report import compare_runs, comparison_table, load_run, markdown_report, render_html
from mathforge.eval.runner import compute_metrics
from mathforge.records import ProblemRecord, SampleRecord
from mathforge.runs import RunDirectory


def _problems(bench: str, count: int) -> list[Problem]:
    return [
        Problem(id=f"{bench}/{i}", benchmark=bench, question=f"q{i}", gold="1", meta={"level": 1 + i % 2})
        for i in range(count)
    ]


def _write_run(path: Path, mode: str, right: int, n: int) -> Path:
    """A finished run directory where the first ``right`` problems of each benchmark are solved."""
    problems = {"alpha": _problems("alpha", 20), "beta": _problems("beta", 10)}
    run = RunDirectory(path)
    run.open({"model": "tiny", "mode": mode, "n": n, "temperature": 0.7 if n > 1 else 0.0})
    records = {}
    for items in problems.values():
        for position, problem in enumerate(items):
            ok = position < right
            samples = [
                SampleRecord(
                    response="r",
                    answer="1" if ok else str(2 + j),
                    correct=ok,
                    group=0 if ok else j,
                    completion_tokens=7,
                    rm_score=float(j == 0),
                )
                for j in range(n)
            ]
            record = ProblemRecord(
                id=problem.id,
                benchmark=problem.benchmark,
                question=problem.question,
                gold="1",
                meta=problem.meta,
                prompt="p",
                prompt_tokens=3,
                samples=samples,
                seconds=0.5,
            )
            records[record.id] = record
    run.store.append(records.values())
    run.store.close()
    metrics = compute_metrics(run.store.load(), problems)
    run.metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    return path


def test_report_renders_for_two_runs(tmp_path: Path):
    before = load_run(_write_run(tmp_path / "before", "cot", right=4, n=4))
    after = load_run(_write_run(tmp_path / "after", "tir", right=8, n=4))
    comparison = compare_runs([before, after])
    assert comparison["runs"] == ["before (cot)", "after (tir)"]
    alpha = comparison["benchmarks"]["alpha"]
    assert set(alpha) == {"pass@1", "maj@4", "rm@4", "pass@4"}
    assert alpha["pass@1"]["values"][0]["value"] == pytest.approx(4 / 20)
    diff = alpha["pass@1"]["diffs"][0]
    assert diff["diff"] == pytest.approx(4 / 20) and diff["problems"] == 20
    assert 0 < diff["ci"][0] <= diff["diff"] <= diff["ci"][1]
    assert comparison["benchmarks"]["beta"]["maj@4"]["diffs"][0]["diff"] == pytest.approx(4 / 10)

    table = comparison_table(comparison)
    assert [column.header for column in table.columns][-1] == "after (tir)\n- before (cot)"
    page = render_html([before, after], comparison)
    assert page.count("data:image/png;base64,") == 3  # accuracy bars + a curve plot per benchmark
    assert "+20.0" in page

    text = markdown_report(before.config, before.metrics)
    assert "| alpha | 20 | 20.0 [" in text and "### alpha by level" in text


def test_report_cli_writes_html_and_json(tmp_path: Path):
    first = _write_run(tmp_path / "a", "cot", right=2, n=1)
    second = _write_run(tmp_path / "b", "cot", right=3, n=1)
    html, data = tmp_path / "out" / "r.html", tmp_path / "r.json"
    args = ["report", str(first), str(second), "--html", str(html), "--json", str(data)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "- a (cot)" in result.output  # the difference column's header: "b (cot)" over "- a (cot)"
    assert html.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert json.loads(data.read_text(encoding="utf-8"))["benchmarks"]["alpha"]["pass@1"]["diffs"][0][
        "diff"
    ] == pytest.approx(0.05)


def test_report_refuses_an_unfinished_run(tmp_path: Path):
    RunDirectory(tmp_path / "x").open({"model": "m"})
    with pytest.raises(MathforgeError, match=r"no metrics\.json yet"):
        load_run(tmp_path / "x")
    assert yaml.safe_load((tmp_path / "x" / "config.yaml").read_text()) == {"model": "m"}
