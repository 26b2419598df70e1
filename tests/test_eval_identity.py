"""What a run directory is: its identity (settings, benchmarks, resolved dtype), checked before anything
is written or deleted, and reads that never write."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

import mathforge.cli.eval
import mathforge.cli.report  # noqa: F401  (registers the commands)
from mathforge.cli import main
from mathforge.engines import Completion, SamplingParams
from mathforge.errors import MathforgeError
from mathforge.eval.config import EvalConfig
from mathforge.eval.runner import evaluate
from mathforge.runs import RunDirectory
from mathforge.runtime import force_cpu_bf16
from mathforge.sampling import Sampler


class BoxingEngine:
    tokenizer = None

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        return [[Completion("\\boxed{1}", [], "eos")] * params.n for _ in prompts]


def _scripted(config: EvalConfig) -> Sampler:
    return Sampler(config, BoxingEngine())


def _bench(path: Path, count: int = 3) -> str:
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": "1"}) + "\n" for i in range(count)))
    return str(path)


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr("sys.argv", ["mathforge", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_an_unknown_model_leaves_no_run_directory(tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["eval", "--bench", "generated", "--gen-n", "2", "--model", "no-such-model", "--out", str(out)]
    code, err = _cli(monkeypatch, capsys, *args)
    assert code == 2 and "unknown model 'no-such-model'" in err
    assert not out.exists()


def test_overwrite_with_a_mistyped_model_deletes_nothing(tmp_path: Path, monkeypatch, capsys):
    bench = _bench(tmp_path / "p.jsonl")
    out = tmp_path / "run"
    evaluate(EvalConfig(model="m", benches=[bench], dtype="float32"), out, sampler=_scripted)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    args = ["eval", "--bench", bench, "--model", "no-such-model", "--overwrite", "--out", str(out)]
    code, err = _cli(monkeypatch, capsys, *args)
    assert code == 2 and "unknown model" in err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_the_benchmark_set_is_part_of_a_run_and_more_problems_extend_it(tmp_path: Path):
    first, second = _bench(tmp_path / "a.jsonl", 4), _bench(tmp_path / "b.jsonl")
    out = tmp_path / "run"
    config = EvalConfig(model="m", benches=[first], limit=2, dtype="float32")
    evaluate(config, out, sampler=_scripted)
    with pytest.raises(MathforgeError, match="benches"):
        evaluate(config.model_copy(update={"benches": [first, second]}), out, sampler=_scripted)
    metrics = evaluate(config.model_copy(update={"limit": 4}), out, sampler=_scripted)
    assert metrics["benchmarks"]["a"]["problems"] == 4


def test_the_resolved_dtype_is_part_of_a_run(tmp_path: Path):
    bench = _bench(tmp_path / "p.jsonl")
    out = tmp_path / "run"
    with force_cpu_bf16(False):
        evaluate(EvalConfig(model="m", benches=[bench]), out, sampler=_scripted)
    with force_cpu_bf16(True), pytest.raises(MathforgeError, match="dtype: 'float32' -> 'bfloat16'"):
        evaluate(EvalConfig(model="m", benches=[bench], limit=5), out, sampler=_scripted)
    with force_cpu_bf16(True):  # asking for float32 explicitly is the same run
        evaluate(EvalConfig(model="m", benches=[bench], dtype="float32"), out, sampler=_scripted)


def test_the_config_records_the_resolved_data_dir_device_dtype_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MATHFORGE_DATA_DIR", str(tmp_path / "data"))
    bench = _bench(tmp_path / "p.jsonl")
    evaluate(EvalConfig(model="m", benches=[bench], dtype="float32"), tmp_path / "run", sampler=_scripted)
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["data_dir"] == str((tmp_path / "data").resolve())
    assert (config["device"], config["dtype"]) == ("cpu", "float32")
    assert config["environment"]["versions"]["torch"] and "git_commit" in config["environment"]


def test_report_never_writes_to_a_run(tmp_path: Path, monkeypatch, capsys):
    bench = _bench(tmp_path / "p.jsonl")
    out = tmp_path / "run"
    evaluate(EvalConfig(model="m", benches=[bench], dtype="float32"), out, sampler=_scripted)
    samples = RunDirectory(out).samples_path
    with samples.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "p/9", "benchm')  # a line being written right now
    before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in out.iterdir()}
    code, _ = _cli(monkeypatch, capsys, "report", str(out), str(out))
    assert code == 0
    assert {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in out.iterdir()} == before


def test_a_benchmark_without_problems_is_an_error_and_no_run(tmp_path: Path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(MathforgeError, match="no problems to sample"):
        evaluate(EvalConfig(model="m", benches=[str(empty)]), tmp_path / "run", sampler=_scripted)
    assert not (tmp_path / "run").exists()


def test_an_output_path_that_is_a_file_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a run", encoding="utf-8")
    code, err = _cli(monkeypatch, capsys, "eval", "--bench", "generated", "--gen-n", "1", "--out", str(taken))
    assert (
        code == 2
        and err.strip() == f"error: {taken}: exists and is not a directory; choose another output directory"
    )
    assert taken.read_text(encoding="utf-8") == "not a run"


def test_reward_scores_that_do_not_cover_the_samples_are_a_one_line_error(tmp_path: Path):
    bench = _bench(tmp_path / "p.jsonl", 2)
    scores = tmp_path / "scores.jsonl"
    scores.write_text(
        '{"id": "p/0", "scores": [0.5, 0.1]}\n{"id": "p/1", "scores": [0.5]}\n', encoding="utf-8"
    )
    config = EvalConfig(model="m", benches=[bench], n=2, dtype="float32", rm_scores=str(scores))
    with pytest.raises(MathforgeError) as caught:
        evaluate(config, tmp_path / "run", sampler=_scripted)
    assert str(caught.value) == f"{scores}: field 'scores': 1 scores for the 2 samples of 'p/1'"
