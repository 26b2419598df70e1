"""Running a Trainer (reward model, SFT, GRPO): Ctrl-C or SIGTERM saves a checkpoint before
stopping, and a run already trained to its last step is restored, not trained again.

A top-level module, not part of ``train/`` or ``reward/``, because both use it and ``train``
already depends on ``reward`` (RM-guided selection and rewards)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME

from mathforge.allocator import long_run_hint
from mathforge.console import stderr_console

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SaveOnInterrupt(TrainerCallback):
    """Ctrl-C (or SIGTERM: ``kill``, a job scheduler, the loop stopping) ends the optimiser step in
    flight, saves a checkpoint and stops; the same signal again stops at once.

    The training function then raises ``KeyboardInterrupt``; rerunning the same command resumes
    from that checkpoint, so an interruption loses no finished step.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signum, self._previous[signum])
        print("\ninterrupt: saving a checkpoint after this step (again to stop now)", file=sys.stderr)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Catch SIGINT and SIGTERM while training (main thread only; elsewhere they keep their default)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True


def train_or_restore(
    trainer: Trainer,
    checkpoint: str | None,
    *,
    finished: bool,
    quiet: AbstractContextManager[Any] | None = None,
) -> dict[str, Any]:
    """Train from ``checkpoint`` (None: from the start) with Ctrl-C saving a checkpoint; the metrics.

    ``finished`` (see :func:`mathforge.runs.checkpoint_at_last_step`): the checkpoint holds the
    last step, so its trainer state is restored and no step runs (no metrics). After a Ctrl-C
    save this raises ``KeyboardInterrupt``. ``quiet`` wraps the training (library notices). A CPU
    run on glibc's malloc first says how to preload jemalloc (see :mod:`mathforge.allocator`).
    """
    if finished:
        assert checkpoint is not None
        trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME))
        return {}
    if trainer.args.device.type == "cpu" and trainer.is_world_process_zero() and (hint := long_run_hint()):
        stderr_console().print(f"[dim]{hint}[/]")
    interrupt = SaveOnInterrupt()
    trainer.add_callback(interrupt)
    with interrupt.installed(), quiet or contextlib.nullcontext():
        metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
    if interrupt.requested:
        raise KeyboardInterrupt
    return metrics
