"""What a run directory remembers of each stage: ``<stage>/stage.json``.

A stage's fingerprint hashes its settings and its inputs' fingerprints, so a changed setting
reruns that stage and every stage downstream of it, and nothing else. Inside a stage each
command is remembered with an identity (its arguments, its inputs, its problem file): a
finished command with the same identity is not run again, an unfinished one resumes (the
commands resume themselves), and one whose identity changed starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathforge.runs import SAMPLES_FILE, checkpoints_by_step

STATE_FILE = "stage.json"
EVENTS_FILE = "loop.jsonl"


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass
class StageState:
    """The contents of ``stage.json``."""

    stage: str
    fingerprint: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: bool = False
    seconds: float = 0.0
    finished_at: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, stage: str) -> StageState | None:
        path = folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a state file cut by a crash: the stage runs again (its commands resume)
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data} | {"stage": stage})

    def save(self, folder: Path) -> None:
        """Write atomically: a kill never leaves half a state file."""
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{STATE_FILE}.partial"
        partial.write_text(json.dumps(self.__dict__, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(partial, folder / STATE_FILE)


def in_flight(state: StageState) -> str:
    """How far an unfinished stage's current command got, read from its output folder: problems
    sampled so far, or the step of the last saved checkpoint (what a resume starts from)."""
    running = [(key, command) for key, command in state.commands.items() if not command.get("done")]
    if not running or "output" not in running[0][1]:
        return ""
    key, output = running[0][0], Path(running[0][1]["output"])
    samples = output / SAMPLES_FILE
    if samples.is_file():
        with samples.open("rb") as handle:
            return f"{key}: {sum(1 for line in handle if line.strip()):,} problems sampled"
    checkpoints = checkpoints_by_step(output)
    if checkpoints and (checkpoints[-1] / "trainer_state.json").is_file():
        saved = json.loads((checkpoints[-1] / "trainer_state.json").read_text(encoding="utf-8"))
        return f"{key}: step {saved.get('global_step')}/{saved.get('max_steps')} saved"
    return f"{key}: started"


def changed_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between ``old`` and ``new``.

    Lists of named items (evaluation sets, bootstrap sources) are compared item by item, and an
    item whose data files appeared or went away says so: a run resumed in a shell without the
    data directory it started with sees its sets change, and must be told why.
    """
    names = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(before, dict) and isinstance(after, dict):
            names += changed_settings(before, after, f"{name}.")
        elif _named_items(before) and _named_items(after) and len(before) == len(after):
            for item_before, item_after in zip(before, after, strict=True):
                names += changed_settings(item_before, item_after, f"{name}.{_item_name(item_after)}.")
        elif key == "available" and isinstance(after, bool) and prefix and before != after:
            found = "found" if after else "not found"
            names.append(f"{prefix[:-1]}: data {found} here (data_dir, $MATHFORGE_DATA_DIR)")
        elif before != after:
            names.append(name)
    return names


def _named_items(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _item_name(item: dict[str, Any]) -> str:
    return str(item.get("name") or item.get("source") or "?")


def log_event(run_dir: Path, **event: Any) -> None:
    """One line of the run's append-only event log (flushed: a kill loses nothing written)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / EVENTS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **event}, default=str) + "\n")
        handle.flush()
