"""Listwise RM training: it learns a learnable signal, resumes after an interruption, refuses mixed runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mathforge.errors import InputError, MathforgeError  # noqa: E402
from mathforge.reward.model import RewardModel  # noqa: E402
from mathforge.reward.ranking import ranking_metrics  # noqa: E402
from mathforge.reward.records import RankedGroup, read_groups  # noqa: E402
from mathforge.reward.training import (  # noqa: E402
    GroupCollator,
    GroupDataset,
    RewardTrainingConfig,
    split_groups,
    train_reward_model,
)
from mathforge.runtime import force_cpu_bf16  # noqa: E402
from test_reward_model import build_base_model, synthetic_groups, write_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rmtrain")
    build_base_model(root / "base")
    write_jsonl(root / "data.jsonl", synthetic_groups(80, seed=0))
    return root


def _config(root: Path, out: str, **overrides) -> RewardTrainingConfig:
    settings = {
        "base": str(root / "base"),
        "data": str(root / "data.jsonl"),
        "out": str(root / out),
        "eval_fraction": 0.25,
        "max_steps": 30,
        "lr": 3e-3,
        "warmup": 0.1,
        "problems_per_batch": 2,
        "grad_accum": 1,
        "max_length": 64,
        "save_steps": 15,
        "logging_steps": 10,
    }
    settings.update(overrides)
    return RewardTrainingConfig(**settings)


def _held_out_accuracy(model: RewardModel, groups: list[RankedGroup]) -> float:
    scores = [model.score([group.prompt] * len(group.responses), group.responses) for group in groups]
    return ranking_metrics(scores, [group.correct for group in groups])["pairwise_accuracy"]


@pytest.mark.parametrize("native_bf16", [False, True], ids=["float32", "bf16-autocast"])
def test_a_tiny_rm_learns_the_signal(workdir: Path, native_bf16: bool) -> None:
    # Both CPU precision paths train on any machine (bf16 is emulated, slower, where not native).
    cfg = _config(workdir, f"rm-{native_bf16}")
    training, held_out = split_groups(read_groups(cfg.data), cfg.eval_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    untrained = RewardModel.from_base(cfg.base, max_length=cfg.max_length, device="cpu")
    assert _held_out_accuracy(untrained, held_out) < 0.8
    tokens = sum(len(ids) for item in GroupDataset(untrained, training).items for ids in item["input_ids"])

    with force_cpu_bf16(native_bf16):
        result = train_reward_model(cfg)
    assert json.loads((Path(cfg.out) / "train_config.json").read_text())["dtype"] == (
        "bfloat16" if native_bf16 else "float32"
    )
    assert result.steps == 30
    assert (result.train_problems, result.eval_problems) == (60, 20)
    assert result.trained_tokens == tokens  # 30 steps of 2 problems: one epoch, padding not counted
    assert result.metrics["pairwise_accuracy"] > 0.9
    assert result.metrics["top1_correct"] > result.metrics["top1_random"]
    trained = RewardModel.from_pretrained(cfg.out, dtype=torch.float32, device="cpu")
    assert _held_out_accuracy(trained, held_out) == pytest.approx(result.metrics["pairwise_accuracy"])
    assert (Path(cfg.out) / "metrics.json").is_file()
    assert (Path(cfg.out) / "checkpoints" / "checkpoint-30" / "reward_config.json").is_file()


class _Crash(transformers.TrainerCallback):
    """A hard stop in the middle of step 8: nothing after the step-5 checkpoint is saved."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 7:
            raise KeyboardInterrupt


class _CtrlC(transformers.TrainerCallback):
    """A real SIGINT during step 7, as a user's Ctrl-C."""

    signum = signal.SIGINT

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 6:
            os.kill(os.getpid(), self.signum)


class _Kill(_CtrlC):
    """A real SIGTERM during step 7, as `kill`, a job scheduler or the loop stopping."""

    signum = signal.SIGTERM


def _scores(path: Path, group: RankedGroup) -> list[float]:
    model = RewardModel.from_pretrained(path, dtype=torch.float32, device="cpu")
    return model.score([group.prompt] * len(group.responses), group.responses)


