"""Model names to local weights: the embedded default, known hub models, any model directory."""

from mathforge.models.cache import mathforge_home
from mathforge.models.embedded import EMBEDDED_NAME, materialise_embedded
from mathforge.models.loading import load_causal_lm, load_tokenizer
from mathforge.models.registry import DEFAULT_MODEL, KNOWN_MODELS, KnownModel
from mathforge.models.resolve import CachedModel, list_models, resolve_model

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_NAME",
    "KNOWN_MODELS",
    "CachedModel",
    "KnownModel",
    "list_models",
    "load_causal_lm",
    "load_tokenizer",
    "materialise_embedded",
    "mathforge_home",
    "resolve_model",
]
