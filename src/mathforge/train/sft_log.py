"""The SFT trainer's callbacks: a log line at the last step and the time spent in steps.

Apart from :mod:`mathforge.train.sft` so that importing its config (the CLI does) loads no
transformers or torch.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback


class LogLastStep(TrainerCallback):
    """Log at the last step too, so the final train loss and token count are in the log."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps:
            control.should_log = True


class StepTimer(TrainerCallback):
    """Seconds spent in optimiser steps (evaluation and checkpointing excluded), for tokens/s."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seconds += time.perf_counter() - self._start
