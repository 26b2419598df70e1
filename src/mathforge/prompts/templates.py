"""Prompt templates: a question becomes the final prompt string through the tokenizer's chat template.

Built-in templates follow the Qwen2.5-Math evaluation prompts (``cot`` = qwen25-math-cot,
``tir`` = qwen25-math-tir, ``qwen-boxed`` = Qwen2-Math's). A user template is a YAML file with
``system`` (optional) and ``user`` keys, or any other text file holding the user message; both
mark where the question goes with ``{question}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from mathforge.errors import InputError, MathforgeError

QUESTION = "{question}"
COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
TIR_SYSTEM = (
    "Please integrate natural language reasoning with programs to solve the problem above, "
    "and put your final answer within \\boxed{}."
)


@dataclass(frozen=True)
class PromptTemplate:
    """A system message (or None) and a user message with a ``{question}`` slot."""

    user: str = QUESTION
    system: str | None = None


BUILTIN_TEMPLATES: dict[str, PromptTemplate] = {
    "cot": PromptTemplate(system=COT_SYSTEM),
    "tir": PromptTemplate(system=TIR_SYSTEM),
    "qwen-boxed": PromptTemplate(
        system="You are a helpful assistant.",
        user=QUESTION + "\nPlease reason step by step, and put your final answer within \\boxed{}.",
    ),
}

# Benchmarks sharing an exemplar set, as in the Qwen2.5-Math evaluation code.
_FEW_SHOT_ALIASES = {
    "sat_math": "mmlu_stem",
    "gaokao2024_I": "gaokao",
    "gaokao2024_II": "gaokao",
    "gaokao2024_mix": "gaokao",
    "gaokao_math_qa": "gaokao",
    "cn_middle_school": "gaokao",
}


def load_template(template: str | Path) -> PromptTemplate:
    """A built-in template by name, or a user template from a file."""
    if isinstance(template, str) and template in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[template]
    path = Path(template)
    if not path.is_file():
        names = ", ".join(BUILTIN_TEMPLATES)
        raise MathforgeError(f"unknown prompt template '{template}': use one of {names} or a template file")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("user"), str):
            raise InputError(path, "expected a mapping with a 'user' string", field="user")
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise InputError(path, "must be a string", field="system")
        user = data["user"]
    else:
        system, user = None, text
    if QUESTION not in user:
        raise InputError(path, f"the user message has no {QUESTION} placeholder", field="user")
    return PromptTemplate(user=user, system=system)


def render_prompt(
    question: str,
    tokenizer: Any,
    template: str | Path = "cot",
    few_shot: list[tuple[str, str]] | None = None,
) -> str:
    """The prompt string for ``question``: template messages through the tokenizer's chat template.

    Few-shot exemplars go into the same user turn, each as "question\\nanswer", joined and
    followed by the question with blank lines (the Qwen2.5-Math single-turn few-shot layout).
    """
    return render_messages(prompt_messages(question, template, few_shot), tokenizer)


def prompt_messages(
    question: str, template: str | Path = "cot", few_shot: list[tuple[str, str]] | None = None
) -> list[dict[str, str]]:
    """The chat messages (optional system turn, then the user turn) that :func:`render_prompt` renders;
    training records store them so a trainer renders exactly the prompt the solver sends."""
    spec = load_template(template)
    content = question
    if few_shot:
        content = "\n\n".join(f"{q}\n{a}" for q, a in few_shot) + "\n\n" + question
    messages = [{"role": "user", "content": spec.user.replace(QUESTION, content)}]
    if spec.system is not None:
        messages.insert(0, {"role": "system", "content": spec.system})
    return messages


def render_messages(messages: list[dict[str, str]], tokenizer: Any) -> str:
    """Prompt messages through the tokenizer's chat template, ready for the assistant's reply.

    A tokenizer without a chat template gets plain text (system text first); a template that
    rejects a system turn gets the system text at the head of the user turn.
    """
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    user = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
    if getattr(tokenizer, "chat_template", None) is None:
        head = f"{system}\n\n" if system else ""
        return f"{head}{user}\n"
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja TemplateError: e.g. templates that reject a system turn
        if system is None:
            raise
        merged = [{"role": "user", "content": f"{system}\n\n{user}"}]
        try:
            return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        except Exception:
            raise exc from None


@cache
def _exemplar_sets() -> dict[str, list[tuple[str, str]]]:
    import yaml

    text = resources.files("mathforge.prompts").joinpath("few_shot.yaml").read_text(encoding="utf-8")
    return {
        name: [(item["question"], item["answer"]) for item in items]
        for name, items in yaml.safe_load(text).items()
    }


def few_shot_benchmarks() -> list[str]:
    """Benchmarks with built-in few-shot exemplars."""
    return sorted(set(_exemplar_sets()) | set(_FEW_SHOT_ALIASES))


def few_shot_examples(benchmark: str, k: int = 5) -> list[tuple[str, str]]:
    """The first ``k`` built-in (question, answer) exemplars for a multiple-choice benchmark."""
    sets = _exemplar_sets()
    name = _FEW_SHOT_ALIASES.get(benchmark, benchmark)
    if name not in sets:
        known = ", ".join(few_shot_benchmarks())
        raise MathforgeError(f"no few-shot exemplars for benchmark '{benchmark}' (known: {known})")
    if k < 0 or k > len(sets[name]):
        raise MathforgeError(
            f"few-shot: k must be between 0 and {len(sets[name])} for '{benchmark}', got {k}"
        )
    return list(sets[name][:k])
