"""CoT, TIR and few-shot prompts, rendered through the model's chat template."""

from mathforge.prompts.templates import (
    BUILTIN_TEMPLATES,
    COT_SYSTEM,
    TIR_SYSTEM,
    PromptTemplate,
    few_shot_benchmarks,
    few_shot_examples,
    load_template,
    prompt_messages,
    render_messages,
    render_prompt,
)

__all__ = [
    "BUILTIN_TEMPLATES",
    "COT_SYSTEM",
    "TIR_SYSTEM",
    "PromptTemplate",
    "few_shot_benchmarks",
    "few_shot_examples",
    "load_template",
    "prompt_messages",
    "render_messages",
    "render_prompt",
]
