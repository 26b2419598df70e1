"""Brace-aware text helpers shared by extraction and normalisation (regexes cannot count braces)."""

from __future__ import annotations

import re

OPENERS = "([{"
_BOX = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])")
_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.S)
# A boxed answer longer than this is not an answer; the limit keeps long, unbalanced
# responses (many "\boxed{" cut off) linear.
MAX_BOXED_CHARS = 5000
MAX_BOXES_TRIED = 20
CLOSERS = ")]}"


def find_balanced(s: str, start: int, limit: int | None = None) -> int:
    """Index of the ``}`` matching the ``{`` at ``start``, or -1 when unbalanced (within ``limit``
    characters, when given). Escaped braces (``\\{``) are skipped: set braces do not count."""
    depth = 0
    end = len(s) if limit is None else min(len(s), start + limit)
    for match in _BRACE_OR_ESCAPE.finditer(s, start, end):
        token = match.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return match.start()
    return -1


def command_argument(s: str, after: int, limit: int | None = None) -> tuple[str, int] | None:
    """The argument of a macro whose name ends at ``after``: ``{...}`` or one bare token.

    Returns ``(argument, end_index)``; None when a braced argument is unbalanced (a response
    cut off mid-answer).
    """
    i = after
    while i < len(s) and s[i] in " \t":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        end = find_balanced(s, i, limit)
        if end < 0:
            return None
        return s[i + 1 : end], end + 1
    # \boxed 5 or \boxed A: one token, up to whitespace or a math delimiter.
    match = re.match(r"[^\s$]+", s[i:])
    if match is None:
        return None
    token = match.group().rstrip(".,;")
    return token, i + len(token)


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed``/``\\fbox``/``\\framebox`` (balanced braces)."""
    for match in list(_BOX.finditer(text))[::-1][:MAX_BOXES_TRIED]:
        argument = command_argument(text, match.end(), MAX_BOXED_CHARS)
        if argument is not None:
            return argument[0]
    return None


def unwrap_command(s: str, name: str) -> str:
    r"""Replace every ``\name{X}`` by ``X`` (balanced braces; nested occurrences too)."""
    if "\\" + name not in s:
        return s
    pattern = re.compile(r"\\" + name + r"(?![a-zA-Z])\s*\{")
    for _ in range(50):
        match = pattern.search(s)
        if match is None:
            return s
        open_at = match.end() - 1
        close_at = find_balanced(s, open_at)
        if close_at < 0:
            return s
        s = s[: match.start()] + s[open_at + 1 : close_at] + s[close_at + 1 :]
    return s


def matching_close(s: str, start: int) -> int:
    """Index closing the bracket group opening at ``start``, any of ``( [ { \\{ \\langle``.

    Bracket types are not matched to each other, so half-open intervals ``(1,2]`` close.
    Returns -1 when the group does not close.
    """
    depth = 0
    i = start
    while i < len(s):
        width = _bracket_width(s, i)
        if width > 0:
            depth += 1
            i += width
            continue
        width = _bracket_width(s, i, closing=True)
        if width > 0:
            depth -= 1
            if depth == 0:
                return i + width - 1
            i += width
            continue
        i += 2 if s[i] == "\\" else 1
    return -1


_OPEN_CMDS = ("\\{", "\\langle", "\\begin{")
_CLOSE_CMDS = ("\\}", "\\rangle", "\\end{")


def _bracket_width(s: str, i: int, closing: bool = False) -> int:
    chars, cmds = (CLOSERS, _CLOSE_CMDS) if closing else (OPENERS, _OPEN_CMDS)
    if s[i] in chars:
        return 1
    if s[i] == "\\":
        for cmd in cmds:
            if s.startswith(cmd, i):
                if cmd in ("\\begin{", "\\end{"):  # \begin{env} / \end{env} count as one bracket
                    end = s.find("}", i)
                    return end - i + 1 if end > 0 else 0
                return len(cmd)
    return 0


def split_top(s: str, separators: tuple[str, ...]) -> list[str]:
    """Split ``s`` at separators that are outside every bracket group."""
    if not any(sep in s for sep in separators):
        return [s]
    parts: list[str] = []
    depth = 0
    last = 0
    i = 0
    while i < len(s):
        width = _bracket_width(s, i)
        if width:
            depth += 1
            i += width
            continue
        width = _bracket_width(s, i, closing=True)
        if width:
            depth -= 1
            i += width
            continue
        if depth == 0:
            for sep in separators:
                after = s[i + len(sep) : i + len(sep) + 1]
                if s.startswith(sep, i) and not (sep[0] == "\\" and after.isalpha()):
                    parts.append(s[last:i])
                    i += len(sep)
                    last = i
                    break
            else:
                i += 2 if s[i] == "\\" else 1
            continue
        i += 2 if s[i] == "\\" else 1
    parts.append(s[last:])
    return parts
