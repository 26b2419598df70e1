"""`mathforge eval` end to end on a tiny random model: resume after a kill, config guard, TIR, RM@k."""

from __future__ import annotations

import json
import os
import signal
import string
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import transformers
from typer.testing import CliRunner

import mathforge.cli.eval
import mathforge.cli.report  # noqa: F401  (registers the commands)
from mathforge.cli.app import app
from mathforge.engines import Completion, SamplingParams
from mathforge.eval.config import EvalConfig
from mathforge.eval.runner import evaluate
from mathforge.runs import RunDirectory
from mathforge.sampling import Sampler

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with a character-level chat tokenizer (no download)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    path = tmp_path_factory.mktemp("tiny-model")
    special = ["<pad>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate(special + list(dict.fromkeys(string.printable)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _args(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "--model", str(model), "--bench", "generated", "--gen-n", "20", "--n", "2",
        "--max-new-tokens", "24", "--chunk-size", "4", "--dtype", "float32", "--seed", "3",
        "--out", str(out), *extra,
    ]  # fmt: skip


def _cli(args: Sequence[str]) -> subprocess.Popen[str]:
    code = "from mathforge.cli import main; main()"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _lines(path: Path) -> int:
    return path.read_text(encoding="utf-8").count("\n") if path.is_file() else 0


def _without_time(metrics: dict) -> dict:
    for bench in metrics["benchmarks"].values():
        bench.pop("wall_seconds")
    return metrics


def test_resume_after_a_kill_matches_an_uninterrupted_run(tiny_model: Path, tmp_path: Path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = CliRunner().invoke(app, _args(tiny_model, whole))
    assert result.exit_code == 0, result.output

    process = _cli(_args(tiny_model, killed))
    samples = killed / "samples.jsonl"
    deadline = time.monotonic() + 240
    while _lines(samples) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = _lines(samples)
    assert 0 < written < 20, f"the kill should land mid-run ({written} problems written)"

    rerun = CliRunner().invoke(app, _args(tiny_model, killed))
    assert rerun.exit_code == 0, rerun.output

    ids = [json.loads(line)["id"] for line in samples.read_text(encoding="utf-8").splitlines()]
    assert len(ids) == len(set(ids)) == 20  # nothing missing, nothing twice
    first, second = RunDirectory(whole).store.load(), RunDirectory(killed).store.load()
    assert set(first) == set(second)
    for pid, record in first.items():
        assert [s.response for s in record.samples] == [s.response for s in second[pid].samples], pid
    metrics = [json.loads((run / "metrics.json").read_text(encoding="utf-8")) for run in (whole, killed)]
    assert _without_time(metrics[0]) == _without_time(metrics[1])
    assert metrics[0]["benchmarks"]["generated"]["problems"] == 20
    assert set(metrics[0]["benchmarks"]["generated"]["metrics"]) == {"pass@1", "pass@2", "maj@2"}

    # The runs compare side by side.
    report = CliRunner().invoke(app, ["report", str(whole), str(killed), "--html", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    assert "+0.0 [+0.0, +0.0]" in report.output


def test_a_different_config_is_refused_and_more_problems_extend_the_run(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "run"
    base = [
        "eval", "--model", str(tiny_model), "--bench", "generated", "--gen-n", "4", "--max-new-tokens", "8",
        "--dtype", "float32", "--out", str(out),
    ]  # fmt: skip
    assert CliRunner().invoke(app, base).exit_code == 0
    process = _cli([*base, "--temperature", "0.5"])
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "different config" in lines[0] and "--overwrite" in lines[0], stderr
    assert "temperature: 0.0 -> 0.5" in lines[0]

    before = RunDirectory(out).store.load()
    assert CliRunner().invoke(app, [*base, "--gen-n", "8"]).exit_code == 0
    after = RunDirectory(out).store.load()
    assert len(after) == 8 and all(after[pid] == record for pid, record in before.items())
    assert json.loads((out / "metrics.json").read_text())["benchmarks"]["generated"]["problems"] == 8

    assert CliRunner().invoke(app, [*base, "--temperature", "0.5", "--overwrite"]).exit_code == 0
    assert RunDirectory(out).read_config()["temperature"] == 0.5


class ScriptedEngine:
    """Answers every prompt with a Python cell, then boxes what the cell printed."""

    tokenizer = None

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        groups = []
        for prompt in prompts:
            if "```output" not in prompt:
                text = "Let me compute.\n```python\nprint(6 * 7)\n```"
                groups.append([Completion(text, [], "stop", "```output")] * params.n)
            else:
                value = prompt.rsplit("```output\n", 1)[1].split("\n", 1)[0]
                groups.append([Completion(f"So the answer is \\boxed{{{value}}}.", [], "eos")] * params.n)
        return groups


def test_tir_records_executions_and_rm_scores_give_rm_at_k(tmp_path: Path):
    from mathforge.sandbox import Sandbox

    problems = tmp_path / "p.jsonl"
    problems.write_text(
        '{"question": "What is 6 times 7?", "answer": "42"}\n{"question": "What is 6 * 8?", "answer": "48"}\n'
    )
    config = EvalConfig(model="scripted", benches=[str(problems)], mode="tir", n=2)
    metrics = evaluate(
        config, tmp_path / "run", sampler=lambda cfg: Sampler(cfg, ScriptedEngine(), Sandbox())
    )
    records = RunDirectory(tmp_path / "run").store.load()
    first = records["p/0"].samples[0]
    assert first.executions[0].code.strip() == "print(6 * 7)" and first.executions[0].output == "42"
    assert first.answer == "42" and first.correct and first.group == 0
    assert records["p/1"].samples[0].correct is False
    assert metrics["benchmarks"]["p"]["counts"]["tool_calls"] == 4
    assert "rm@2" not in metrics["benchmarks"]["p"]["metrics"]

    scores = tmp_path / "scores.jsonl"
    scores.write_text('{"id": "p/0", "scores": [0.1, 0.9]}\n{"id": "p/1", "scores": [0.5, 0.2]}\n')
    rescored = evaluate(config.model_copy(update={"rm_scores": str(scores)}), tmp_path / "run")
    assert rescored["benchmarks"]["p"]["metrics"]["rm@2"]["value"] == pytest.approx(0.5)


def test_eval_with_a_reward_model_directory_scores_every_sample(tiny_model: Path, tmp_path: Path):
    # `mathforge eval --rm RM_DIR`: each sample carries the RM's score of (rendered prompt,
    # response), and RM@n is reported.
    from mathforge.reward import RewardModel

    torch.manual_seed(0)
    RewardModel.from_base(tiny_model, max_length=256, device="cpu").save_pretrained(tmp_path / "rm")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, _args(tiny_model, out, "--rm", str(tmp_path / "rm"), "--gen-n", "4"))
    assert result.exit_code == 0, result.output
    records = RunDirectory(out).store.load()
    assert len(records) == 4
    rm = RewardModel.from_pretrained(tmp_path / "rm", dtype=torch.float32, device="cpu")
    for record in records.values():
        expected = rm.score([record.prompt] * len(record.samples), [s.response for s in record.samples])
        assert record.rm_scores == pytest.approx(expected, abs=1e-4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert "rm@2" in metrics["benchmarks"]["generated"]["metrics"]
