"""Hide the notices TRL and transformers address to their own developers, not to a user of ours.

- TRL calls ``rollout_func`` experimental: GRPO uses it on purpose, on the version
  ``constraints.txt`` pins and the suite tests.
- Their code paths raise deprecation warnings (FutureWarning) about calls they make themselves.
- On resume, transformers' Trainer warns that the checkpoint lacks ``lm_head.weight`` when the
  output layer is tied to the input embedding: the weight is tied, so loading the embedding
  restores it (transformers 5 checks an attribute its tied models no longer set). Only that
  exact case is hidden; a checkpoint missing any other weight still warns.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

MISSING_KEYS_NOTICE = "There were missing keys in the checkpoint model loaded: "


class TiedWeightsNotice(logging.Filter):
    """Drops the missing-keys warning when every key it names is a weight tied to another."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        tied = getattr(model, "_tied_weights_keys", None) or {}
        config = getattr(model, "config", None)
        ties = getattr(config, "tie_word_embeddings", False) if config is not None else False
        self.tied = set(tied) if ties else set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(MISSING_KEYS_NOTICE):
            return True
        try:
            keys = ast.literal_eval(message[len(MISSING_KEYS_NOTICE) :].rstrip("."))
        except (ValueError, SyntaxError):
            return True
        return not (self.tied and set(keys) <= self.tied)


@contextlib.contextmanager
def quiet_library_notices(model: Any = None) -> Iterator[None]:
    """Within the block, the notices above stay off the user's console (``model``: the one trained)."""
    trainer_logger = logging.getLogger("transformers.trainer")
    notice = TiedWeightsNotice(model)
    trainer_logger.addFilter(notice)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'", category=UserWarning)
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(trl|transformers)\.")
            yield
    finally:
        trainer_logger.removeFilter(notice)
