"""Append-only JSONL: line-numbered errors, torn-line repair, resume ids."""

from __future__ import annotations

import pytest

from mathforge.errors import InputError
from mathforge.jsonl import JsonlWriter, read_ids, read_jsonl, read_jsonl_lenient


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1}\n\n[1, 2]\n')
    with pytest.raises(InputError) as info:
        list(read_jsonl(path))
    assert str(info.value).startswith(f"{path}:3: expected a JSON object")


def test_lenient_reader_reports_and_continues(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1}\n{oops\n{"id": 2}\n')
    rows = list(read_jsonl_lenient(path))
    assert [n for n, _ in rows] == [1, 2, 3]
    assert isinstance(rows[1][1], InputError) and rows[1][1].line == 2
    assert rows[2][1] == {"id": 2}


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        list(read_jsonl(tmp_path / "absent.jsonl"))


def test_writer_repairs_torn_tail_and_resume_ids(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "x"')  # crash mid-line
    assert read_ids(path) == {"a"}
    with JsonlWriter(path) as writer:
        writer.write({"id": "c"})
    assert [obj["id"] for _, obj in read_jsonl(path)] == ["a", "c"]
