"""Finding the code a TIR response asks to run."""

from __future__ import annotations

FENCE = "```"
PYTHON_FENCE = "```python"
OUTPUT_FENCE = "```output"


def trailing_python_block(text: str) -> str | None:
    """The code of a complete ```python block that ends ``text`` (trailing whitespace aside), else None.

    Only the last block counts: sessions keep the state of earlier cells, so each round runs
    just the new code.
    """
    stripped = text.rstrip()
    if not stripped.endswith(FENCE):
        return None
    start = stripped.rfind(PYTHON_FENCE, 0, len(stripped) - len(FENCE))
    if start < 0:
        return None
    newline = stripped.find("\n", start)
    if newline < 0 or newline > len(stripped) - len(FENCE):
        return None
    body = stripped[newline + 1 : len(stripped) - len(FENCE)]
    if FENCE in body:  # the final fence closes some later block, not this python one
        return None
    return body


def output_block(observation: str, after: str) -> str:
    """The executor's reply appended to the response: "```output\\n{observation}\\n```\\n",
    on a new line of its own."""
    lead = "" if not after or after.endswith("\n") else "\n"
    return f"{lead}{OUTPUT_FENCE}\n{observation}\n{FENCE}\n"


def output_after_fence(observation: str, written: str) -> str:
    """The executor's reply when the model itself wrote the "```output" fence (token-exact TIR):
    the rest of "```output\\n{observation}\\n```\\n" after the fence, less what the model already
    wrote past the fence in its last token (usually "" or "\\n"); appended whole after anything else."""
    reply = f"\n{observation}\n{FENCE}\n"
    return reply[len(written) :] if reply.startswith(written) else reply
