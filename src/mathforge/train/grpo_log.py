"""The GRPO step log: one JSON line per optimiser step, and a progress line with ETA."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mathforge.jsonl import read_jsonl_raw


class StepLog(TrainerCallback):
    """One JSON line per optimiser step in ``steps.jsonl``, and a progress line with ETA on stderr.

    Reads the metrics TRL logs (reward, KL, clip ratio, entropy, lengths) and those the reward
    function adds (accuracy, RM mean, tool calls and outcomes, masked tokens, truncation).
    """

    def __init__(self, path: Path, progress: bool = True) -> None:
        self.path = path
        self.progress = progress
        self._start = time.perf_counter()
        self._first_step: int | None = None
        self._last_time = self._start
        self._last_tokens: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = self._last_time = time.perf_counter()

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        now = time.perf_counter()
        step = state.global_step
        if self._first_step is None:
            self._first_step = step - 1
        tokens = logs.get("num_tokens")
        tokens_per_s = None
        if tokens is not None and self._last_tokens is not None and now > self._last_time:
            tokens_per_s = (tokens - self._last_tokens) / (now - self._last_time)
        elif tokens is not None and now > self._start:
            tokens_per_s = tokens / (now - self._start) if self._first_step == 0 else None
        self._last_tokens, self._last_time = tokens, now
        done = step - self._first_step
        per_step = (now - self._start) / done if done > 0 else None
        eta = per_step * (state.max_steps - step) if per_step is not None else None
        clip = logs.get("clip_ratio/region_mean")
        record = {
            "step": step,
            "reward_mean": logs.get("reward"),
            "reward_std": logs.get("reward_std"),
            "accuracy": logs.get("accuracy"),
            "rm_mean": logs.get("rm_mean"),
            "kl": logs.get("kl"),
            "clip_ratio": clip,
            "entropy": logs.get("entropy"),
            "response_length": logs.get("completions/mean_length"),
            "truncation_rate": logs.get("truncated", logs.get("completions/clipped_ratio")),
            "tool_calls": logs.get("tool_calls"),
            "tool_ok_share": logs.get("tool_ok_share"),
            "masked_tokens": logs.get("masked_tokens"),
            "tokens_per_s": tokens_per_s,
            "rollout_tokens_per_s": logs.get("rollout_tokens_per_s"),
            "loss": logs.get("loss"),
            "grad_norm": logs.get("grad_norm"),
            "learning_rate": logs.get("learning_rate"),
            "step_seconds": logs.get("step_time"),
            "seconds_per_step": per_step,
            "eta_s": eta,
        }
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.progress:
            parts = [f"step {step}/{state.max_steps}", f"reward {record['reward_mean']:.3f}"]
            if record["accuracy"] is not None:
                parts.append(f"acc {record['accuracy']:.3f}")
            if record["kl"] is not None:
                parts.append(f"kl {record['kl']:.4f}")
            if per_step is not None and eta is not None:
                parts.append(f"{per_step:.1f} s/step, ETA {_clock(eta)}")
            print("grpo: " + "  ".join(parts), file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def keep_steps_up_to(path: Path, step: int) -> None:
    """Drop log lines after ``step`` (written by a run killed after its last checkpoint)."""
    if not path.is_file():
        return
    kept = [
        line.rstrip("\n")
        for _, line, record in read_jsonl_raw(path)
        if isinstance(record, dict) and record.get("step", 0) <= step  # a line cut by the kill goes too
    ]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class SaveLastStep(TrainerCallback):
    """Checkpoint the final step too, so a rerun with more ``--steps`` continues from it exactly."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps:
            control.should_save = True
