"""Library notices hidden from the user: only transformers' tied-weight resume warning, nothing else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

from mathforge.models.tiny import tiny_causal_lm  # noqa: E402
from mathforge.train.notices import MISSING_KEYS_NOTICE, TiedWeightsNotice  # noqa: E402


def _record(keys: list[str]) -> logging.LogRecord:
    message = f"{MISSING_KEYS_NOTICE}{keys}."
    return logging.LogRecord("transformers.trainer", logging.WARNING, __file__, 1, message, None, None)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_only_a_missing_tied_output_layer_is_hidden(tiny_model_dir: Path, tied: bool) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    notice = TiedWeightsNotice(tiny_causal_lm(tokenizer, tie_word_embeddings=tied))
    assert notice.filter(_record(["lm_head.weight"])) is not tied
    assert notice.filter(_record(["lm_head.weight", "model.norm.weight"]))  # another weight is missing
    assert notice.filter(_record(["model.embed_tokens.weight"]))
    other = logging.LogRecord(
        "transformers.trainer", logging.WARNING, __file__, 1, "anything else", None, None
    )
    assert notice.filter(other)
