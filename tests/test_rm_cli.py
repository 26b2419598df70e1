"""`mathforge rm train|score` and file scoring: outputs, resume, summaries, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

import mathforge.cli.rm  # noqa: E402, F401  (registers `rm` on the app)
from mathforge.cli.app import app  # noqa: E402
from mathforge.errors import InputError, MathforgeError  # noqa: E402
from mathforge.reward.model import RewardModel  # noqa: E402
from mathforge.reward.scoring import score_file, summarize_scored  # noqa: E402
from test_reward_model import build_base_model, prompt_for, synthetic_groups, write_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rmcli")
    base = build_base_model(root / "base")
    torch.manual_seed(0)
    RewardModel.from_base(base, max_length=64, device="cpu").save_pretrained(root / "rm")
    return root / "rm"


@pytest.fixture(scope="module")
def model(rm_dir: Path) -> RewardModel:
    return RewardModel.from_pretrained(rm_dir, dtype=torch.float32, device="cpu")


def _records(n_problems: int) -> list[dict]:
    """Eval records (``samples.jsonl`` lines): 3 samples each, answers 4, 4, 5, gold 4 or 5."""
    lines = []
    for index in range(n_problems):
        gold = "4" if index % 2 == 0 else "5"
        samples = [
            {
                "response": f"so we add the answer is {answer}",
                "answer": answer,
                "correct": answer == gold,
                "group": g,
            }
            for answer, g in (("4", 0), ("4", 0), ("5", 1))
        ]
        lines.append(
            {
                "id": f"q{index}",
                "benchmark": "toy",
                "question": "2 + 2 ?",
                "gold": gold,
                "prompt": prompt_for("2 + 2 ?"),
                "samples": samples,
            }
        )
    return lines


def test_score_file_adds_one_score_per_response_and_resumes(model: RewardModel, tmp_path: Path) -> None:
    lines = synthetic_groups(5, n=4, seed=1)
    data = write_jsonl(tmp_path / "data.jsonl", lines)
    out = tmp_path / "scored.jsonl"
    assert score_file(model.score, data, out, lines_per_batch=2) == 5
    scored = [json.loads(raw) for raw in out.read_text().splitlines()]
    for line, row in zip(lines, scored, strict=True):
        # Batched with other lines, a sequence is padded wider; float32 matmul kernels then sum in
        # another order (differences ~1e-8 seen on some CPUs), hence a tolerance, not equality.
        expected = model.score([line["prompt"]] * 4, line["responses"])
        assert row["scores"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert {k: v for k, v in row.items() if k != "scores"} == line

    out.write_text("".join(json.dumps(row) + "\n" for row in scored[:2]) + '{"id": "p2", "pro')  # torn line
    # The same batching as the first run (p2 with p3, then p4), so the resumed scores are the same
    # computation and must be equal, not only close (see the tolerance above).
    assert score_file(model.score, data, out, lines_per_batch=2) == 3
    assert [json.loads(raw) for raw in out.read_text().splitlines()] == scored


def test_score_file_refuses_an_output_from_another_input(model: RewardModel, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", synthetic_groups(3, n=4, seed=1))
    other = write_jsonl(tmp_path / "other.jsonl", synthetic_groups(3, n=4, seed=2))
    out = tmp_path / "scored.jsonl"
    score_file(model.score, other, out)
    with pytest.raises(MathforgeError, match="was not written from"):
        score_file(model.score, data, out)


def test_bad_lines_name_file_line_and_field(model: RewardModel, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "p", "responses": ["a"]}\n{"prompt": "p", "responses": "a"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: field 'responses'"):
        score_file(model.score, data, tmp_path / "out.jsonl")


def test_summary_of_hand_scored_lines(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": "p",
            "responses": ["a", "b", "c"],
            "correct": [True, False, False],
            "scores": [3.0, 1.0, 2.0],
        },
        {"prompt": "p", "responses": ["a", "b"], "correct": [False, True], "scores": [1.0, 0.0]},
        {"prompt": "p", "responses": ["a", "b"], "correct": [True, True], "scores": [1.0, 0.0]},
    ]
    summary = summarize_scored(write_jsonl(tmp_path / "scored.jsonl", rows))
    assert summary["problems_with_pairs"] == 2
    assert summary["pairwise_accuracy"]["value"] == pytest.approx(0.5)  # (2/2 + 0/1) / 2
    assert summary["top1_correct"]["value"] == pytest.approx(2 / 3)
    assert summary["top1_random"]["value"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    low, high = summary["top1_correct"]["ci"]
    assert low <= 2 / 3 <= high


def test_rm_score_cli_on_eval_records_reports_rm_and_maj(rm_dir: Path, tmp_path: Path) -> None:
    samples = write_jsonl(tmp_path / "samples.jsonl", _records(6))
    result = CliRunner().invoke(
        app, ["rm", "score", str(samples), "--rm", str(rm_dir), "-o", str(tmp_path / "s.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert "pairwise accuracy" in result.output and "rm@3" in result.output
    scored = [json.loads(raw) for raw in (tmp_path / "s.jsonl").read_text().splitlines()]
    for row in scored:
        assert [sample["rm_score"] for sample in row["samples"]] == row["scores"]
    summary = json.loads((tmp_path / "s.summary.json").read_text())
    selection = summary["selection"]
    assert selection["samples_per_problem"] == 3
    assert selection["maj@3"]["value"] == pytest.approx(0.5)  # majority answer 4 is right for even ids only
    assert selection["pass@1"]["value"] == pytest.approx(0.5)
    assert set(selection) >= {"rm@3", "pass@3", "rm@3-maj@3"}


def test_rm_train_cli_prints_held_out_metrics(tmp_path: Path) -> None:
    base = build_base_model(tmp_path / "base")
    data = write_jsonl(tmp_path / "data.jsonl", synthetic_groups(20, seed=3))
    args = ["rm", "train", "--base", str(base), "--data", str(data), "--out", str(tmp_path / "rm")]
    args += [
        "--max-steps",
        "4",
        "--grad-accum",
        "1",
        "--lr",
        "1e-3",
        "--max-length",
        "64",
        "--eval-fraction",
        "0.2",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for text in ("pairwise accuracy", "top-1 response correct", "random choice", "16 / 4"):
        assert text in result.output
    metrics = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and "pairwise_accuracy" in metrics["metrics"]
    assert RewardModel.from_pretrained(tmp_path / "rm", device="cpu").score([prompt_for("1 + 1 ?")], ["good"])


def test_rm_data_from_an_eval_run_keeps_only_problems_with_a_pair(tmp_path: Path) -> None:
    from mathforge.records import ProblemRecord
    from mathforge.runs import RunDirectory

    records = _records(4)
    records[1]["samples"] = [{**sample, "correct": True} for sample in records[1]["samples"]]
    records[2]["samples"] = [{**sample, "correct": False} for sample in records[2]["samples"]]
    run = RunDirectory(tmp_path / "run")
    run.open({"model": "toy", "n": 3})
    run.store.append(ProblemRecord.model_validate(record) for record in records)
    run.store.close()
    out = tmp_path / "rm_data.jsonl"
    result = CliRunner().invoke(app, ["rm", "data", "--from-run", str(run.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(raw) for raw in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["q0", "q3"]
    assert lines[0] == {
        "id": "q0",
        "prompt": records[0]["prompt"],
        "responses": [sample["response"] for sample in records[0]["samples"]],
        "correct": [True, True, False],
    }
    summary = json.loads((tmp_path / "rm_data.summary.json").read_text())
    assert (summary["problems"], summary["pairable"], summary["all_correct"], summary["all_wrong"]) == (
        4,
        2,
        1,
        1,
    )
    assert "skipped: all wrong" in result.output
