"""Listwise reward-model training on the transformers ``Trainer``.

Why a ``Trainer`` subclass and not TRL's ``RewardTrainer``: that trainer takes one (chosen,
rejected) pair per row, so a problem's n responses would be re-encoded for each of its k(n-k)
pairs and scattered over optimiser steps. The listwise loss needs all n scores of a problem in
one forward pass, so the batch unit here is the problem: the collator flattens each problem's
responses into one batch, and gradient accumulation runs over problems. Everything else
(optimiser, schedule, mixed precision, checkpoints, resume, accelerate/DeepSpeed) is the
Trainer's.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import EvalPrediction, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from mathforge.errors import MathforgeError
from mathforge.interrupt import train_or_restore
from mathforge.reward.loss import listwise_loss
from mathforge.reward.model import RewardModel, pad_right
from mathforge.reward.ranking import ranking_metrics
from mathforge.reward.records import RankedGroup, read_groups
from mathforge.runs import (
    CHECKPOINT_DIR,
    ENVIRONMENT,
    check_identity,
    checkpoint_at_last_step,
    write_config_file,
)
from mathforge.runtime import environment, training_placement

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
_ABSENT = -100  # label (and padded score) of an empty slot when problems have different n

# Settings a rerun may change and still resume (logging, checkpoint cadence, memory trade-offs);
# every other setting, and the resolved device and dtype, must match (``mathforge.runs``).
_FREE_FIELDS = (
    "out",
    "bf16",
    "gradient_checkpointing",
    "logging_steps",
    "save_steps",
    "eval_steps",
    "save_total_limit",
    "deepspeed",
)


@dataclass
class RewardTrainingConfig:
    """Everything ``mathforge rm train`` needs; saved as ``train_config.json`` in the output directory."""

    base: str
    data: str
    out: str
    eval_data: str | None = None
    eval_fraction: float = 0.1
    epochs: float = 2.0
    max_steps: int = -1
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup: float = 0.05
    max_length: int = 1024
    problems_per_batch: int = 1
    grad_accum: int = 8
    bf16: bool | None = None
    train_layers: int | None = None
    gradient_checkpointing: bool = False
    logging_steps: int = 5
    save_steps: int = 50
    eval_steps: int | None = None
    save_total_limit: int = 2
    seed: int = 0
    deepspeed: str | None = None


@dataclass
class RewardTrainingResult:
    """What a training run produced: held-out ranking metrics and where the model is."""

    out: Path
    train_problems: int
    eval_problems: int
    unpairable: int
    truncated: int
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    trained_tokens: int = 0  # response tokens the backbone ran forward and backward (padding excluded)


class GroupDataset(Dataset):
    """Problems as items: each item is all of a problem's responses, tokenized, with their labels."""

    def __init__(self, model: RewardModel, groups: Sequence[RankedGroup]) -> None:
        self.items: list[dict[str, Any]] = []
        self.truncated = 0
        for group in groups:
            encoded = []
            for response in group.responses:
                ids = model.encode(group.prompt, response)
                self.truncated += len(ids) >= model.format.max_length  # at the limit: cut or just fitting
                encoded.append(ids)
            self.items.append({"input_ids": encoded, "correct": list(group.correct)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


@dataclass
class GroupCollator:
    """Flattens the responses of a batch of problems into one padded batch, remembering each one's problem."""

    pad_id: int

    def __call__(self, problems: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = [ids for problem in problems for ids in problem["input_ids"]]
        input_ids, attention_mask = pad_right(sequences, self.pad_id)
        correct = torch.tensor(
            [flag for problem in problems for flag in problem["correct"]], dtype=torch.bool
        )
        group_ids = torch.tensor(
            [index for index, problem in enumerate(problems) for _ in problem["input_ids"]], dtype=torch.long
        )
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "correct": correct,
            "group_ids": group_ids,
        }


class ListwiseRewardTrainer(Trainer):
    """``Trainer`` with the listwise ranking loss; predictions are per-problem rows of scores."""

    # compute_loss returns a per-batch mean over problems: the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        rewards = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        loss = listwise_loss(rewards, inputs["correct"], inputs["group_ids"])
        return (loss, rewards) if return_outputs else loss

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, rewards = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        scores, labels = _as_rows(rewards.detach().float(), inputs["correct"], inputs["group_ids"])
        return loss.detach(), scores, labels

    def _save(self, output_dir: str | None = None, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Checkpoints are complete RM directories (loadable by ``RewardModel.from_pretrained``)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(output_dir, state_dict=state_dict, is_main_process=self.args.should_save)
        if self.args.should_save:
            torch.save(self.args, os.path.join(output_dir, "training_args.bin"))


def _as_rows(
    rewards: torch.Tensor, correct: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat per-response values -> ``[problems, max_n]`` rows padded with ``_ABSENT``."""
    n_groups = int(group_ids.max().item()) + 1
    sizes = torch.bincount(group_ids, minlength=n_groups)
    width = int(sizes.max().item())
    scores = torch.full((n_groups, width), float(_ABSENT), device=rewards.device)
    labels = torch.full((n_groups, width), _ABSENT, dtype=torch.long, device=rewards.device)
    slot = torch.zeros_like(group_ids)
    for group in range(n_groups):
        members = group_ids == group
        slot[members] = torch.arange(int(members.sum().item()), device=group_ids.device)
    scores[group_ids, slot] = rewards
    labels[group_ids, slot] = correct.long()
    return scores, labels


def compute_ranking_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Held-out pairwise accuracy and top-1-correct share (vs random choice) from per-problem rows."""
    scores = np.asarray(prediction.predictions)
    labels = np.asarray(prediction.label_ids)
    score_rows, label_rows = [], []
    for row_scores, row_labels in zip(scores, labels, strict=True):
        present = row_labels != _ABSENT
        score_rows.append(row_scores[present].tolist())
        label_rows.append([bool(flag) for flag in row_labels[present]])
    metrics = ranking_metrics(score_rows, label_rows)
    return {key: metrics[key] for key in ("pairwise_accuracy", "top1_correct", "top1_random")}


def split_groups(
    groups: Sequence[RankedGroup], eval_fraction: float, seed: int
) -> tuple[list[RankedGroup], list[RankedGroup]]:
    """A seeded split by problem (never by response, which would leak a problem into both sides)."""
    if not 0.0 <= eval_fraction < 1.0:
        raise MathforgeError(f"eval fraction must be in [0, 1), got {eval_fraction}")
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    n_eval = math.ceil(eval_fraction * len(groups)) if len(groups) > 1 else 0
    held_out = set(order[:n_eval])
    train = [group for index, group in enumerate(groups) if index not in held_out]
    return train, [group for index, group in enumerate(groups) if index in held_out]


def train_reward_model(
    cfg: RewardTrainingConfig, *, overwrite: bool = False, callbacks: list[Any] | None = None
) -> RewardTrainingResult:
    """Train an RM from ``cfg.base`` on ``cfg.data`` with the listwise loss; resume from the last checkpoint.

    Writes the final RM directory to ``cfg.out`` (with ``metrics.json``) and checkpoints under
    ``cfg.out/checkpoints``.
    """
    out = Path(cfg.out)
    where = training_placement(cfg.bf16)
    record = {**asdict(cfg), **where.describe(), ENVIRONMENT: environment()}
    if not overwrite:  # a run begun in float32 is not continued under bf16 on a CPU that has it
        check_identity(out / CONFIG_FILE, record, _FREE_FIELDS)
    checkpoints = out / CHECKPOINT_DIR
    if overwrite and checkpoints.is_dir():
        for checkpoint in checkpoints.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    trained = checkpoint_at_last_step(last, cfg.max_steps)
    if trained and (out / METRICS_FILE).is_file():  # the same run already finished: nothing to do
        return _stored_result(out / METRICS_FILE)

    groups = read_groups(cfg.data)
    pairable = [group for group in groups if group.has_pair]
    unpairable = len(groups) - len(pairable)
    if cfg.eval_data is not None:
        train_groups = pairable
        eval_groups = [group for group in read_groups(cfg.eval_data) if group.has_pair]
        overlap = {group.id for group in train_groups} & {group.id for group in eval_groups}
        if overlap:
            raise MathforgeError(f"{len(overlap)} problem ids are in both {cfg.data} and {cfg.eval_data}")
    else:
        train_groups, eval_groups = split_groups(pairable, cfg.eval_fraction, cfg.seed)
    if not train_groups:
        raise MathforgeError(f"{cfg.data}: no problem with both a correct and a wrong response to train on")

    write_config_file(out / CONFIG_FILE, record)

    torch.manual_seed(cfg.seed)  # the head's initialisation
    if trained:  # killed after its last checkpoint: the model is the checkpoint's, no step is redone
        model = RewardModel.from_pretrained(last, dtype=torch.float32, device="cpu")
    else:
        model = RewardModel.from_base(cfg.base, max_length=cfg.max_length, dtype=torch.float32, device="cpu")
    if cfg.train_layers is not None:
        model.train_top_layers(cfg.train_layers)
    train_set = GroupDataset(model, train_groups)
    eval_set = GroupDataset(model, eval_groups) if eval_groups else None
    eval_steps = cfg.eval_steps or cfg.save_steps
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=cfg.problems_per_batch,
        per_device_eval_batch_size=cfg.problems_per_batch,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,
        lr_scheduler_type="cosine",
        **where.trainer_arguments(),
        activation_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if eval_set is not None else "no",
        eval_steps=eval_steps,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        seed=cfg.seed,
        deepspeed=cfg.deepspeed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        ddp_find_unused_parameters=False,  # every parameter (backbone and head) gets a gradient
    )
    trainer = ListwiseRewardTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=GroupCollator(model.pad_id),
        compute_metrics=compute_ranking_metrics,
        callbacks=callbacks,
    )
    train_or_restore(trainer, last, finished=trained)
    metrics = trainer.evaluate() if eval_set is not None else {}
    trainer.save_model(str(out))
    result = RewardTrainingResult(
        out=out,
        train_problems=len(train_groups),
        eval_problems=len(eval_groups),
        unpairable=unpairable,
        truncated=train_set.truncated + (eval_set.truncated if eval_set is not None else 0),
        steps=trainer.state.global_step,
        metrics={
            key.removeprefix("eval_"): float(value)
            for key, value in metrics.items()
            if key != "num_input_tokens_seen"  # the run's trained_tokens
        },
        trained_tokens=int(trainer.state.num_input_tokens_seen),
    )
    if trainer.args.should_save:
        summary = {**asdict(result), "out": str(out), "log_history": trainer.state.log_history}
        (out / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return result


def _stored_result(path: Path) -> RewardTrainingResult:
    """The result a finished run wrote to ``metrics.json`` (which also holds its log history)."""
    summary = json.loads(path.read_text(encoding="utf-8"))
    fields = {name: summary[name] for name in RewardTrainingResult.__dataclass_fields__ if name in summary}
    return RewardTrainingResult(**{**fields, "out": Path(fields["out"])})
