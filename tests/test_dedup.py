"""Deduplication: exact and near-duplicate clusters, first line kept, math-aware normalisation, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from mathforge.cli import app
from mathforge.data.dedup import Deduplicator, Duplicate, shingles
from mathforge.errors import InputError, MathforgeError

LONG = (
    "A bakery sells muffins for 3 dollars each and cookies for 2 dollars each. On Monday it sold 40 "
    "muffins and 65 cookies, and on Tuesday it sold twice as many muffins and half as many cookies. "
    "How much money did the bakery make over the two days?"
)


def test_exact_duplicates_ignore_case_spacing_and_punctuation() -> None:
    dedup = Deduplicator()
    assert dedup.add("a", "What is 12 + 30?") is None
    assert dedup.add("b", "what   is 12+30") == Duplicate("a", "exact", 1.0)


def test_near_duplicates_need_the_threshold_and_keep_the_first() -> None:
    dedup = Deduplicator(threshold=0.8)
    assert dedup.add(0, LONG) is None
    near = dedup.add(1, LONG.replace("40 muffins", "41 muffins"))
    assert near is not None and (near.of, near.rule) == (0, "near") and 0.8 <= near.score < 1.0
    words = LONG.split()
    halved = " ".join(words[: len(words) // 2]) + " How many cookies were left?"
    assert dedup.add(2, halved) is None  # too different: a new cluster
    assert dedup.add(3, halved.upper()) == Duplicate(2, "exact", 1.0)


def test_operands_and_operators_keep_problems_apart() -> None:
    dedup = Deduplicator(threshold=0.5)
    for key, text in enumerate(["What is 5 - 3?", "What is 3 - 5?", "What is 5 + 3?", "What is 5 * 3?"]):
        assert dedup.add(key, text) is None, text
    assert shingles(["x"]) == frozenset({"x"})


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["data", "dedup", *map(str, args)])


def test_cli_keeps_the_first_line_of_each_cluster_and_reports_clusters(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "problem": LONG},
        {"id": "b", "problem": "What is 5 - 3?"},
        {"id": "c", "problem": LONG.replace("65 cookies", "66 cookies")},
        {"id": "d", "problem": "what is 5-3"},
        {"id": "e", "problem": "What is 3 - 5?"},
        {"id": "f", "problem": LONG.lower()},
    ]
    source = _write(tmp_path / "in.jsonl", rows)
    out, clusters, summary = tmp_path / "out.jsonl", tmp_path / "clusters.jsonl", tmp_path / "s.json"
    result = _invoke(
        source, "--field", "problem", "-o", out, "--clusters", clusters, "--summary-json", summary
    )
    assert result.exit_code == 0, result.output
    raw = source.read_text().splitlines(keepends=True)
    assert out.read_text() == raw[0] + raw[1] + raw[4]
    found = [json.loads(line) for line in clusters.read_text().splitlines()]
    assert [(c["id"], [(d["id"], d["line"], d["rule"]) for d in c["duplicates"]]) for c in found] == [
        ("a", [("c", 3, "near"), ("f", 6, "exact")]),
        ("b", [("d", 4, "exact")]),
    ]
    data = json.loads(summary.read_text())
    assert {key: data[key] for key in ("lines", "kept", "exact", "near", "clusters", "largest")} == {
        "lines": 6,
        "kept": 3,
        "exact": 2,
        "near": 1,
        "clusters": 2,
        "largest": 3,
    }
    assert "largest clusters" in result.output


def test_cli_bad_input_and_threshold(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [{"question": "ok"}, {"text": "no question"}])
    result = _invoke(source, "-o", tmp_path / "out.jsonl")
    assert isinstance(result.exception, InputError)
    assert str(result.exception) == f"{source}:2: field 'question': missing (set --field)"
    empty = _write(tmp_path / "empty.jsonl", [])
    result = _invoke(empty, "-o", tmp_path / "out.jsonl")
    assert str(result.exception) == f"{empty}: no lines (empty file)"
    result = _invoke(source, "--threshold", "1.5", "-o", tmp_path / "out.jsonl")
    assert isinstance(result.exception, MathforgeError) and "--threshold" in str(result.exception)
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_deduplicates_sft_records_by_question_keeping_every_response(tmp_path: Path) -> None:
    def record(key: str, question: str, response: str) -> dict:
        system = {"role": "system", "content": "Please reason step by step."}
        return {"id": key, "prompt": [system, {"role": "user", "content": question}], "response": response}

    rows = [
        record("p1#0", LONG, "Monday 250, Tuesday 305: \\boxed{555}"),
        record("p1#3", LONG, "Add both days: \\boxed{555}"),
        record("p2#0", "What is 5 - 3?", "\\boxed{2}"),
        record("p3#1", LONG.replace("40 muffins", "41 muffins"), "\\boxed{558}"),
        record("p3#2", LONG.replace("40 muffins", "41 muffins"), "So \\boxed{558}"),
    ]
    source = _write(tmp_path / "sft.jsonl", rows)
    out, clusters = tmp_path / "out.jsonl", tmp_path / "clusters.jsonl"
    result = _invoke(source, "-o", out, "--clusters", clusters)
    assert result.exit_code == 0, result.output
    raw = source.read_text().splitlines(keepends=True)
    assert out.read_text() == "".join(raw[:3])
    (cluster,) = [json.loads(line) for line in clusters.read_text().splitlines()]
    assert cluster["id"] == "p1#0"
    assert [(d["id"], d["line"], d["rule"]) for d in cluster["duplicates"]] == [
        ("p3#1", 4, "near"),
        ("p3#2", 5, "near"),
    ]
