"""The loop: presets validate and plan, a changed setting reruns only what it affects, held-out
problems never reach training, and the smoke preset runs every stage, survives a kill in the
middle of a stage and resumes without redoing a finished one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mathforge.cli import app
from mathforge.errors import InputError, MathforgeError
from mathforge.loop import PRESETS, Loop, load_config
from mathforge.loop import runner as loop_runner
from mathforge.loop.plan import estimate_seconds, pace, seconds_left, stage_sizes
from mathforge.loop.report import _rollout_tokens, _sample_pairwise, _sampled_tokens
from mathforge.loop.stages import (
    Command,
    held_out_questions,
    merge_records,
    normalise_question,
    write_problem_file,
)
from mathforge.loop.state import EVENTS_FILE, StageState, in_flight
from mathforge.records import ProblemRecord, SampleRecord

runner = CliRunner()

SMOKE_STAGES = [
    "base/eval",
    "it0/bootstrap",
    "it0/sft",
    "it0/sft-eval",
    "it1/rm-data",
    "it1/rm",
    "it1/rm-eval",
    "it1/rs",
    "it1/sft",
    "it1/sft-eval",
    "it1/grpo",
    "it1/grpo-eval",
]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_validates_and_plans_without_running(preset: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["loop", "plan", preset, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "base/eval" in result.output and "estimated total" in result.output
    assert "python -m mathforge eval" in result.output
    assert not (tmp_path / "run").exists()  # plan writes nothing


def test_gpu_preset_uses_vllm_the_launcher_and_the_reports_settings(tmp_path: Path) -> None:
    config = load_config("gpu")
    stages = {stage.name: stage for stage in Loop(config, tmp_path).stages}
    sft = stages["it0/sft"].build(tmp_path / "it0/sft")[0].full_argv("python")
    assert sft[:3] == ["accelerate", "launch", "--config_file"] and sft[4:7] == ["-m", "mathforge", "sft"]
    rm_data = stages["it1/rm-data"].build(tmp_path / "it1/rm-data")[0].argv
    assert rm_data[rm_data.index("--engine") + 1] == "vllm"
    assert [rm_data[rm_data.index(flag) + 1] for flag in ("--n", "--temperature", "--top-p")] == [
        "6",
        "0.7",
        "0.8",
    ]
    grpo = stages["it2/grpo"].build(tmp_path / "it2/grpo")[0].argv
    assert int(grpo[grpo.index("--group") + 1]) >= 8
    assert grpo[grpo.index("--model") + 1] == str(tmp_path / "it2/sft")
    # Iteration 2 samples with iteration 1's final policy and trains its RM from it.
    assert rm_data[rm_data.index("--model") + 1] == str(tmp_path / "it0/sft")
    it2 = stages["it2/rm-data"].build(tmp_path / "it2/rm-data")[0].argv
    assert it2[it2.index("--model") + 1] == str(tmp_path / "it1/grpo")


def test_a_users_yaml_overrides_keys_of_its_preset(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "preset: smoke\nsft:\n  max_steps: 7\nrs:\n  problems: {benches: [generated], gen_n: 3}\n"
    )
    config = load_config(str(path), ["grpo.steps=5", "eval.chunk_size=4"])
    smoke = load_config("smoke")
    assert config.sft.max_steps == 7 and config.sft.lr == smoke.sft.lr  # merged key by key
    assert config.rs.problems.gen_n == 3 and config.rs.n == smoke.rs.n
    assert config.grpo.steps == 5 and config.eval.chunk_size == 4


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("preset: smoke\nsft:\n  max_stepz: 3\n", [], "sft.max_stepz"),
        ("preset: smoke\n", ["rs.n"], "--set rs.n: expected KEY=VALUE"),
        ("preset: smoke\neval:\n  sampled: {set: nowhere}\n", [], "'nowhere' is not one of eval.sets"),
        ("preset: nosuch\n", [], "unknown preset 'nosuch'"),
        ("preset: smoke\nsft: [1\n", [], "line 3: not valid YAML"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_setting(
    tmp_path: Path, text: str, overrides: list[str], expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MathforgeError) as caught:
        load_config(str(path), overrides)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    args = ["loop", "plan", str(path), *[item for o in overrides for item in ("--set", o)]]
    result = runner.invoke(app, args)
    assert result.exit_code != 0


def test_a_changed_setting_changes_only_its_stage_and_those_downstream(tmp_path: Path) -> None:
    before = Loop(load_config("smoke"), tmp_path).fingerprints
    after = Loop(load_config("smoke", ["rs.keep=2"]), tmp_path).fingerprints
    changed = [name for name in SMOKE_STAGES if before[name] != after[name]]
    assert changed == ["it1/rs", "it1/sft", "it1/sft-eval", "it1/grpo", "it1/grpo-eval"]
    lr = Loop(load_config("smoke", ["sft.lr=0.002"]), tmp_path).fingerprints
    assert [name for name in SMOKE_STAGES if before[name] == lr[name]] == ["base/eval", "it0/bootstrap"]
    for later in ("sft.next_lr=0.0001", "sft.gold_replay=3", "sft.init=previous", "sft.mix_bootstrap=false"):
        # settings iteration 0 does not read keep its SFT and everything before iteration 1's SFT
        kept = Loop(load_config("smoke", [later]), tmp_path).fingerprints
        assert [name for name in SMOKE_STAGES if before[name] == kept[name]] == SMOKE_STAGES[:8], later
    base = Loop(load_config("smoke", ["base=smollm2-135m"]), tmp_path).fingerprints
    assert all(before[name] != base[name] for name in SMOKE_STAGES if name != "it0/bootstrap")


def test_the_plan_sizes_the_base_models_responses_apart(tmp_path: Path) -> None:
    lengths = "estimate.tokens_per_response={cot: 4, tir: 6}"
    config = load_config("smoke", [lengths, "estimate.base_tokens_per_response={tir: 9}"])
    stages = {stage.name: stage for stage in Loop(config, tmp_path).stages}
    problems = config.eval.sets[0].gen_n
    assert config.eval.sets[0].modes == ["cot", "tir"] and config.eval.sets[0].max_new_tokens >= 9
    assert stage_sizes(config, stages["base/eval"])["generate_tokens"] == problems * (4 + 9)
    assert stage_sizes(config, stages["it0/sft-eval"])["generate_tokens"] == problems * (4 + 6)


def test_the_plan_trains_the_rm_only_on_its_pairable_share(tmp_path: Path) -> None:
    config = load_config("smoke", ["estimate.rm_pairable_share=0.25"])
    stages = {stage.name: stage for stage in Loop(config, tmp_path).stages}
    sampled = stage_sizes(config, stages["it1/rm-data"])
    trained = stage_sizes(config, stages["it1/rm"])
    assert trained["responses"] == round(sampled["responses"] * 0.25)
    assert trained["train_tokens"] == sampled["generate_tokens"] * 0.25 * config.rm.epochs


def test_the_plan_expects_rejection_sampling_to_keep_its_share(tmp_path: Path) -> None:
    def it1_records(share: float) -> int:
        config = load_config("smoke", [f"estimate.rs_kept_share={share}", "sft.mix_bootstrap=false"])
        return stage_sizes(config, Loop(config, tmp_path).by_name["it1/sft"])["records"]

    config = load_config("smoke")
    most = stage_sizes(config, Loop(config, tmp_path).by_name["it1/rs"])["problems"] * config.rs.keep * 2
    assert config.rs.modes == ["cot", "tir"] and it1_records(1.0) == most
    assert it1_records(0.5) == round(most * 0.5)


def test_the_eta_runs_at_the_pace_of_the_runs_finished_stages(tmp_path: Path) -> None:
    config = load_config("smoke")
    loop = Loop(config, tmp_path)
    base_eval, sft = loop.by_name["base/eval"], loop.by_name["it0/sft"]
    estimate = estimate_seconds(config, base_eval)
    StageState("base/eval", loop.fingerprints["base/eval"], done=True, seconds=2 * estimate).save(
        base_eval.folder(tmp_path)
    )
    StageState("it0/sft", loop.fingerprints["it0/sft"], seconds=1.0).save(sft.folder(tmp_path))
    rows = {row.stage.name: row for row in loop.statuses()}
    factors = pace(config, rows.values())
    assert factors == {"generation": 2.0, "training": 1.0}  # generation was twice as slow as estimated
    later_eval = rows["it0/sft-eval"]
    assert seconds_left(config, later_eval, factors) == 2 * estimate_seconds(config, later_eval.stage)
    assert seconds_left(config, rows["it0/sft"], factors) == estimate_seconds(config, sft) - 1.0
    assert seconds_left(config, rows["base/eval"], factors) == 0.0
    status = runner.invoke(app, ["loop", "status", str(tmp_path), "--config", "smoke"])
    assert "generation x2.00, training x1.00" in status.output


def test_gold_replay_trains_the_next_policy_on_a_seeded_sample_of_the_gold_data(tmp_path: Path) -> None:
    config = load_config("smoke", ["sft.gold_replay=2", "sft.next_lr=0.0005"])
    stages = {stage.name: stage for stage in Loop(config, tmp_path).stages}
    sampled, gold = tmp_path / "it1/rs/train.jsonl", tmp_path / "it0/bootstrap/train.jsonl"
    for path, count in ((sampled, 3), (gold, 20)):
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps({"id": f"{path.parent.name}-{i}"}) + "\n" for i in range(count)))
    sft = stages["it1/sft"]
    folder = sft.folder(tmp_path)
    assert sft.prepare is not None and "it0/bootstrap" in sft.inputs
    sft.prepare(folder)
    replay = (folder / "gold_replay.jsonl").read_text().splitlines()
    assert len(replay) == 6 and len(set(replay)) == 6 and set(replay) <= set(gold.read_text().splitlines())
    sft.prepare(folder)  # a rerun of the stage trains on the same records
    assert (folder / "gold_replay.jsonl").read_text().splitlines() == replay
    argv = sft.build(folder)[0].argv
    assert argv[argv.index("--data") + 1] == f"{sampled},{folder / 'gold_replay.jsonl'}"
    assert argv[argv.index("--lr") + 1] == "0.0005"
    first = stages["it0/sft"].build(tmp_path / "it0/sft")[0].argv
    assert first[first.index("--lr") + 1] == str(config.sft.lr)


def test_records_holding_unicode_line_separators_stay_one_record(tmp_path: Path) -> None:
    # GSM8K train holds a question with U+2028 in it; JSONL written with ensure_ascii=False keeps it
    # raw, and str.splitlines() would cut that record in two (the laptop run's bootstrap crashed so).
    records = [
        {"id": "a", "question": "Clive opens a box of balls.  \u2028The box contains 6 blue ones."},
        {"id": "b", "question": "x\u0085y\u2029z"},
        {"id": "c", "question": "plain"},
    ]
    source = tmp_path / "it0/bootstrap/0.jsonl"
    source.parent.mkdir(parents=True)
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    merged = tmp_path / "it0/bootstrap/train.jsonl"
    assert merge_records([source], merged, held_out={"plain"}) == {"records": 2, "held_out_duplicates": 1}
    assert [json.loads(line) for line in merged.read_text(encoding="utf-8").split("\n") if line] == records[
        :2
    ]
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"id": "a"}\n{"id": "b", "question": "cut sh\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"torn.jsonl:2: not valid JSON"):
        merge_records([torn], tmp_path / "merged.jsonl", held_out=set())
    config = load_config("smoke", ["sft.gold_replay=1"])
    sft = {stage.name: stage for stage in Loop(config, tmp_path).stages}["it1/sft"]
    sampled = tmp_path / "it1/rs/train.jsonl"
    sampled.parent.mkdir(parents=True)
    sampled.write_text(json.dumps({"id": "s0"}) + "\n" + json.dumps({"id": "s1"}) + "\n")
    assert sft.prepare is not None
    sft.prepare(sft.folder(tmp_path))
    replay = (sft.folder(tmp_path) / "gold_replay.jsonl").read_text(encoding="utf-8").split("\n")
    assert sorted(json.loads(line)["id"] for line in replay if line) == ["a", "b"]


def test_an_sft_stage_with_nothing_to_train_on_says_why(tmp_path: Path) -> None:
    config = load_config("smoke", ["sft.gold_replay=2"])
    sft = {stage.name: stage for stage in Loop(config, tmp_path).stages}["it1/sft"]
    for path, count in ((tmp_path / "it1/rs/train.jsonl", 0), (tmp_path / "it0/bootstrap/train.jsonl", 5)):
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps({"id": str(i)}) + "\n" for i in range(count)))
    folder = sft.folder(tmp_path)
    assert sft.prepare is not None
    sft.prepare(folder)
    with pytest.raises(MathforgeError, match=r"it1/sft: nothing to train on .* kept no response"):
        sft.build(folder)


def test_training_problems_equal_to_a_held_out_problem_are_left_out(tmp_path: Path) -> None:
    # The same generator seed as the held-out set: every training problem is a held-out one.
    config = load_config(
        "smoke", ["rs.problems.gen_seed=0", "rs.problems.gen_families=[arithmetic,word_problem]"]
    )
    held_out = held_out_questions(config)
    assert len(held_out) == config.eval.sets[0].gen_n
    counts = write_problem_file(config, config.rs.problems, tmp_path / "problems.jsonl")
    assert counts == {"problems": config.rs.problems.gen_n, "held_out_duplicates": config.rs.problems.gen_n}
    assert (tmp_path / "problems.jsonl").read_text() == ""
    other = write_problem_file(
        load_config("smoke"), load_config("smoke").rs.problems, tmp_path / "other.jsonl"
    )
    rows = [json.loads(line) for line in (tmp_path / "other.jsonl").read_text().splitlines()]
    assert other["held_out_duplicates"] == 0 and len(rows) == other["problems"]
    assert not {normalise_question(row["question"]) for row in rows} & held_out


def test_status_says_how_far_an_unfinished_stage_got(tmp_path: Path) -> None:
    sampling, training = tmp_path / "eval-run", tmp_path / "sft"
    state = StageState(
        "it0/sft-eval",
        commands={
            "generated-cot": {"done": True, "output": str(tmp_path / "other")},
            "generated-tir": {"done": False, "output": str(sampling)},
        },
    )
    assert in_flight(state) == "generated-tir: started"
    sampling.mkdir()
    (sampling / "samples.jsonl").write_text('{"id": 1}\n{"id": 2}\n\n{"id": 3}\n')
    assert in_flight(state) == "generated-tir: 3 problems sampled"
    for step in (2, 10, 4):
        checkpoint = training / "checkpoints" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 12}))
    state = StageState("it0/sft", commands={"sft": {"done": False, "output": str(training)}})
    assert in_flight(state) == "sft: step 10/12 saved"
    assert in_flight(StageState("it0/sft", commands={"sft": {"done": True, "output": str(training)}})) == ""


def test_a_stage_keeps_its_time_while_running_and_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saved while a command runs (a run killed outright keeps it) and summed over the attempts.
    monkeypatch.setattr(loop_runner, "TIME_RECORD_SECONDS", 0.05)
    saved: list[float] = []
    save = StageState.save
    monkeypatch.setattr(
        StageState, "save", lambda self, folder: (saved.append(self.seconds), save(self, folder))
    )
    loop = Loop(load_config("smoke"), tmp_path)
    stage = loop.by_name["base/eval"]

    def sleeping(code: str) -> list[Command]:
        script = f"import sys, time; time.sleep(0.4); sys.exit({code})"
        return [Command("wait", [], str(tmp_path / "out"), launcher=[sys.executable, "-c", script])]

    monkeypatch.setattr(stage, "build", lambda folder: sleeping("1"))
    with pytest.raises(MathforgeError, match="exited with status 1"):
        loop.run(only=["base/eval"])
    failed = StageState.load(stage.folder(tmp_path), stage.name)
    assert failed is not None and not failed.done and failed.seconds >= 0.4
    assert any(0 < seconds < 0.4 for seconds in saved)  # saved mid-command
    monkeypatch.setattr(stage, "build", lambda folder: sleeping("0"))
    loop.run(only=["base/eval"])
    finished = StageState.load(stage.folder(tmp_path), stage.name)
    assert finished is not None and finished.done and finished.seconds >= failed.seconds + 0.4


def test_sigterm_stops_the_loop_as_ctrl_c_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `kill` reaches the loop alone: it passes the SIGTERM on (the command saves its work and
    # exits) and stops, instead of dying and leaving the command running on its own.
    started, saved = tmp_path / "started", tmp_path / "saved"
    script = (
        "import pathlib, signal, sys, time\n"
        "def save(signum, frame):\n"
        f"    pathlib.Path({str(saved)!r}).write_text('saved')\n    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, save)\n"
        f"pathlib.Path({str(started)!r}).write_text('started')\n"
        "time.sleep(30)\n"
    )
    loop = Loop(load_config("smoke"), tmp_path)
    stage = loop.by_name["base/eval"]
    command = Command("wait", [], str(tmp_path / "out"), launcher=[sys.executable, "-c", script])
    monkeypatch.setattr(stage, "build", lambda folder: [command])

    def kill_once_started() -> None:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=kill_once_started)
    killer.start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        loop.run(only=["base/eval"])
    killer.join()
    assert saved.read_text() == "saved" and time.monotonic() - began < 25
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the loop's handler is gone again
    state = StageState.load(stage.folder(tmp_path), stage.name)
    assert state is not None and not state.done and state.seconds >= 0.5


def test_a_stage_alone_needs_its_inputs_done(tmp_path: Path) -> None:
    result = runner.invoke(app, ["loop", "run", "smoke", "--out", str(tmp_path), "--stage", "it0/sft"])
    assert isinstance(result.exception, MathforgeError)
    assert "it0/sft needs it0/bootstrap, which is pending" in str(result.exception)
    result = runner.invoke(app, ["loop", "run", "smoke", "--out", str(tmp_path), "--stage", "it9/sft"])
    assert isinstance(result.exception, MathforgeError)
    assert "unknown stage(s) it9/sft" in str(result.exception)


def _states(run: Path) -> dict[str, StageState | None]:
    return {name: StageState.load(run / name, name) for name in SMOKE_STAGES}


def _events(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / EVENTS_FILE).read_text().splitlines()]


@pytest.mark.timeout(900)
def test_smoke_loop_runs_every_stage_resumes_after_a_kill_and_reports(tmp_path: Path) -> None:
    run, empty = tmp_path / "run", tmp_path / "no-benchmarks"
    empty.mkdir()
    command = [sys.executable, "-m", "mathforge", "loop", "run", "smoke", "--out", str(run)]
    command += ["--set", f"data_dir={empty}"]
    env = {**os.environ, "COLUMNS": "200"}
    log = (tmp_path / "first.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    # Kill the whole process group (the loop and the command it runs) once iteration 0's SFT model
    # is being evaluated: a crash in the middle of a stage, after finished ones.
    deadline = time.monotonic() + 600
    while not (run / "it0/sft-eval/stage.json").is_file():
        assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(3)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = _states(run)
    finished = [name for name, state in before.items() if state is not None and state.done]
    assert finished[:3] == ["base/eval", "it0/bootstrap", "it0/sft"]
    assert before["it0/sft-eval"] is not None and not before["it0/sft-eval"].done
    events_before = len(_events(run))

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=800)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _states(run)
    assert all(state is not None and state.done for state in after.values())
    for name in finished:  # finished stages were not run again
        assert after[name].finished_at == before[name].finished_at  # type: ignore[union-attr]
    resumed = [event for event in _events(run)[events_before:] if event["event"] == "stage_start"]
    assert [event["stage"] for event in resumed] == [name for name in SMOKE_STAGES if name not in finished]
    assert resumed[0]["status"] == "partial"
    for name in SMOKE_STAGES:
        assert (run / name / "stage.json").is_file()
    for model in ("it0/sft", "it1/sft", "it1/grpo"):
        assert (run / model / "config.json").is_file() and (run / model / "model.safetensors").is_file()
    for trained in ("it0/sft", "it1/sft", "it1/grpo"):  # resume checkpoints freed when done (no RM here)
        left = [path for path in (run / trained / "checkpoints").glob("checkpoint-*/**/*") if path.is_file()]
        assert [path.name for path in left] == ["trainer_state.json"], (trained, left)
    assert (run / "it0/bootstrap/train.jsonl").read_text().strip()
    assert "held-out accuracy by stage" in second.stdout

    report_json, report_html = tmp_path / "report.json", tmp_path / "report.html"
    result = runner.invoke(
        app, ["loop", "report", str(run), "--json", str(report_json), "--html", str(report_html)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(report_json.read_text())
    stages = {row["stage"] for row in payload["rows"]}
    assert stages == {"base", "it0/sft", "it1/sft", "it1/grpo", "it1/rm-eval"}
    for row in payload["rows"]:
        assert {"stage", "set", "metric", "value", "ci", "diff_vs_base", "diff_ci"} <= set(row)
    later = [row for row in payload["rows"] if row["stage"] in ("it0/sft", "it1/grpo")]
    assert later and all(row["diff_ci"] is not None for row in later)
    assert {"generated-cot", "generated-tir"} <= {row["set"] for row in payload["rows"]}
    assert "<img" in report_html.read_text()

    # A changed setting: status names the stage and the key; running that stage alone reruns only it.
    status = runner.invoke(app, ["loop", "status", str(run)])
    assert status.exit_code == 0 and status.output.count(" done ") == len(SMOKE_STAGES), status.output
    changed = Loop(load_config("smoke", ["rs.keep=2", f"data_dir={empty}"]), run).statuses()
    rows = {row.stage.name: row for row in changed}
    assert rows["it1/rs"].status == "changed" and rows["it1/rs"].why == "rs.keep"
    assert rows["it1/sft"].status == "changed" and rows["it1/sft"].why == "input it1/rs changed"
    assert {name for name, row in rows.items() if row.status == "done"} == {
        "base/eval",
        "it0/bootstrap",
        "it0/sft",
        "it0/sft-eval",
        "it1/rm-data",
        "it1/rm",
        "it1/rm-eval",
    }


def test_data_appearing_for_an_optional_set_reruns_the_stages_that_use_it(tmp_path: Path) -> None:
    config = load_config("demo", [f"data_dir={tmp_path}"])
    first = Loop(config, tmp_path / "run")
    before = first.fingerprints
    base_eval = first.by_name["base/eval"]
    StageState("base/eval", before["base/eval"], base_eval.settings, done=True).save(
        base_eval.folder(first.run_dir)
    )
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    second = Loop(config, tmp_path / "run")
    after = second.fingerprints
    assert before["base/eval"] != after["base/eval"]  # the GSM8K held-out set is evaluated now
    assert before["it0/bootstrap"] != after["it0/bootstrap"]  # and GSM8K train joins the gold data
    (row,) = [row for row in second.statuses() if row.stage.name == "base/eval"]
    assert row.status == "changed"
    assert row.why == "sets.gsm8k: data found here (data_dir, $MATHFORGE_DATA_DIR)"


class _ScoredRun:
    """An evaluation run's two views the RM table reads: its problems and any external scores."""

    def __init__(self, records: dict[str, ProblemRecord], scores: dict[str, list[float]] | None) -> None:
        self._records, self._scores = records, scores

    def records(self) -> dict[str, ProblemRecord]:
        return self._records

    def rm_scores(self) -> dict[str, list[float]] | None:
        return self._scores


