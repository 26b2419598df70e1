"""Run directory and sample store: config guard, resume by id, crash-torn lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mathforge.errors import InputError, MathforgeError
from mathforge.records import ProblemRecord, SampleRecord
from mathforge.runs import CHECKPOINT_DIR, RunDirectory, checkpoint_at_last_step, prune_checkpoints


def _record(pid: str) -> ProblemRecord:
    return ProblemRecord(
        id=pid,
        benchmark="b",
        question="q",
        gold="1",
        samples=[SampleRecord(response="1", answer="1", correct=True)],
    )


def test_a_different_config_is_refused_unless_overwritten(tmp_path: Path):
    run = RunDirectory(tmp_path / "run")
    run.open({"model": "m", "temperature": 0.0, "limit": 5}, free=["limit"])
    run.store.append([_record("a")])
    run.store.close()
    # Same identity, other limit: resumes and keeps the samples.
    RunDirectory(tmp_path / "run").open({"model": "m", "temperature": 0.0, "limit": 9}, free=["limit"])
    assert list(run.store.load()) == ["a"]
    with pytest.raises(MathforgeError) as caught:
        run.open({"model": "m", "temperature": 0.7, "limit": 9}, free=["limit"])
    assert "temperature: 0.0 -> 0.7" in str(caught.value) and "--overwrite" in str(caught.value)
    run.open({"model": "m", "temperature": 0.7}, free=["limit"], overwrite=True)
    assert run.store.load() == {}
    assert run.read_config()["temperature"] == 0.7


def test_a_torn_last_line_is_dropped_and_duplicates_keep_the_first(tmp_path: Path):
    run = RunDirectory(tmp_path)
    run.open({"model": "m"})
    run.store.append([_record("a"), _record("b")])
    run.store.close()
    first = run.samples_path.read_text(encoding="utf-8").splitlines()[0]
    with run.samples_path.open("a", encoding="utf-8") as handle:
        handle.write(first.replace('"answer": "1"', '"answer": "2"') + "\n")  # a duplicate id
        handle.write('{"id": "c", "benchmark": "b", "que')  # a line cut by a kill
    records = run.store.load()
    assert list(records) == ["a", "b"] and records["a"].samples[0].answer == "1"
    run.store.append([_record("c")])
    run.store.close()
    assert list(run.store.load()) == ["a", "b", "c"]


def test_a_bad_record_names_file_line_and_field(tmp_path: Path):
    run = RunDirectory(tmp_path)
    run.samples_path.write_text(
        '{"id": "a", "benchmark": "b", "question": "q", "gold": "1"}\n', encoding="utf-8"
    )
    with pytest.raises(InputError) as caught:
        run.store.load()
    assert str(caught.value) == f"{run.samples_path}:1: field 'samples': Field required"


def test_reading_a_directory_that_is_not_a_run(tmp_path: Path):
    with pytest.raises(MathforgeError, match="not a run directory"):
        RunDirectory(tmp_path).read_config()


def test_training_runs_share_the_identity_rule(tmp_path: Path):
    """``rm train`` resumes under the same rule: settings and the resolved dtype, not logging cadence."""
    pytest.importorskip("transformers")
    from dataclasses import asdict

    from mathforge.reward.training import CONFIG_FILE, RewardTrainingConfig, train_reward_model
    from mathforge.runtime import force_cpu_bf16

    cfg = RewardTrainingConfig(base="base", data=str(tmp_path / "missing.jsonl"), out=str(tmp_path / "rm"))
    saved = {**asdict(cfg), "device": "cpu", "dtype": "float32", "environment": {"git_commit": "old"}}
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / CONFIG_FILE).write_text(json.dumps(saved))
    with force_cpu_bf16(True), pytest.raises(MathforgeError, match="dtype: 'float32' -> 'bfloat16'"):
        train_reward_model(cfg)
    with force_cpu_bf16(False), pytest.raises(MathforgeError, match=r"lr: 1e-05 -> 0\.001"):
        train_reward_model(RewardTrainingConfig(**{**asdict(cfg), "lr": 1e-3}))
    # Another logging cadence resumes: the run gets as far as reading its (missing) data.
    with force_cpu_bf16(False), pytest.raises(InputError, match=r"missing\.jsonl: file not found"):
        train_reward_model(RewardTrainingConfig(**{**asdict(cfg), "logging_steps": 1}))


def test_pruning_a_finished_runs_checkpoints_keeps_only_the_finished_marker(tmp_path: Path):
    folder = tmp_path / CHECKPOINT_DIR
    sizes = 0
    for step in (5, 10, 40):  # numeric order, not text order: checkpoint-40 is the last
        checkpoint = folder / f"checkpoint-{step}"
        (checkpoint / "rng").mkdir(parents=True)
        state = {"global_step": step, "max_steps": 40}
        (checkpoint / "trainer_state.json").write_text(json.dumps(state))
        for name, size in (("model.safetensors", 300), ("optimizer.pt", 600), ("rng/state.pth", 7)):
            (checkpoint / name).write_bytes(b"x" * size)
            sizes += size
        if step != 40:
            sizes += (checkpoint / "trainer_state.json").stat().st_size
    (tmp_path / "model.safetensors").write_bytes(b"y" * 10)  # the run's own files are not touched

    assert prune_checkpoints(tmp_path) == sizes
    left = sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))
    assert left == ["checkpoint-40", "checkpoint-40/trainer_state.json"]
    assert checkpoint_at_last_step(folder / "checkpoint-40", 40)
    assert (tmp_path / "model.safetensors").read_bytes() == b"y" * 10
    assert prune_checkpoints(tmp_path) == 0  # twice is harmless
    assert prune_checkpoints(tmp_path / "no-such-run") == 0
