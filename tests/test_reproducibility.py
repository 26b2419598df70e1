"""What a rerun reproduces: float32 greedy text does not depend on the batch a prompt ran in.

A resumed evaluation generates its remaining problems in other batches than an uninterrupted
run would; in float32 the engine's greedy text is the same either way (README, "Reproducibility").
bf16 rounds differently at different padded shapes, so there only the recorded dtype and batch
settings are reproducible, not the text (a run's dtype is part of its identity).
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from mathforge.engines import SamplingParams, load_engine  # noqa: E402

PROMPTS = [
    "What is 2 + 3?",
    "Name a prime number larger than ten, and explain why it is prime.",
    "Solve x + 1 = 4.",
    "A train travels 60 km in 1.5 hours. What is its average speed?",
    "Factor x^2 - 5x + 6.",
    "How many sides does a hexagon have?",
]


@pytest.mark.parametrize("pack_linear", [True, False], ids=["packed", "plain"])
def test_float32_greedy_text_is_the_same_in_any_batch(tiny_model_dir: Any, pack_linear: bool) -> None:
    engine = load_engine("hf", model=str(tiny_model_dir), dtype="float32", pack_linear=pack_linear)
    params = SamplingParams(max_new_tokens=32)
    together = [group[0].text for group in engine.generate(PROMPTS, params)]
    first_half = [group[0].text for group in engine.generate(PROMPTS[:3], params)]
    alone = [engine.generate([prompt], params)[0][0].text for prompt in PROMPTS[3:]]
    assert together == first_half + alone
    small_batches = load_engine(
        "hf", model=str(tiny_model_dir), dtype="float32", pack_linear=pack_linear, max_batch_size=2
    )
    assert [group[0].text for group in small_batches.generate(PROMPTS, params)] == together
