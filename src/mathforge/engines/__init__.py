"""One engine protocol, three back ends: ``hf`` (in-process transformers), ``vllm``, ``openai`` (HTTP)."""

from __future__ import annotations

from typing import Any

from mathforge.engines.base import (
    Completion,
    Engine,
    EngineCapabilities,
    FinishReason,
    Prompt,
    SamplingParams,
    engine_capabilities,
    truncate_at_stop,
)
from mathforge.errors import MathforgeError

ENGINE_KINDS = ("hf", "vllm", "openai")


def load_engine(kind: str = "hf", model: str = "smollm2-135m", **options: Any) -> Engine:
    """Build an engine of ``kind`` serving ``model`` (a known name, directory or hub id; for
    ``openai``, the model name the server knows). ``options`` go to the back end's constructor."""
    if kind == "hf":
        from mathforge.engines.hf import HFEngine

        return HFEngine.load(model, **options)
    if kind == "vllm":
        from mathforge.engines.vllm_engine import VLLMEngine

        return VLLMEngine.load(model, **options)
    if kind == "openai":
        from mathforge.engines.openai_compat import OpenAIEngine

        return OpenAIEngine(model, **options)
    raise MathforgeError(f"unknown engine '{kind}': use one of {', '.join(ENGINE_KINDS)}")


__all__ = [
    "ENGINE_KINDS",
    "Completion",
    "Engine",
    "EngineCapabilities",
    "FinishReason",
    "Prompt",
    "SamplingParams",
    "engine_capabilities",
    "load_engine",
    "truncate_at_stop",
]