@pytest.mark.parametrize(("stop", "checkpoint"), [(_Crash, 5), (_CtrlC, 7), (_Kill, 7)])
def test_training_resumes_after_an_interruption(workdir: Path, stop: type, checkpoint: int) -> None:
    steps = {"max_steps": 10, "save_steps": 5, "eval_steps": 100}
    straight = workdir / "straight"
    if not (straight / "metrics.json").is_file():
        train_reward_model(_config(workdir, "straight", **steps))
    cfg = _config(workdir, f"resumed-{stop.__name__}", **steps)
    # SIGINT's is SIG_IGN when the suite runs as a background job.
    handlers = [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)]
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(cfg, callbacks=[stop()])
    saved = sorted(path.name for path in (Path(cfg.out) / "checkpoints").iterdir())
    assert saved[-1] == f"checkpoint-{checkpoint}"
    # Training puts back the handlers it replaced.
    assert [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)] == handlers
    assert train_reward_model(cfg).steps == 10
    group = read_groups(cfg.data)[0]
    assert _scores(Path(cfg.out), group) == pytest.approx(_scores(straight, group), abs=1e-4)


def test_a_finished_run_is_not_trained_again(workdir: Path) -> None:
    # 10 steps of 30 per epoch: resuming from the step-10 checkpoint would otherwise train an 11th.
    import shutil

    steps = {"max_steps": 10, "save_steps": 5, "eval_steps": 100}
    straight = workdir / "straight"
    if not (straight / "metrics.json").is_file():
        train_reward_model(_config(workdir, "straight", **steps))
    cfg = _config(workdir, "finished", **steps)
    shutil.copytree(straight, cfg.out)
    counter = _CountSteps()
    assert train_reward_model(cfg, callbacks=[counter]).steps == 10 and counter.steps == 0

    (Path(cfg.out) / "metrics.json").unlink()  # killed after the last checkpoint, before the end files
    result = train_reward_model(cfg, callbacks=[counter])
    assert result.steps == 10 and counter.steps == 0
    assert "pairwise_accuracy" in result.metrics
    group = read_groups(cfg.data)[0]
    assert _scores(Path(cfg.out), group) == pytest.approx(_scores(straight, group), abs=1e-6)


class _CountSteps(transformers.TrainerCallback):
    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def test_other_settings_on_an_existing_run_are_refused(workdir: Path) -> None:
    cfg = _config(workdir, "mixed", max_steps=2, save_steps=2)
    train_reward_model(cfg)
    with pytest.raises(MathforgeError, match=r"lr: 0.003 -> 0.01"):
        train_reward_model(_config(workdir, "mixed", max_steps=2, save_steps=2, lr=1e-2))


def test_collator_keeps_each_problems_responses_together() -> None:
    problems = [
        {"input_ids": [[5, 6, 7], [5]], "correct": [True, False]},
        {"input_ids": [[8], [8, 9], [9]], "correct": [False, False, True]},
    ]
    batch = GroupCollator(pad_id=0)(problems)
    assert batch["group_ids"].tolist() == [0, 0, 1, 1, 1]
    assert batch["correct"].tolist() == [True, False, False, False, True]
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0], [8, 0, 0], [8, 9, 0], [9, 0, 0]]
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 1, 1, 2, 1]


def test_split_is_by_problem_and_seeded() -> None:
    groups = [RankedGroup(str(i), "p", ["a", "b"], [True, False]) for i in range(50)]
    train, held_out = split_groups(groups, 0.2, seed=3)
    assert len(held_out) == 10 and len(train) == 40
    assert not {g.id for g in train} & {g.id for g in held_out}
    assert split_groups(groups, 0.2, seed=3)[1] == held_out


def test_bad_data_lines_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": "p", "responses": ["x", "y"], "correct": [true]}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: field 'correct'"):
        read_groups(path)
    path.write_text('{"id": "a", "prompt": "p", "responses": ["x"], "correct": [true]}\n' * 2)
    with pytest.raises(InputError, match=r"bad.jsonl:2: field 'id': duplicate id 'a'"):
        read_groups(path)
