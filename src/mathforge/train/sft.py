"""Supervised fine-tuning of a policy on SFT records (bootstrap or rejection-sampled data).

Built on TRL's ``SFTTrainer``: records are tokenised here by :func:`tokenize_record`, which
sets ``labels`` to -100 on prompt, template and executor-output tokens, and TRL takes a dataset
that already holds ``input_ids`` and ``labels`` as it is (it truncates, packs and collates it,
and computes the token-level NLL only where a label is set). TRL's own masks cannot express the
tool mask: ``assistant_only_loss`` trains on the whole assistant turn, executor output included,
and ``completion_only_loss`` on everything after the prompt. Everything else (optimiser, cosine
schedule, mixed precision, checkpoints and resume, DDP, DeepSpeed and FSDP through accelerate)
is the Trainer's. On a CPU the loss projects only the trained positions through the LM head
(:mod:`mathforge.train.trained_tokens`): TRL's CPU path scores every position.

The output directory is a complete model directory (weights, tokenizer with its chat template,
generation config) that every loader of mathforge accepts, with the run's ``config.yaml``,
``log.jsonl`` (the Trainer's log history) and ``metrics.json``; checkpoints go to
``checkpoints/`` beneath it and a rerun of the same command resumes from the last one.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mathforge.console import stderr_console
from mathforge.errors import InputError, MathforgeError
from mathforge.runtime import environment, training_placement
from mathforge.train.notices import quiet_library_notices
from mathforge.train.records import SFTRecord, read_records
from mathforge.train.tokenize import IGNORE_INDEX, tokenize_record

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"

# Settings that change what is trained: a run directory only resumes a run with the same values.
IDENTITY_KEYS = (
    "base",
    "data",
    "data_sha256",
    "eval_data",
    "eval_examples",
    "epochs",
    "max_steps",
    "lr",
    "warmup",
    "weight_decay",
    "batch_size",
    "grad_accum",
    "max_length",
    "packing",
    "group_by_length",
    "seed",
    "device",
    "dtype",
    "world_size",
)

__all__ = ["SFTConfig", "SFTResult", "run", "tokenize_record"]


class SFTConfig(BaseModel):
    """Everything ``mathforge sft`` needs; written to the output directory as ``config.yaml``."""

    model_config = ConfigDict(extra="forbid")

    data: list[str] = Field(min_length=1, description="SFT record files (JSONL), comma-separated.")
    base: str = Field(description="Model to start from: a known name, a model directory or a hub id.")
    out: str = Field(
        description="Output model directory (resumed when it holds the same run).",
        json_schema_extra={"short": "-o"},
    )
    eval_data: list[str] | None = Field(
        None, description="Held-out record files, comma-separated (default: problems held out of --data)."
    )
    eval_examples: int = Field(
        200, ge=0, description="Problems held out of --data when no --eval-data (at most a tenth)."
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the training records.")
    max_steps: int = Field(-1, description="Stop after this many optimiser steps (-1: by epochs).")
    lr: float = Field(1e-5, gt=0, description="Peak learning rate (cosine schedule with warmup).")
    warmup: float = Field(0.03, ge=0, description="Warmup: a fraction of the steps (<1) or a step count.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(4, ge=1, description="Sequences per device batch.")
    grad_accum: int = Field(4, ge=1, description="Batches accumulated per optimiser step.")
    max_length: int = Field(2048, ge=8, description="Tokens per sequence (longer ones are cut at the end).")
    packing: bool = Field(
        False, description="Pack sequences into --max-length rows (no padding, no cross-attention)."
    )
    group_by_length: bool = Field(
        True,
        description="Draw each optimiser step's records among records of similar length (less padding).",
    )
    pad_to_multiple_of: int = Field(
        64,
        ge=0,
        description="Pad each batch to a multiple of this many tokens (0: to its longest row).",
    )
    bf16: bool | None = Field(None, description="Mixed precision (default: where bf16 is fast).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    logging_steps: int = Field(5, ge=1, description="Log the loss every N optimiser steps.")
    save_steps: int = Field(100, ge=1, description="Checkpoint every N optimiser steps.")
    eval_steps: int | None = Field(
        None, ge=1, description="Held-out loss every N steps (default: --save-steps)."
    )
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept.")
    seed: int = Field(0, description="Seed of the held-out split, the data order and dropout.")
    deepspeed: str | None = Field(
        None, description="DeepSpeed config file (GPU runs; or use accelerate launch)."
    )
    data_dir: str | None = Field(
        None,
        description="Benchmark folder; records whose question overlaps a test set there are dropped "
        "(default $MATHFORGE_DATA_DIR or ./data).",
    )


def decontaminated(records: list[SFTRecord], data_dir: str | None) -> list[SFTRecord]:
    """The records whose question (last user message) passes decontamination against the evaluation
    benchmarks, as every training input must; logs how many went and why."""
    from types import SimpleNamespace

    from mathforge.data.decontam import drop_contaminated, record_question

    questions = [
        SimpleNamespace(
            id=record.id,
            question=record_question({"prompt": record.prompt})[0] or "",
        )
        for record in records
    ]
    kept, _ = drop_contaminated(questions, data_dir, stderr_console())
    keep = {id(item) for item in kept}  # by object: records of one problem share its id
    clean = [record for record, item in zip(records, questions, strict=True) if id(item) in keep]
    if not clean:
        raise MathforgeError("every SFT record overlaps an evaluation benchmark: nothing to train on")
    return clean


@dataclass
class SFTResult:
    """What a run produced, for the end table and ``metrics.json``."""

    out: str
    steps: int
    examples: int
    eval_examples: int
    truncated: int
    labelled_tokens: int  # tokens with a label in the training records (one pass over them)
    trained_tokens: int  # tokens run forward and backward, padding excluded, over the whole run
    tokens_per_second: float | None
    train_loss: float | None
    eval_loss_start: float | None
    eval_loss: float | None
    world_size: int
    global_batch: int
    metrics: dict[str, float] = field(default_factory=dict)


def data_fingerprint(paths: list[str]) -> list[str]:
    """sha256 of each data file: the same path with other content is another run."""
    digests = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InputError(path, "file not found" if not path.exists() else "not a regular file")
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests.append(digest.hexdigest())
    return digests


def _problem_key(record: SFTRecord) -> str:
    """Records of one problem (several sampled responses) are held out together."""
    return str(record.extra.get("problem_id", record.id))


def split_records(records: list[SFTRecord], count: int, seed: int) -> tuple[list[SFTRecord], list[SFTRecord]]:
    """Hold out ``count`` problems (at most a tenth of them), seeded, never splitting a problem."""
    keys = sorted({_problem_key(record) for record in records})
    count = min(count, len(keys) // 10)
    random.Random(seed).shuffle(keys)
    held_out = set(keys[:count])
    train = [r for r in records if _problem_key(r) not in held_out]
    return train, [r for r in records if _problem_key(r) in held_out]


@dataclass
class Encoded:
    """Tokenised records ready for TRL, with how many were cut or unusable at ``max_length``."""

    rows: list[dict[str, list[int]]]
    truncated: int = 0
    labelled_tokens: int = 0


def _recorded_without_grouping(path: Path) -> bool:
    """Whether ``path`` is the config of a run written before ``group_by_length`` existed."""
    from mathforge.runs import read_config_file

    return path.is_file() and "group_by_length" not in read_config_file(path)


def encode_records(tokenizer: Any, records: list[SFTRecord], max_length: int, packing: bool) -> Encoded:
    """Tokenise and cut to ``max_length`` (packing cuts inside TRL); a record left without a trained token
    (its prompt fills the length) is an error naming its file, line and field."""
    encoded = Encoded(rows=[])
    for record in records:
        row = tokenize_record(tokenizer, record)
        if len(row["input_ids"]) > max_length:
            encoded.truncated += 1
            if not packing:
                row = {key: value[:max_length] for key, value in row.items()}
        trained = sum(label != IGNORE_INDEX for label in row["labels"][1:max_length])
        if trained == 0:
            raise InputError(
                record.path,
                f"the prompt fills --max-length {max_length}: no response token left to train on",
                record.line,
                "prompt",
            )
        encoded.labelled_tokens += trained
        encoded.rows.append(row)
    return encoded


def run(config: SFTConfig, *, overwrite: bool = False, callbacks: list[Any] | None = None) -> SFTResult:
    """Fine-tune ``config.base`` on ``config.data``; resume from the last checkpoint in ``config.out``.

    A run directory holding a run with other settings is refused unless ``overwrite``.
    """
    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig as TRLConfig

    from mathforge.interrupt import train_or_restore
    from mathforge.models.resolve import resolve_model
    from mathforge.runs import (
        CHECKPOINT_DIR,
        ENVIRONMENT,
        check_identity,
        checkpoint_at_last_step,
        write_config_file,
    )
    from mathforge.train.sft_log import LogLastStep, StepTimer
    from mathforge.train.trained_tokens import TrainedTokenSFTTrainer

    out = Path(config.out)
    # A run recorded before length grouping existed was trained in random order: it resumes so.
    ungrouped_before = not overwrite and _recorded_without_grouping(out / CONFIG_FILE)
    if ungrouped_before:
        config = config.model_copy(update={"group_by_length": False})
    where = training_placement(config.bf16)
    # Told it runs on the CPU, accelerate sees the launcher's processes (gloo), as the Trainer will.
    state = PartialState(cpu=where.device.type == "cpu")
    world_size = state.num_processes
    settings = {
        **config.model_dump(),
        **where.describe(),
        "data_sha256": data_fingerprint(config.data),
        "world_size": world_size,
        "global_batch": config.batch_size * config.grad_accum * world_size,
    }
    if not overwrite:
        free = [key for key in settings if key not in IDENTITY_KEYS]  # logging, cadence, output path
        free += ["group_by_length"] if ungrouped_before else []
        check_identity(out / CONFIG_FILE, settings, free)
    checkpoints = out / CHECKPOINT_DIR
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() and not overwrite else None
    trained = checkpoint_at_last_step(last, config.max_steps)
    if trained and (out / METRICS_FILE).is_file():  # the same run already finished: nothing to do
        return SFTResult(**json.loads((out / METRICS_FILE).read_text(encoding="utf-8")))

    records = decontaminated(read_records(config.data), config.data_dir)
    if config.eval_data:
        train_records, eval_records = records, read_records(config.eval_data)
    else:
        train_records, eval_records = split_records(records, config.eval_examples, config.seed)

    base_dir = resolve_model(config.base)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    train_set = encode_records(tokenizer, train_records, config.max_length, config.packing)
    eval_set = (
        encode_records(tokenizer, eval_records, config.max_length, config.packing) if eval_records else None
    )

    args = TRLConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup,
        lr_scheduler_type="cosine",
        **where.trainer_arguments(),
        activation_checkpointing=config.gradient_checkpointing,
        max_length=config.max_length,
        packing=config.packing,
        # Few distinct batch shapes: on a CPU, glibc's heap fragments under activations of many
        # sizes and the steps of a long run grew 2x in 40 (flat at 64; bench/RESULTS.md).
        pad_to_multiple_of=config.pad_to_multiple_of or None,
        # Counted in the Trainer's state, so a resumed run still reports the whole run's tokens.
        include_num_input_tokens_seen="non_padding",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if eval_set is not None else "no",
        eval_steps=config.eval_steps or config.save_steps,
        eval_on_start=eval_set is not None and last is None,  # a resumed run has its start loss logged
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        deepspeed=config.deepspeed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
    )
    state.wait_for_everyone()  # every rank has read the old config before rank 0 replaces it
    if state.is_main_process:
        if overwrite and checkpoints.is_dir():
            shutil.rmtree(checkpoints)
        out.mkdir(parents=True, exist_ok=True)
        write_config_file(out / CONFIG_FILE, {**settings, ENVIRONMENT: environment()})
    state.wait_for_everyone()

    torch.manual_seed(config.seed)
    # Killed after its last checkpoint: the model is the checkpoint's, and no step is trained again.
    model = AutoModelForCausalLM.from_pretrained(last if trained else base_dir, dtype=torch.float32)
    timer = StepTimer()
    trainer = TrainedTokenSFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_set.rows),
        eval_dataset=Dataset.from_list(eval_set.rows) if eval_set is not None else None,
        processing_class=tokenizer,
        callbacks=[*(callbacks or []), LogLastStep(), timer],
        group_by_length=config.group_by_length and not config.packing,
    )
    train_metrics = train_or_restore(trainer, last, finished=trained, quiet=quiet_library_notices(model))
    history = trainer.state.log_history
    eval_logs = [entry for entry in history if "eval_loss" in entry]
    final: dict[str, Any] = {}
    if eval_set is not None:  # the Trainer evaluates at the last step itself unless it stopped early
        at_end = bool(eval_logs) and eval_logs[-1]["step"] == trainer.state.global_step
        final = eval_logs[-1] if at_end else trainer.evaluate()
    trainer.save_model(str(out))
    history = trainer.state.log_history
    train_logs = [entry for entry in history if "loss" in entry]
    eval_logs = [entry for entry in history if "eval_loss" in entry]
    session_tokens = train_logs[-1].get("num_tokens") if train_logs else None
    result = SFTResult(
        out=str(out),
        steps=trainer.state.global_step,
        examples=len(train_set.rows),
        eval_examples=len(eval_set.rows) if eval_set is not None else 0,
        truncated=train_set.truncated,
        labelled_tokens=train_set.labelled_tokens,
        trained_tokens=int(trainer.state.num_input_tokens_seen),
        tokens_per_second=session_tokens / timer.seconds if session_tokens and timer.seconds > 0 else None,
        train_loss=float(train_logs[-1]["loss"]) if train_logs else None,
        eval_loss_start=float(eval_logs[0]["eval_loss"]) if eval_logs and eval_logs[0]["step"] == 0 else None,
        eval_loss=float(final["eval_loss"]) if "eval_loss" in final else None,
        world_size=world_size,
        global_batch=settings["global_batch"],
        metrics={key: float(value) for key, value in {**train_metrics, **final}.items() if _is_number(value)},
    )
    if trainer.args.should_save:
        with (out / LOG_FILE).open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(entry) + "\n" for entry in history)
        (out / METRICS_FILE).write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
