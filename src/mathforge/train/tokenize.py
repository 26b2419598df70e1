"""Token ids and loss labels for one record: the one masking rule of SFT (and later of GRPO).

The sequence is what the model sees at inference: the prompt rendered by the tokenizer's chat
template exactly as the solver renders it, then the response segment by segment, then the
assistant turn's end-of-turn token. Labels are ``-100`` (ignored by the loss) on every prompt
and template token and on executor output; they are the token id on what the model must learn
to write: its own text, the ``"```output"`` fence that ends a code round (the solver's stop
string: the model writes it and the engine cuts generation there, so without it a trained
model would never hand its code to the executor) and the end-of-turn token.

Each segment is tokenised on its own, as generation produces it: a model round ends where the
executor's block begins, so no token straddles the two and the mask never has to split a token.
The response becomes a :class:`Trajectory` with token spans and the labels come from its
``tool_mask`` (:func:`response_labels`), so RL losses on sampled trajectories mask the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mathforge.errors import MathforgeError
from mathforge.prompts import render_messages
from mathforge.solve.code import OUTPUT_FENCE
from mathforge.solve.trajectory import Trajectory
from mathforge.train.records import SFTRecord

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Piece:
    """A stretch of the sequence's text and whether the loss trains on its tokens."""

    text: str
    trained: bool


def response_pieces(record: SFTRecord) -> list[Piece]:
    """The response cut into trained and masked stretches (see the module docstring)."""
    pieces = []
    for segment in record.segments:
        text = record.response[segment.start : segment.end]
        if not text:
            continue
        if segment.kind == "model":
            pieces.append(Piece(text, True))
            continue
        fence = text.find(OUTPUT_FENCE)
        if fence >= 0 and not text[:fence].strip():
            cut = fence + len(OUTPUT_FENCE)
            pieces.append(Piece(text[:cut], True))
            text = text[cut:]
        pieces.append(Piece(text, False))
    return pieces


def response_trajectory(tokenizer: Any, record: SFTRecord) -> Trajectory:
    """The record's response as a :class:`Trajectory` with token spans, segment by segment.

    The ``"```output"`` fence that opens a tool block is attributed to the model (it is the stop
    string the model writes), so the trajectory's tool mask covers exactly the executor's text.
    """
    trajectory = Trajectory(prompt="", answer=record.answer)
    for piece in response_pieces(record):
        trajectory.add("model" if piece.trained else "tool", piece.text, _encode(tokenizer, piece.text))
    return trajectory


def response_labels(trajectory: Trajectory) -> list[int]:
    """Loss labels for a trajectory's ``token_ids``: the id where the model wrote it, -100 on
    executor output (by :meth:`Trajectory.tool_mask`); the rule for SFT and for RL losses alike."""
    return [
        IGNORE_INDEX if tool else token
        for token, tool in zip(trajectory.token_ids, trajectory.tool_mask(), strict=True)
    ]


def tokenize_record(tokenizer: Any, record: SFTRecord | dict[str, Any]) -> dict[str, list[int]]:
    """``{"input_ids", "labels"}`` for ``record`` (an :class:`SFTRecord` or its JSON object).

    ``labels[i]`` is ``input_ids[i]`` where the model wrote the token and ``-100`` elsewhere;
    the causal-LM loss shifts them itself.
    """
    if not isinstance(record, SFTRecord):
        record = SFTRecord.from_dict(record)
    prompt = render_messages(record.prompt, tokenizer)
    bos = _leading_bos(tokenizer)
    if bos is not None and not prompt.startswith(bos):
        prompt = bos + prompt
    prompt_ids = _encode(tokenizer, prompt)
    trajectory = response_trajectory(tokenizer, record)
    end = end_of_turn_ids(tokenizer)
    return {
        "input_ids": prompt_ids + trajectory.token_ids + end,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + response_labels(trajectory) + end,
    }


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _leading_bos(tokenizer: Any) -> str | None:
    """BOS text when the tokenizer normally starts a sequence with it (Llama-style) and the chat
    template may leave it out: the rule the hf engine applies when it encodes a prompt."""
    bos = tokenizer.bos_token_id
    if bos is None or tokenizer("a", add_special_tokens=True)["input_ids"][:1] != [bos]:
        return None
    return tokenizer.bos_token


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The tokens that end an assistant turn, up to the one at which generation stops.

    Taken from the chat template (``<|im_end|>`` for ChatML) so the model learns to close its
    turn the way inference expects; without a template, the EOS token.
    """
    return list(_end_of_turn(tokenizer))


@lru_cache(maxsize=8)
def _end_of_turn(tokenizer: Any) -> tuple[int, ...]:
    eos = tokenizer.eos_token_id
    if getattr(tokenizer, "chat_template", None) is not None:
        marker = "\u2063MATHFORGE\u2063"
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
        )
        suffix = rendered[rendered.rindex(marker) + len(marker) :]
        ids = _encode(tokenizer, suffix)
        special = set(tokenizer.all_special_ids)
        for index, token in enumerate(ids):
            if token == eos or token in special:
                return tuple(ids[: index + 1])
    if eos is None:
        raise MathforgeError("the tokenizer has no end-of-sequence token and its chat template none either")
    return (eos,)
