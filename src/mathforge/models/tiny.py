"""``tiny-random``: a two-layer, width-64 model with the embedded model's tokenizer, randomly initialised.

It knows nothing; it exists so a whole pipeline (the loop's ``smoke`` preset, a new stage being
written) runs end to end in seconds a stage on any machine. Built from a fixed seed into the
model cache once, under a file lock, like the embedded model.
"""

from __future__ import annotations

from pathlib import Path

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


def _build(tokenizer_source: Path, out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
