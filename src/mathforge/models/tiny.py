"""``tiny-random``: a two-layer, width-64 model with the embedded model's tokenizer, randomly initialised.

It knows nothing; it exists so a whole pipeline (the loop's ``smoke`` preset, a new stage being
written) runs end to end in seconds a stage on any machine. Built from a fixed seed into the
model cache once, under a file lock, like the embedded model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mathforge.models.cache import models_dir

TINY_NAME = "tiny-random"
MARKER = "mathforge-tiny.json"
SEED = 0


def tiny_dir() -> Path:
    return models_dir() / TINY_NAME


def is_built() -> bool:
    return (tiny_dir() / MARKER).is_file()


def materialise_tiny() -> Path:
    """The tiny random model's directory, built on first use."""
    target = tiny_dir()
    if is_built():
        return target
    from filelock import FileLock

    from mathforge.models.embedded import materialise_embedded

    tokenizer_source = materialise_embedded()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{TINY_NAME}.lock")):
        if is_built():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{TINY_NAME}.", dir=target.parent))
        try:
            _build(tokenizer_source, tmp)
            (tmp / MARKER).write_text(f'{{"seed": {SEED}}}\n', encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


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
