"""Resumable run directory: a config guard plus an append-only store of per-problem records.

A stage that processes problems one by one (evaluation, sampling for rejection-sampling SFT or
reward-model data) opens a :class:`RunDirectory`: the first run writes ``config.yaml``; a rerun
with the same identity resumes, a different one is refused unless ``overwrite`` is given.
Finished problems go to ``samples.jsonl`` one flushed line each, so a kill loses at most the
problems in flight, and a rerun skips every id already there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mathforge.errors import InputError, MathforgeError
from mathforge.eval.records import ProblemRecord
from mathforge.jsonl import JsonlWriter, read_jsonl_lenient, repair_tail

CONFIG_FILE = "config.yaml"
SAMPLES_FILE = "samples.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"


class SampleStore:
    """``samples.jsonl``: one :class:`ProblemRecord` per line, appended and flushed as problems finish."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: JsonlWriter | None = None

    def load(self) -> dict[str, ProblemRecord]:
        """Records already written, by id. A line torn by a crash is dropped (its problem is
        redone); a duplicate id keeps the first line; any other bad line is an error."""
        records: dict[str, ProblemRecord] = {}
        if not self.path.is_file():
            return records
        repair_tail(self.path)
        for line, obj in read_jsonl_lenient(self.path):
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

    def append(self, records: Iterable[ProblemRecord]) -> None:
        if self._writer is None:
            self._writer = JsonlWriter(self.path, mode="a")
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
        try:
            config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise InputError(self.config_path, f"not valid YAML ({exc})") from None
        if not isinstance(config, dict):
            raise InputError(self.config_path, "expected a mapping")
        return config

    def open(
        self, config: dict[str, Any], identity: Iterable[str] | None = None, overwrite: bool = False
    ) -> None:
        """Start or resume the run described by ``config``.

        ``identity`` names the keys that must match an existing run to resume it (all keys by
        default; keys left out, such as how many problems to run, may change between reruns).
        With ``overwrite``, an existing run's samples, metrics and report are deleted first.
        """
        keys = list(config) if identity is None else list(identity)
        if self.config_path.is_file() and not overwrite:
            old = self.read_config()
            changed = [key for key in keys if old.get(key) != config.get(key)]
            if changed:
                shown = "; ".join(f"{key}: {old.get(key)!r} -> {config.get(key)!r}" for key in changed[:4])
                raise MathforgeError(
                    f"{self.path} holds a run with a different config ({shown}); "
                    "use another output directory or pass --overwrite to discard it"
                )
        if overwrite:
            for path in (self.samples_path, self.metrics_path, self.report_path):
                path.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
