"""One entry point from a ``--bench`` list to problems: registry names, JSONL paths, ``generated``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mathforge.data.generated import GENERATED, generate_problems
from mathforge.data.loaders import load_benchmark, load_problems_file
from mathforge.errors import MathforgeError
from mathforge.records import Problem


@dataclass(frozen=True)
class GeneratedSpec:
    """What ``generated`` means in a benchmark list: how many problems, which, how hard."""

    n: int = 100
    seed: int = 0
    level: int = 1
    families: tuple[str, ...] = field(default_factory=tuple)


def split_bench_list(text: str) -> list[str]:
    """``"gsm8k, math500"`` -> ``["gsm8k", "math500"]`` (order kept, duplicates dropped)."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise MathforgeError("--bench: give at least one benchmark name, JSONL path or 'generated'")
    return names


def is_file_spec(name: str) -> bool:
    return name.endswith(".jsonl") or "/" in name or Path(name).is_file()


def bench_label(name: str) -> str:
    """The benchmark name problems from ``name`` carry (a file's stem for a path)."""
    return Path(name).stem if is_file_spec(name) else name


def load_problems(
    name: str,
    data_dir: str | Path | None = None,
    split: str = "test",
    limit: int | None = None,
    field_map: dict[str, str] | None = None,
    generated: GeneratedSpec | None = None,
    require_gold: bool = True,
) -> list[Problem]:
    """Problems for one ``--bench`` entry: a registry name, a JSONL path or ``generated``.

    ``require_gold=False`` lets a JSONL file's rows omit the answer (``gold=""``), for commands
    that label such problems by majority vote; registry and generated problems always have one.
    """
    if name == GENERATED:
        spec = generated or GeneratedSpec()
        count = spec.n if limit is None else min(limit, spec.n)
        return generate_problems(count, seed=spec.seed, level=spec.level, families=spec.families or None)
    if is_file_spec(name):
        return load_problems_file(name, field_map=field_map, limit=limit, require_gold=require_gold)
    return load_benchmark(name, data_dir=data_dir, split=split, limit=limit)
