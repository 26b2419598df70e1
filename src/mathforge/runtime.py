"""Where models run and in what precision: the one policy shared by engines, reward model and trainers.

Machines of the same kind differ: some CPUs multiply bf16 natively (AVX512-BF16 or AMX, ~4x float32),
others emulate it through float32 (slower than plain float32). A choice that only one kind of CPU
takes would go untested on the other, so the probe can be forced with ``MATHFORGE_CPU_BF16=1|0``
(or ``force_cpu_bf16`` in Python): the suite runs both branches on any machine, and a user can
override a probe that guesses wrong.

Training precision follows the same policy: on CPU the Trainer is told it runs on the CPU
(``use_cpu``) and trains float32 weights under bf16 autocast where bf16 is native; on CUDA it
uses bf16 where supported, else fp16.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mathforge.errors import MathforgeError

if TYPE_CHECKING:
    import torch

CPU_BF16_ENV = "MATHFORGE_CPU_BF16"
DTYPES = ("auto", "float32", "bfloat16", "float16")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# Libraries whose versions decide a run's numbers; recorded in every run's config.
_TRACKED_PACKAGES = ("mathforge", "torch", "transformers", "trl", "accelerate", "vllm")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); ``MATHFORGE_CPU_BF16`` overrides.

    Without those instructions oneDNN emulates bf16 through float32 and is slower than float32
    (measured in bench/generation.py on an AVX512 Xeon without BF16), so "auto" keeps float32 there.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced in _TRUE:
        return True
    if forced in _FALSE:
        return False
    if forced:
        raise MathforgeError(f"{CPU_BF16_ENV}={forced!r}: use 1 or 0 (or leave it unset to probe the CPU)")
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private but stable since torch 2.3
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


@contextmanager
def force_cpu_bf16(native: bool) -> Iterator[None]:
    """Within the block, behave as on a CPU with (``True``) or without (``False``) native bf16."""
    previous = os.environ.get(CPU_BF16_ENV)
    os.environ[CPU_BF16_ENV] = "1" if native else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CPU_BF16_ENV, None)
        else:
            os.environ[CPU_BF16_ENV] = previous


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch device; ``None`` means the GPU when one is visible, else the CPU."""
    import torch

    return torch.device(device if device is not None else default_device())


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """Map ``"auto"`` to bfloat16 where the device runs it fast (else float16 on old GPUs, float32 on CPU)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise MathforgeError(f"unknown dtype '{dtype}': use one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return getattr(torch, dtype)
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


@dataclass(frozen=True)
class Placement:
    """A resolved device and compute dtype, and what they mean for transformers' Trainer."""

    device: torch.device
    dtype: torch.dtype

    def trainer_arguments(self) -> dict[str, bool]:
        """``TrainingArguments`` fields for this placement: weights stay float32, compute autocasts.

        transformers refuses ``bf16=True`` without a GPU unless told the run is on the CPU
        (``use_cpu``); on CPU, accelerate then trains under bf16 autocast.
        """
        import torch

        return {
            "use_cpu": self.device.type == "cpu",
            "bf16": self.dtype == torch.bfloat16,
            "fp16": self.dtype == torch.float16,
        }

    def describe(self) -> dict[str, str]:
        """Plain strings for a run's config file."""
        return {"device": self.device.type, "dtype": str(self.dtype).removeprefix("torch.")}


def placement(device: str | torch.device | None = None, dtype: str | torch.dtype = "auto") -> Placement:
    """Resolve where and in what precision to run (the rule for engines, scoring and training alike)."""
    resolved = resolve_device(device)
    return Placement(device=resolved, dtype=resolve_dtype(dtype, resolved))


def training_placement(bf16: bool | None) -> Placement:
    """Where a trainer runs: bf16 autocast where native (``bf16=None``), else as ``bf16`` says
    (the ``--bf16/--no-bf16`` option every trainer shares)."""
    return placement(None, "auto" if bf16 is None else ("bfloat16" if bf16 else "float32"))


def environment() -> dict[str, Any]:
    """What produced a run besides its settings: library versions, git commit, CPU bf16 support.

    Recorded in run configs (as lm-evaluation-harness does) so numbers can be traced and a run
    resumed elsewhere can be checked against where it started.
    """
    versions = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": git_commit(),
        "cpu_native_bf16": cpu_has_fast_bf16(),
    }


def git_commit() -> str | None:
    """The commit of the source tree mathforge runs from, ``+dirty`` when it has changes; None outside git."""
    source = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("+dirty" if dirty.stdout.strip() else "")
