"""The engine protocol shared by every back end: prompts in, completions out.

Every stage that samples from a model (evaluation, rejection sampling, reward-model data, RL
rollouts, the TIR loop) talks to this protocol only, so a laptop run on the embedded model and
a GPU run on vLLM or a remote server differ only in ``load_engine(kind=...)``.

Training needs more than text: the token ids the model conditioned on and sampled, and each
sampled token's log-probability. Engines declare what they offer in ``capabilities``
(:class:`EngineCapabilities`); :func:`engine_capabilities` reads it, text-only for an engine
that declares nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from mathforge.errors import MathforgeError

FinishReason = Literal["stop", "length", "eos"]
# A rendered prompt, or the token ids to condition on (engines with ``token_ids_in``).
Prompt = str | Sequence[int]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: ``temperature == 0`` means greedy; ``n`` completions per prompt.

    ``stop`` strings end a completion; the returned text stops right before the first match and
    ``Completion.stop`` names the string. ``seed`` makes sampling reproducible. ``logprobs`` asks
    for each sampled token's log-probability (``Completion.logprobs``; engines without the
    capability leave it None); off by default because eval does not need them.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    stop: Sequence[str] = field(default_factory=tuple)
    seed: int | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise MathforgeError(f"sampling: n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise MathforgeError(f"sampling: temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise MathforgeError(f"sampling: top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise MathforgeError(f"sampling: max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        if any(not s for s in self.stop):
            raise MathforgeError("sampling: stop strings must be non-empty")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes: Any) -> SamplingParams:
        """A copy with some fields changed."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return SamplingParams(**values)


@dataclass
class Completion:
    """One sampled continuation.

    ``text`` never contains the stop string or the end-of-sequence token; ``token_ids`` decode to
    ``text`` (when a stop string starts inside a token, the kept part of that token is re-encoded).
    ``finish_reason`` is ``"stop"`` (a stop string matched; ``stop`` names it), ``"eos"`` (the
    model ended the sequence) or ``"length"`` (``max_new_tokens`` reached).

    ``sampled_ids`` are the tokens the model actually sampled, in order: through the token that
    completed the stop string, and ending with the end-of-sequence token when the model ended.
    They are what a trainer scores and what a next round must condition on (``token_ids`` may
    re-encode a cut token, which the model never produced). None when the back end cannot name
    them (an OpenAI-compatible server that returns no token ids).

    ``logprobs[i]`` is the log-probability of the i-th sampled token under the distribution it was
    drawn from (None unless ``SamplingParams.logprobs`` asked and the engine gives them):

    - greedy (``temperature == 0``): ``log_softmax(logits)``, the raw model distribution;
    - sampled: ``log p`` where ``p = softmax(logits / temperature)`` restricted to the top-p
      nucleus and renormalised (vLLM's ``logprobs_mode="processed_logprobs"``, taken after
      temperature and top-p masking). With ``top_p == 1`` this is ``log_softmax(logits /
      temperature)``, exactly what TRL's ``GRPOTrainer`` recomputes for the policy
      (``selective_log_softmax(logits / temperature)``); with ``top_p < 1`` a nucleus token's
      value exceeds that by ``-log(nucleus mass)``, so a trainer comparing the two should
      sample with ``top_p = 1``.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    stop: str | None = None
    sampled_ids: list[int] | None = None
    logprobs: list[float] | None = None


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine offers beyond text prompts in and completions out.

    ``token_ids_in``: ``generate`` takes prompts as token ids, ``encode`` gives the ids a rendered
    prompt becomes, and every completion's ``sampled_ids`` are filled, so a caller can condition
    on exactly the tokens a model saw (the token-exact TIR loop needs this).
    ``logprobs``: completions carry ``logprobs`` when ``SamplingParams.logprobs`` asks (for a
    remote server: when it returns them).
    """

    token_ids_in: bool = False
    logprobs: bool = False


TEXT_ONLY = EngineCapabilities()


@runtime_checkable
class Engine(Protocol):
    """Anything that turns prompts into ``n`` completions each, in prompt order.

    Prompts are rendered strings; engines whose capabilities include ``token_ids_in`` also take
    token-id lists (and have ``encode(prompt) -> list[int]``).
    """

    tokenizer: Any

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]: ...


def engine_capabilities(engine: Any) -> EngineCapabilities:
    """The capabilities ``engine`` declares (text only when it declares none, e.g. a test double)."""
    return getattr(engine, "capabilities", TEXT_ONLY)


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer normally starts a sequence with BOS (Llama-style), which chat
    templates sometimes leave to the tokenizer."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


def encode_prompt(tokenizer: Any, prompt: str, bos: str | None) -> list[int]:
    """Token ids of a rendered prompt: special tokens written in the text are kept as such, and
    ``bos`` (the tokenizer's BOS when :func:`adds_bos`, else None) is put first when missing."""
    if bos is not None and not prompt.startswith(bos):
        prompt = bos + prompt
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> tuple[int, str] | None:
    """Earliest stop-string match in ``text`` at or after ``start``: ``(index, stop)``, or None.

    Among matches at the same index the longest stop wins, so the cut is deterministic.
    """
    best: tuple[int, str] | None = None
    for stop in stops:
        index = text.find(stop, start)
        if index >= 0 and (
            best is None or index < best[0] or (index == best[0] and len(stop) > len(best[1]))
        ):
            best = (index, stop)
    return best


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` cut right before its first stop string, and the stop string (None if none matched)."""
    match = find_stop(text, stops)
    if match is None:
        return text, None
    return text[: match[0]], match[1]


def align_token_ids(tokenizer: Any, ids: Sequence[int], text: str) -> list[int]:
    """Token ids that decode to ``text``, a prefix of what ``ids`` decode to.

    Keeps the longest prefix of ``ids`` whose text is a prefix of ``text``; when ``text`` ends
    inside a token (a stop string that began mid-token), the kept part of that token is
    re-encoded. Used to cut a completion at a stop string.
    """
    ids = list(ids)
    k = len(ids)
    while k > 0:
        prefix = tokenizer.decode(ids[:k], skip_special_tokens=True)
        if len(prefix) <= len(text) and text.startswith(prefix):
            break
        k -= 1
    kept = ids[:k]
    rest = text[len(tokenizer.decode(kept, skip_special_tokens=True)) :]
    if rest:
        kept += tokenizer(rest, add_special_tokens=False)["input_ids"]
    return kept
