"""Load a named model and its tokenizer with transformers (used by engines, reward model, trainers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mathforge.errors import MathforgeError
from mathforge.models.resolve import resolve_model

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "float32", "bfloat16", "float16")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    Without those instructions oneDNN emulates bf16 through float32 and is slower than plain
    float32 (measured in bench/generation.py on an AVX512 Xeon without BF16), so "auto" keeps
    float32 there.
    """
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """Map ``"auto"`` to bfloat16 where the device runs it fast, else float32; names to torch dtypes."""
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


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(name_or_path: str) -> Any:
    """The model's tokenizer (with its chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path))


def load_causal_lm(
    name_or_path: str,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device | None = None,
) -> Any:
    """A causal LM in eval mode on ``device`` (default: GPU if any), weights cast to ``dtype``."""
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model(name_or_path), dtype=resolve_dtype(dtype, device)
    )
    return model.to(device).eval()