def test_the_rm_table_judges_the_rm_on_the_samples_it_reranked() -> None:
    def problem(name: str, scored: list[tuple[float | None, bool]]) -> ProblemRecord:
        samples = [SampleRecord(response="", correct=right, rm_score=score) for score, right in scored]
        return ProblemRecord(id=name, benchmark="generated", question=name, gold="1", samples=samples)

    records = {
        "both-right-order": problem("a", [(0.9, True), (0.1, False), (0.2, False)]),  # 2 of 2 pairs
        "half": problem("b", [(0.5, True), (0.7, False), (0.1, False)]),  # 1 of 2 pairs
        "no-pair": problem("c", [(0.3, True), (0.4, True)]),  # all right: no pair, not counted
        "unscored": problem("d", [(None, True), (0.4, False)]),
    }
    assert _sample_pairwise(_ScoredRun(records, None)) == (0.75, 2)  # type: ignore[arg-type]
    external = {"half": [0.9, 0.1, 0.2], "unscored": [0.8, 0.1]}  # a --rm-scores file wins
    assert _sample_pairwise(_ScoredRun(records, external)) == (1.0, 3)  # type: ignore[arg-type]


def test_the_stage_table_counts_the_tokens_of_sampling_and_rollouts(tmp_path: Path) -> None:
    def sampled(*lengths: int) -> dict[str, object]:
        return {"id": "p", "samples": [{"completion_tokens": length} for length in lengths]}

    for name, rows in (("cot", [sampled(10, 20), sampled(5)]), ("tir", [sampled(7)])):
        (tmp_path / f"{name}.samples").mkdir()
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (tmp_path / f"{name}.samples" / "samples.jsonl").write_text(lines)
    assert _sampled_tokens(tmp_path) == 42
    assert _rollout_tokens(tmp_path) == 0  # not a GRPO stage
    (tmp_path / "config.yaml").write_text("group: 4\nproblems_per_step: 2\n")
    steps = [{"step": 1, "response_length": 10.5}, {"step": 2, "response_length": 20.0}]
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(step) + "\n" for step in steps))
    assert _rollout_tokens(tmp_path) == round((10.5 + 20.0) * 8)
