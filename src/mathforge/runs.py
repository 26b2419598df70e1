"""Resumable runs: one identity rule for every run's config file, and the append-only record store.

A run (an evaluation, a sampling run for reward-model data or rejection sampling, a training
run) writes its settings to a config file the first time, together with the resolved device and
dtype and what produced it (library versions, git commit: ``environment``). A rerun resumes only
when every setting matches, except the keys the stage declares *free* (how many problems, where
a checkpoint goes, logging cadence ...); ``environment`` is recorded, never compared. So a run
started in float32 is not continued in bf16 on a CPU that has it, whatever the stage.

Finished problems go to ``samples.jsonl`` one flushed line each, so a kill loses at most the
problems in flight, and a rerun skips every id already there. Reading a run never writes to it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import JsonlWriter, read_jsonl_lenient
from mathforge.records import ProblemRecord

CONFIG_FILE = "config.yaml"
SAMPLES_FILE = "samples.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
CHECKPOINT_DIR = "checkpoints"  # a training run's resume checkpoints, inside its output folder
ENVIRONMENT = "environment"  # recorded with every run, never part of its identity


def read_config_file(path: Path) -> dict[str, Any]:
    """A run's config (YAML, or JSON for ``.json``) as a mapping; bad content is a one-line error."""
    try:
        text = path.read_text(encoding="utf-8")
        config = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a valid config file ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise InputError(path, "expected a mapping")
    return config


def check_identity(path: Path, current: dict[str, Any], free: Collection[str] = ()) -> None:
    """Refuse to resume the run whose config is ``path`` when a setting outside ``free`` changed.

    Nothing happens when ``path`` does not exist yet (a new run).
    """
    if not path.is_file():
        return
    saved = read_config_file(path)
    keys = [key for key in dict.fromkeys([*saved, *current]) if key not in free and key != ENVIRONMENT]
    changed = [key for key in keys if saved.get(key) != current.get(key)]
    if changed:
        shown = "; ".join(f"{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in changed[:4])
        raise MathforgeError(
            f"{path.parent} holds a run with a different config ({shown}); "
            "use another output directory or pass --overwrite to discard it"
        )


def checkpoint_at_last_step(checkpoint: str | Path | None, max_steps: int) -> bool:
    """Whether a Trainer checkpoint was saved at the last optimiser step of the run asked for now.

    ``max_steps`` is that run's step count (<= 0: set by epochs, as the checkpoint recorded it; the
    epochs are part of a run's identity, the step count may grow). transformers' training loop
    tests its stop condition only after a step, so resuming from such a checkpoint would train one
    step more than asked (whenever the run ends inside an epoch); a trainer treats that run as
    finished instead and takes its model from the checkpoint.
    """
    if checkpoint is None:
        return False
    state_file = Path(checkpoint) / "trainer_state.json"  # transformers' TRAINER_STATE_NAME
    if not state_file.is_file():
        return False
    state = json.loads(state_file.read_text(encoding="utf-8"))
    last_step = max_steps if max_steps > 0 else state.get("max_steps", 0)
    return 0 < last_step <= state.get("global_step", 0)


def checkpoints_by_step(run_dir: Path) -> list[Path]:
    """A training run's ``checkpoints/checkpoint-N`` folders, in step order (the last resumes)."""
    steps = {
        path: int(path.name.removeprefix("checkpoint-"))
        for path in (run_dir / CHECKPOINT_DIR).glob("checkpoint-*")
        if path.is_dir() and path.name.removeprefix("checkpoint-").isdigit()
    }
    return sorted(steps, key=steps.__getitem__)


def prune_checkpoints(run_dir: Path) -> int:
    """Free a finished training run's checkpoints, keeping only the last one's trainer state.

    Checkpoints exist to resume an unfinished run (weights plus optimiser state: ~3x the model
    each). Once the run's model and metrics are written they are dead weight, except for the
    last ``trainer_state.json``, which is how a rerun of the same command knows the run is
    finished (``checkpoint_at_last_step``) and returns its result instead of training again.
    Returns the bytes freed.
    """
    checkpoints = checkpoints_by_step(run_dir)
    freed = 0
    for checkpoint in checkpoints:
        keep = checkpoint == checkpoints[-1]
        for path in sorted(checkpoint.rglob("*"), reverse=True):  # files before their folders
            if keep and path.name == "trainer_state.json" and path.parent == checkpoint:
                continue
            if path.is_dir():
                path.rmdir()
            else:
                freed += path.stat().st_size
                path.unlink()
        if not keep:
            checkpoint.rmdir()
    return freed


def write_config_file(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        text = json.dumps(config, indent=2) + "\n"
    else:
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


class SampleStore:
    """``samples.jsonl``: one :class:`ProblemRecord` per line, appended and flushed as problems finish."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: JsonlWriter | None = None

    def load(self) -> dict[str, ProblemRecord]:
        """Records already written, by id, without writing to the file. A line torn by a crash is
        dropped (its problem is redone); a duplicate id keeps the first line; any other bad line
        is an error."""
        records: dict[str, ProblemRecord] = {}
        if not self.path.is_file():
            return records
        torn_line = self._torn_line()
        for line, obj in read_jsonl_lenient(self.path):
            if line == torn_line:
                continue
            if isinstance(obj, InputError):
                raise obj
            try:
                record = ProblemRecord.model_validate(obj)
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(part) for part in error["loc"])
                raise InputError(self.path, error["msg"], line=line, field=field) from None
            records.setdefault(record.id, record)
        return records

    def _torn_line(self) -> int | None:
        """The number of the last line when the file does not end with a newline (a cut write)."""
        with self.path.open("rb") as handle:
            data = handle.read()
        if not data or data.endswith(b"\n"):
            return None
        return data.count(b"\n") + 1

    def append(self, records: Iterable[ProblemRecord]) -> None:
        if self._writer is None:
            self._writer = JsonlWriter(self.path, mode="a")  # drops a torn last line first
        for record in records:
            self._writer.write(record.to_dict())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class RunDirectory:
    """A run directory: ``config.yaml`` (the identity guard), ``samples.jsonl``, metrics and report."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / CONFIG_FILE
        self.samples_path = self.path / SAMPLES_FILE
        self.metrics_path = self.path / METRICS_FILE
        self.report_path = self.path / REPORT_FILE
        self.store = SampleStore(self.samples_path)

    def read_config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            raise MathforgeError(f"{self.path}: not a run directory (no {CONFIG_FILE})")
        return read_config_file(self.config_path)

    def check(self, config: dict[str, Any], free: Collection[str] = (), overwrite: bool = False) -> None:
        """Refuse ``config`` if the path is not a directory, or (unless ``overwrite``) holds a run
        that ``config`` may not resume (see :func:`check_identity`)."""
        if self.path.exists() and not self.path.is_dir():
            raise MathforgeError(
                f"{self.path}: exists and is not a directory; choose another output directory"
            )
        if not overwrite:
            check_identity(self.config_path, config, free)

    def open(self, config: dict[str, Any], free: Collection[str] = (), overwrite: bool = False) -> None:
        """Start or resume the run described by ``config``.

        Every key must match an existing run's, except those in ``free`` (such as how many
        problems to run) and ``environment``. With ``overwrite``, an existing run's samples,
        metrics and report are deleted: callers validate everything else first.
        """
        self.check(config, free, overwrite)
        if overwrite:
            for path in (self.samples_path, self.metrics_path, self.report_path):
                path.unlink(missing_ok=True)
        write_config_file(self.config_path, config)
