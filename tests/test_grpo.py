"""GRPO training on tiny random models: learning, the policy engine, resume, the output directory, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures_models import tiny_causal_lm
from mathforge.errors import MathforgeError
from mathforge.train.grpo import GRPORunConfig, run

# With this output-layer scale the tiny model puts about a quarter of its first-token mass on one
# token: a reward for that token starts near 0.25 and has room to rise.
SHARPNESS = 8.0


@pytest.fixture(scope="module")
def peaked_model_dir(tmp_path_factory: pytest.TempPathFactory, embedded_tokenizer: Any) -> Path:
    path = tmp_path_factory.mktemp("peaked-llama")
    tiny_causal_lm(embedded_tokenizer, sharpness=SHARPNESS).save_pretrained(path)
    embedded_tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def problems_file(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    lines = [json.dumps({"question": f"What is {i} + 2?", "answer": str(i + 2)}) for i in range(4)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(model: Path, problems: Path, out: Path, **changes: Any) -> GRPORunConfig:
    settings: dict[str, Any] = {
        "model": str(model),
        "problems": str(problems),
        "out": str(out),
        "group": 4,
        "problems_per_step": 2,
        "steps": 3,
        "max_new_tokens": 4,
        "bf16": False,
        "beta": 0.0,
        "save_steps": 2,
    }
    settings.update(changes)
    return GRPORunConfig(**settings)


def _steps(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "steps.jsonl").read_text(encoding="utf-8").splitlines()]


class FirstTokenReward:
    """1 when a completion starts with ``token`` (a reward a policy can learn in a few steps)."""

    __name__ = "first_token"

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
        return [float(bool(ids) and ids[0] == self.token) for ids in completion_ids]


class FirstTokenParity:
    """1 when a completion's first token id is even."""

    __name__ = "first_token_parity"

    def __call__(self, completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
        return [float(bool(ids) and ids[0] % 2 == 0) for ids in completion_ids]


def _likeliest_first_token(model_dir: Path, tokenizer: Any, question: str) -> tuple[int, float]:
    import torch
    from transformers import AutoModelForCausalLM

    from mathforge.prompts import render_prompt

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer(render_prompt(question, tokenizer), add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        probs = model(**ids).logits[0, -1].softmax(-1)
    top = probs.max(-1)
    return int(top.indices), float(top.values)


def test_a_learnable_reward_is_learned(
    peaked_model_dir: Path, problems_file: Path, tmp_path: Path, embedded_tokenizer: Any
) -> None:
    token, start = _likeliest_first_token(peaked_model_dir, embedded_tokenizer, "What is 0 + 2?")
    assert 0.05 < start < 0.6  # room to rise, and likely enough to be sampled at the start
    out = tmp_path / "run"
    settings = {"steps": 10, "lr": 4e-3, "group": 8, "problems_per_step": 1, "max_new_tokens": 2}
    config = _config(peaked_model_dir, problems_file, out, save_steps=100, **settings)
    result = run(config, extra_rewards=[FirstTokenReward(token)], progress=False)
    rewards = [step["reward_mean"] for step in _steps(out)]
    assert len(rewards) == 10 == result.steps
    assert sum(rewards[-3:]) > sum(rewards[:3]), rewards
    # The trained policy (the saved model) prefers the rewarded token far more than at the start.
    after_token, after = _likeliest_first_token(out, embedded_tokenizer, "What is 0 + 2?")
    assert after_token == token and after > start + 0.3, (start, after, rewards)


def test_run_with_a_reward_model_writes_a_model_directory_and_a_step_log(
    tiny_model_dir: Path, problems_file: Path, tmp_path: Path
) -> None:
    from mathforge.engines import SamplingParams, load_engine
    from mathforge.reward.model import RewardModel

    rm_dir = tmp_path / "rm"
    RewardModel.from_base(tiny_model_dir, max_length=256).save_pretrained(rm_dir)
    out = tmp_path / "run"
    result = run(
        _config(tiny_model_dir, problems_file, out, steps=1, beta=1e-3, rm=str(rm_dir)), progress=False
    )
    assert result.steps == 1 and result.world_size == 1
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    engine = load_engine("hf", str(out))
    assert engine.tokenizer.chat_template
    assert len(engine.generate(["1+1="], SamplingParams(max_new_tokens=2))[0]) == 1
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert saved["world_size"] == 1 and saved["device"] == "cpu" and saved["dtype"] == "float32"
    assert saved["trl"]["loss_type"] == "grpo"
    (step,) = _steps(out)
    for key in (
        "reward_mean",
        "reward_std",
        "accuracy",
        "rm_mean",
        "kl",
        "clip_ratio",
        "entropy",
        "response_length",
    ):
        assert step[key] is not None, key
    assert step["truncation_rate"] == 1.0  # 4 tokens never finish an answer
    assert -1.0 < step["reward_mean"] < 0.0  # shaped: sigmoid(0.5 r_m) - 1 for the (all wrong) responses
    assert step["masked_tokens"] == 0.0 and step["tool_calls"] == 0.0
    assert step["tokens_per_s"] > 0 and step["rollout_tokens_per_s"] > 0


class CrashAt:
    """Kill the run as the step after ``step`` begins, as a power cut would."""

    def __init__(self, step: int) -> None:
        from transformers import TrainerCallback

        self.step = step
        outer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step == outer.step:  # the step after ``step``, which is logged
                    raise SystemExit("killed")

        self.callback = _Callback()


def test_a_killed_run_resumes_from_its_checkpoint_and_refuses_other_settings(
    tiny_model_dir: Path, problems_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = _config(tiny_model_dir, problems_file, out, steps=4, save_steps=2)
    with pytest.raises(SystemExit):
        run(config, callbacks=[CrashAt(3).callback], progress=False)
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    assert [s["step"] for s in _steps(out)] == [1, 2, 3]
    with pytest.raises(MathforgeError, match="lr"):
        run(config.model_copy(update={"lr": 1e-3}), progress=False)
    result = run(config, progress=False)
    assert result.steps == 4
    assert [s["step"] for s in _steps(out)] == [1, 2, 3, 4]  # step 3 of the killed run was dropped and redone
    assert run(config, progress=False) == result  # a finished run is not redone
    longer = run(config.model_copy(update={"steps": 5}), progress=False)  # more steps: continues from step 4
    assert longer.steps == 5 and [s["step"] for s in _steps(out)] == [1, 2, 3, 4, 5]
    # Killed after the last checkpoint (step 5 ends inside an epoch of 2 steps), before the end files:
    # the rerun finishes from that checkpoint and trains no sixth step.
    (out / "metrics.json").unlink()
    again = run(config.model_copy(update={"steps": 5}), progress=False)
    assert again.steps == 5 and [s["step"] for s in _steps(out)] == [1, 2, 3, 4, 5]


def test_cli_bad_problem_line_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?"}\n', encoding="utf-8")
    command = [sys.executable, "-c", "from mathforge.cli import main; main()", "grpo"]
    args = ["--model", str(tiny_model_dir), "--problems", str(problems), "--out", str(tmp_path / "run")]
    done = subprocess.run(command + args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{problems}:2" in errors[0] and "answer" in errors[0]
    bad_group = subprocess.run(
        [*command, *args, "--group", "1"], capture_output=True, text=True, timeout=300, check=False
    )
    assert bad_group.returncode == 2 and "group" in bad_group.stderr


def test_two_processes_under_torchrun(tiny_model_dir: Path, problems_file: Path, tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    torchrun, mathforge = bin_dir / "torchrun", bin_dir / "mathforge"
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    args = ["--model", str(tiny_model_dir), "--problems", str(problems_file), "--out", str(out)]
    args += ["--group", "2", "--problems-per-step", "2", "--steps", "1", "--max-new-tokens", "2", "--no-bf16"]
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", str(mathforge), "grpo", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert saved["world_size"] == 2
    assert [s["step"] for s in _steps(out)] == [1]
    assert (out / "model.safetensors").is_file()


class EngineProbe:
    """At each step's start and end, the rollout engine's log-probabilities of a greedy completion
    next to the trainer model's own (a plain forward pass over prompt + completion)."""

    def __init__(self, prompt: str) -> None:
        from transformers import TrainerCallback

        self.records: list[tuple[list[float], list[float]]] = []
        outer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                outer.probe(kwargs["model"], kwargs["processing_class"])

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                outer.probe(kwargs["model"], kwargs["processing_class"])

        self.prompt = prompt
        self.callback = _Callback()

    def probe(self, model: Any, tokenizer: Any) -> None:
        from types import SimpleNamespace

        import torch

        from mathforge.engines import SamplingParams
        from mathforge.train.rollouts import hf_engine_on_policy

        trainer = SimpleNamespace(
            model=model, processing_class=tokenizer, accelerator=SimpleNamespace(unwrap_model=lambda m: m)
        )
        engine = hf_engine_on_policy(trainer)
        prompt_ids = engine.encode(self.prompt)
        (completion,) = engine.generate([prompt_ids], SamplingParams(max_new_tokens=6, logprobs=True))[0]
        ids = torch.tensor([prompt_ids + completion.sampled_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
        own = logits.log_softmax(-1).gather(-1, ids[0, len(prompt_ids) :, None])[:, 0]
        self.records.append((list(completion.logprobs), own.tolist()))


def test_the_rollout_engine_samples_from_the_trainers_current_weights(
    tiny_model_dir: Path, problems_file: Path, tmp_path: Path
) -> None:
    probe = EngineProbe("<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")
    config = _config(tiny_model_dir, problems_file, tmp_path / "run", steps=2, lr=1e-2, save_steps=100)
    # A reward that differs between samples, so the advantages (and the update) are not zero.
    run(config, callbacks=[probe.callback], extra_rewards=[FirstTokenParity()], progress=False)
    assert len(probe.records) == 4
    for engine_logprobs, model_logprobs in probe.records:
        assert engine_logprobs == pytest.approx(model_logprobs, abs=1e-4)
    first, last = probe.records[0][1], probe.records[-1][1]
    assert max(abs(a - b) for a, b in zip(first, last, strict=False)) > 1e-2  # the weights did move


@pytest.mark.parametrize("native_bf16", [True, False], ids=["cpu-bf16", "cpu-float32"])
def test_tir_mode_runs_under_both_cpu_precisions(
    native_bf16: bool, tiny_model_dir: Path, problems_file: Path, tmp_path: Path
) -> None:
    from mathforge.runtime import force_cpu_bf16

    out = tmp_path / "run"
    with force_cpu_bf16(native_bf16):
        result = run(
            _config(tiny_model_dir, problems_file, out, mode="tir", steps=1, bf16=None), progress=False
        )
    assert result.steps == 1
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert saved["mode"] == "tir" and saved["dtype"] == ("bfloat16" if native_bf16 else "float32")
    (step,) = _steps(out)
    assert step["tool_calls"] == 0.0 and step["masked_tokens"] == 0.0  # a random model writes no code


def test_executor_tokens_reach_trls_loss_masked(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, problems_file: Path, tmp_path: Path
) -> None:
    """Through the real trainer: the batch TRL takes its loss and KL on masks exactly the executor output."""
    import torch
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    import mathforge.train.rollouts as rollouts
    from test_grpo_rollouts import ScriptedTirEngine

    monkeypatch.setattr(
        rollouts, "hf_engine_on_policy", lambda trainer: ScriptedTirEngine(trainer.processing_class)
    )
    seen: list[dict[str, torch.Tensor]] = []
    compute_loss = GRPOTrainer._compute_loss

    def recording(self: Any, model: Any, inputs: dict[str, Any]) -> Any:
        seen.append({key: inputs[key].clone() for key in ("completion_ids", "completion_mask", "tool_mask")})
        return compute_loss(self, model, inputs)

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", recording)
    out = tmp_path / "run"
    run(_config(tiny_model_dir, problems_file, out, mode="tir", steps=1, max_new_tokens=64), progress=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert seen
    for batch in seen:
        for ids, real, model_written in zip(
            batch["completion_ids"], batch["completion_mask"], batch["tool_mask"], strict=True
        ):
            executor = [int(t) for t, r, m in zip(ids, real, model_written, strict=True) if r and not m]
            assert tokenizer.decode(executor) == "\n42\n```\n"
    (step,) = _steps(out)
    assert step["tool_calls"] == 1.0 and step["tool_ok_share"] == 1.0 and step["masked_tokens"] > 0
