"""``tiny-random``: a two-layer, width-64 model with the embedded model's tokenizer, randomly initialised.

It knows nothing; it exists so a whole pipeline (the loop's ``smoke`` preset, a new stage being
written) runs end to end in seconds a stage on any machine. Built from a fixed seed into the
model cache once, under a file lock, like the embedded model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathforge.models.cache import build_model_dir, models_dir

TINY_NAME = "tiny-random"
MARKER = "mathforge-tiny.json"
SEED = 0


def tiny_dir() -> Path:
    return models_dir() / TINY_NAME


def is_built() -> bool:
    return (tiny_dir() / MARKER).is_file()


def materialise_tiny() -> Path:
    """The tiny random model's directory, built on first use."""
    if is_built():
        return tiny_dir()
    from mathforge.models.embedded import materialise_embedded

    tokenizer_source = materialise_embedded()

    def build(out: Path) -> None:
        _build(tokenizer_source, out)
        (out / MARKER).write_text(f'{{"seed": {SEED}}}\n', encoding="utf-8")

    return build_model_dir(tiny_dir(), is_built, build)


def tiny_causal_lm(tokenizer: Any, arch: str = "llama", seed: int = SEED, **overrides: Any) -> Any:
    """A randomly initialised float32 ``arch`` ("llama" or "qwen2") causal LM sized for ``tokenizer``:
    two layers, width 64, tied embeddings; ``overrides`` change any config field."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    config_class, model_class = classes[arch]
    eos = tokenizer.eos_token_id
    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        "tie_word_embeddings": True,
        **overrides,
    }
    torch.manual_seed(seed)
    model = model_class(config_class(**settings)).eval()
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = settings["pad_token_id"]
    return model


def _build(tokenizer_source: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    tiny_causal_lm(tokenizer).save_pretrained(out)
    tokenizer.save_pretrained(out)
