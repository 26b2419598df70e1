"""The shared record schema: token ids and segments survive grading and the store; old files load."""

from __future__ import annotations

import json
from pathlib import Path

from mathforge.records import Problem, ProblemRecord, Provenance
from mathforge.runs import RunDirectory
from mathforge.sampling import build_record
from mathforge.solve import Trajectory


def _trajectory() -> Trajectory:
    trajectory = Trajectory(prompt="Q: 6*7?\n", prompt_tokens=4, finish_reason="eos", completion_tokens=5)
    trajectory.add("model", "```python\nprint(6*7)\n```", [11, 12, 13])
    trajectory.add("tool", "```output\n42\n```\n", [21, 22])
    trajectory.add("model", "\\boxed{42}", [31, 32])
    trajectory.executions.append({"code": "print(6*7)", "output": "42", "status": "ok", "wall_ms": 3.0})
    return trajectory


def test_build_record_keeps_token_ids_segments_and_provenance(tmp_path: Path):
    trajectory = _trajectory()
    problem = Problem(id="p/0", benchmark="p", question="6*7?", gold="42")
    provenance = Provenance(model="m", mode="tir", temperature=0.0, top_p=1.0, max_new_tokens=64, seed=7)
    record = build_record(problem, trajectory.prompt, [trajectory], "p", provenance)
    sample = record.samples[0]
    assert sample.correct and sample.answer == "42"
    assert sample.token_ids == [11, 12, 13, 21, 22, 31, 32]
    assert [(s.kind, s.token_start, s.token_end) for s in sample.segments] == [
        ("model", 0, 3),
        ("tool", 3, 5),
        ("model", 5, 7),
    ]
    assert sample.tool_mask() == trajectory.tool_mask() == [False, False, False, True, True, False, False]
    assert sample.logprobs is None  # this trajectory carries none

    run = RunDirectory(tmp_path)
    run.open({"model": "m"})
    run.store.append([record])
    run.store.close()
    loaded = run.store.load()["p/0"]
    assert loaded == record and loaded.provenance.seed == 7
    assert loaded.samples[0].segments[1].end - loaded.samples[0].segments[1].start == len(
        "```output\n42\n```\n"
    )


def test_records_written_before_token_ids_were_kept_still_load(tmp_path: Path):
    old = {
        "id": "gsm8k/0",
        "benchmark": "gsm8k",
        "question": "q",
        "gold": "1",
        "meta": {},
        "prompt": "p",
        "prompt_tokens": 3,
        "samples": [{"response": "1", "answer": "1", "correct": True, "reason": "exact", "group": 0,
                     "finish_reason": "eos", "completion_tokens": 2, "executions": [], "rm_score": None}],
        "seconds": 0.5,
    }  # fmt: skip
    (tmp_path / "samples.jsonl").write_text(json.dumps(old) + "\n", encoding="utf-8")
    record = RunDirectory(tmp_path).store.load()["gsm8k/0"]
    assert isinstance(record, ProblemRecord) and record.correct == [True]
    assert record.samples[0].token_ids is None and record.provenance is None


def test_build_record_keeps_logprobs_when_the_engine_gives_them():
    trajectory = Trajectory(prompt="Q", finish_reason="eos", logprobs=[])
    trajectory.add("model", "\\boxed{1}", [5, 6], logprobs=[-0.25, -1.5])
    problem = Problem(id="p/1", benchmark="p", question="Q", gold="1")
    sample = build_record(problem, "Q", [trajectory], "p").samples[0]
    assert sample.logprobs == [-0.25, -1.5] and sample.correct
