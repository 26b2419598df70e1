"""Load a named model and its tokenizer with transformers (used by engines, reward model, trainers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mathforge.models.resolve import resolve_model
from mathforge.runtime import placement

if TYPE_CHECKING:
    import torch


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

    where = placement(device, dtype)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name_or_path), dtype=where.dtype)
    return model.to(where.device).eval()
