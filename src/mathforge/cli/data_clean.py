"""`mathforge data decontam` and `mathforge data dedup`: training-data hygiene before any training stage."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NamedTuple, cast

import typer
from rich.table import Table

from mathforge.cli.app import console, err_console
from mathforge.cli.data import data_app
from mathforge.errors import InputError, MathforgeError


class FieldLine(NamedTuple):
    """One input line: its number, raw text, record, problem text and the field that held it."""

    number: int
    raw: str
    record: dict[str, Any]
    text: str
    field: str


def read_field_lines(path: Path, field: str) -> list[FieldLine]:
    """Every line with its problem text: ``field``, or in SFT records the question (last user
    message of ``prompt``). A bad line, a missing or empty text or an empty file is one error
    naming the file, line and field."""
    from mathforge.data.decontam import record_question
    from mathforge.jsonl import read_jsonl_raw

    lines = []
    for number, raw, record in read_jsonl_raw(path):
        if isinstance(record, InputError):
            raise record
        value, source = record_question(record, field)
        if not isinstance(value, str):
            if value is not None:
                problem = f"expected text, got {type(value).__name__}"
            elif source == field:
                problem = "missing (set --field)"
            else:
                problem = "no user message (an SFT record's question)"
            raise InputError(path, problem, number, source)
        if not value.strip():
            raise InputError(path, "empty", number, source)
        lines.append(FieldLine(number, raw if raw.endswith("\n") else raw + "\n", record, value, source))
    if not lines:
        raise InputError(path, "no lines (empty file)")
    return lines


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@data_app.command("decontam")
def decontam(
    input_path: Annotated[Path, typer.Argument(metavar="IN.jsonl", help="Training lines to check.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="CLEAN.jsonl: unflagged lines, unchanged, in order.")
    ],
    field: Annotated[
        str, typer.Option(help="Field holding the problem text (SFT records: the prompt's user message).")
    ] = "question",
    against: Annotated[
        str,
        typer.Option(
            help="'all' (registry benchmarks with a local test file), names or JSONL files, comma-separated."
        ),
    ] = "all",
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Benchmark folder (<name>/test.jsonl); default $MATHFORGE_DATA_DIR or ./data."),
    ] = None,
    flagged_path: Annotated[
        Path | None,
        typer.Option("--flagged", help="FLAGGED.jsonl: {id, line, field, benchmark, match_id, rule, score}."),
    ] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the summary as JSON here.")] = None,
) -> None:
    """Drop lines sharing a 13-gram with a benchmark test question, or with a word-LCS ratio above 0.6.

    Solution and response fields, where present, are also checked against benchmark solutions.
    SFT records (``mathforge data bootstrap``, ``mathforge rs``) are checked by the question in
    their prompt and by their response.
    """
    from mathforge.data.decontam import Decontaminator, decontaminate_records
    from mathforge.data.loaders import default_data_dir

    start = time.perf_counter()
    lines = read_field_lines(input_path, field)
    checker = Decontaminator.from_benchmarks(against, data_dir)
    index_seconds = time.perf_counter() - start
    if not checker.items:
        base = data_dir or default_data_dir()
        raise MathforgeError(
            f"--against {against}: no benchmark test files under {base} (looked for <name>/test.jsonl); "
            "pass --data-dir DIR"
        )
    _, flagged, summary = decontaminate_records(
        [line.record for line in lines], field, decontaminator=checker
    )
    summary.index_seconds = round(index_seconds, 3)
    summary.seconds = round(time.perf_counter() - start, 3)
    dropped = {report["index"] for report in flagged}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        handle.writelines(line.raw for index, line in enumerate(lines) if index not in dropped)
    if flagged_path is not None:
        flagged_path.parent.mkdir(parents=True, exist_ok=True)
        with flagged_path.open("w", encoding="utf-8") as handle:
            for report in flagged:
                line = lines[report.pop("index")].number
                handle.write(
                    json.dumps({"id": report.pop("id"), "line": line, **report}, ensure_ascii=False) + "\n"
                )
    if summary_json is not None:
        _write_json(summary_json, {"input": str(input_path), "clean": str(out), **summary.to_dict()})

    table = Table(title=f"decontamination of {input_path}")
    table.add_column("benchmark")
    for column in ("test items", "ngram", "lcs", "flagged"):
        table.add_column(column, justify="right")
    totals = {"ngram": 0, "lcs": 0}
    for bench, items in summary.benchmarks.items():
        rules = summary.by_benchmark.get(bench, {})
        for rule in totals:
            totals[rule] += rules.get(rule, 0)
        row = [str(items), str(rules.get("ngram", 0)), str(rules.get("lcs", 0)), str(sum(rules.values()))]
        table.add_row(bench, *row)
    table.add_section()
    share = f"{summary.flagged} of {summary.lines} ({summary.flagged / summary.lines:.1%})"
    table.add_row(
        "all", str(sum(summary.benchmarks.values())), str(totals["ngram"]), str(totals["lcs"]), share
    )
    console.print(table)
    console.print(
        f"{summary.lines - summary.flagged} clean lines in {summary.seconds:.1f} s "
        f"(index {summary.index_seconds:.1f} s)",
        highlight=False,
    )
    if summary.missing:
        err_console.print(f"no local test file, not checked: {', '.join(summary.missing)}", highlight=False)
    console.print(f"clean: {out}" + (f"; flagged: {flagged_path}" if flagged_path else ""), highlight=False)


@data_app.command("dedup")
def dedup(
    input_path: Annotated[Path, typer.Argument(metavar="IN.jsonl", help="Lines to deduplicate.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="OUT.jsonl: the first line of each cluster, unchanged.")
    ],
    field: Annotated[
        str, typer.Option(help="Field holding the problem text (SFT records: the prompt's user message).")
    ] = "question",
    threshold: Annotated[
        float, typer.Option(help="Jaccard similarity of word-bigram sets at which lines are near-duplicates.")
    ] = 0.8,
    clusters_path: Annotated[
        Path | None,
        typer.Option(
            "--clusters", help="Write every cluster: {line, id, duplicates: [{line, id, rule, score}]}."
        ),
    ] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the summary as JSON here.")] = None,
) -> None:
    """Drop exact duplicates (normalised case, spacing, punctuation) and MinHash LSH near-duplicates.

    SFT records are deduplicated by question, keeping every response to a kept question
    (rejection sampling writes several per problem).
    """
    from mathforge.data.decontam import record_id
    from mathforge.data.dedup import Deduplicator, Duplicate

    if not 0.0 < threshold <= 1.0:
        raise MathforgeError(f"--threshold must be above 0 and at most 1, got {threshold}")
    start = time.perf_counter()
    lines = read_field_lines(input_path, field)
    deduplicator = Deduplicator(threshold)
    clusters: dict[int, list[dict[str, Any]]] = {}
    verdicts: list[Duplicate | None] = []
    first_line: dict[str, int] = {}  # SFT records: the first line holding each question
    for index, line in enumerate(lines):
        owner = first_line.setdefault(line.text, index) if line.field != field else index
        duplicate = deduplicator.add(index, line.text) if owner == index else verdicts[owner]
        verdicts.append(duplicate)
        if duplicate is None:
            clusters[index] = []
            continue
        entry = {
            "line": line.number,
            "id": record_id(line.record),
            "rule": duplicate.rule,
            "score": duplicate.score,
        }
        clusters[cast(int, duplicate.of)].append(entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        handle.writelines(lines[index].raw for index in clusters)
    grouped = {index: members for index, members in clusters.items() if members}
    if clusters_path is not None:
        clusters_path.parent.mkdir(parents=True, exist_ok=True)
        with clusters_path.open("w", encoding="utf-8") as handle:
            for index, members in grouped.items():
                line = lines[index]
                cluster = {"line": line.number, "id": record_id(line.record), "duplicates": members}
                handle.write(json.dumps(cluster, ensure_ascii=False) + "\n")
    rules = [member["rule"] for members in grouped.values() for member in members]
    summary = {
        "lines": len(lines),
        "kept": len(clusters),
        "exact": rules.count("exact"),
        "near": rules.count("near"),
        "clusters": len(grouped),
        "largest": max((len(members) + 1 for members in grouped.values()), default=1),
        "threshold": threshold,
        "seconds": round(time.perf_counter() - start, 3),
    }
    if summary_json is not None:
        _write_json(summary_json, {"input": str(input_path), "out": str(out), **summary})

    table = Table(title=f"deduplication of {input_path} ({len(lines)} lines, Jaccard >= {threshold})")
    table.add_column("")
    table.add_column("value", justify="right")
    for label, key in (
        ("exact duplicates", "exact"),
        ("near duplicates", "near"),
        ("clusters (2+ lines)", "clusters"),
        ("largest cluster", "largest"),
        ("kept", "kept"),
    ):
        table.add_row(label, str(summary[key]))
    table.add_row("time", f"{summary['seconds']:.1f} s")
    console.print(table)
    largest = sorted(grouped.items(), key=lambda pair: -len(pair[1]))[:10]
    if largest:
        top = Table(title="largest clusters (kept line: dropped lines)")
        top.add_column("kept line", justify="right")
        top.add_column("dropped lines")
        top.add_column("text")
        for index, members in largest:
            line = lines[index]
            dropped = ", ".join(str(member["line"]) for member in members[:8]) + (
                " ..." if len(members) > 8 else ""
            )
            top.add_row(str(line.number), dropped, line.text[:60].replace("\n", " "))
        console.print(top)
    console.print(f"kept: {out}" + (f"; clusters: {clusters_path}" if clusters_path else ""), highlight=False)
