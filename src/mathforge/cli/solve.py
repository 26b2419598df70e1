"""`mathforge solve`: answer one question with CoT or TIR and show the trajectory."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer

from mathforge.cli.app import app, console, err_console
from mathforge.errors import MathforgeError

_CODE = re.compile(r"```python\n(.*?)```", re.DOTALL)


@app.command("solve")
def solve_command(
    question: Annotated[str, typer.Argument(help="The problem to solve.")],
    mode: Annotated[str, typer.Option(help="cot (chain of thought) or tir (tool-integrated).")] = "cot",
    model: Annotated[
        str, typer.Option(help="Known name, model directory or hub id (openai: the served name).")
    ] = "smollm2-135m",
    engine: Annotated[str, typer.Option(help="hf, vllm or openai.")] = "hf",
    n: Annotated[int, typer.Option("-n", "--n", help="Number of samples.")] = 1,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Model tokens per trajectory.")] = 1024,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    max_calls: Annotated[int, typer.Option(help="TIR: most code executions.")] = 4,
    template: Annotated[
        str | None, typer.Option(help="cot, tir, qwen-boxed or a template file (default: the mode's).")
    ] = None,
    dtype: Annotated[str, typer.Option(help="hf engine: auto, float32 or bfloat16.")] = "auto",
    base_url: Annotated[str, typer.Option(help="openai engine: server URL.")] = "http://127.0.0.1:8000/v1",
    api_key_env: Annotated[
        str, typer.Option(help="openai engine: env var holding the key.")
    ] = "OPENAI_API_KEY",
    tokenizer: Annotated[
        str | None, typer.Option(help="openai engine: local tokenizer (name or directory).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print trajectories as JSON.")] = False,
) -> None:
    """Solve QUESTION and print each trajectory, code and outputs highlighted (or --json)."""
    from mathforge.engines import SamplingParams, load_engine
    from mathforge.solve import MODES, solve

    if mode not in MODES:  # checked before the (slow) model load
        raise MathforgeError(f"unknown solve mode '{mode}': use one of {', '.join(MODES)}")
    options: dict[str, Any] = {}
    if engine == "hf":
        options["dtype"] = dtype
    elif engine == "openai":
        options.update(base_url=base_url, api_key_env=api_key_env, tokenizer=tokenizer)
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    with err_console.status(f"loading {model} ({engine})"):
        llm = load_engine(engine, model, **options)
    with err_console.status(f"solving ({mode}, n={n})"):
        [trajectories] = solve(
            [question], llm, mode=mode, n=n, params=params, max_calls=max_calls, template=template
        )
    if as_json:
        text = json.dumps([t.to_dict() for t in trajectories], ensure_ascii=False)
        console.print(text, soft_wrap=True, highlight=False, markup=False)
        return
    for index, trajectory in enumerate(trajectories, start=1):
        console.print(_render(trajectory, index, len(trajectories)))


def _render(trajectory: Any, index: int, total: int) -> Any:
    """A panel showing the response: prose as is, code as Python, executor output boxed."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.text import Text

    parts: list[Any] = []
    for segment in trajectory.segments:
        text = trajectory.response[segment.start : segment.end]
        if segment.kind == "tool":
            body = text.strip().removeprefix("```output").removesuffix("```").strip("\n")
            parts.append(
                Panel(Text(body), title="output", title_align="left", border_style="green", expand=False)
            )
            continue
        cursor = 0
        for match in _CODE.finditer(text):
            if text[cursor : match.start()].strip():
                parts.append(Text(text[cursor : match.start()].strip("\n")))
            parts.append(
                Syntax(match.group(1).rstrip("\n"), "python", theme="ansi_dark", background_color="default")
            )
            cursor = match.end()
        if text[cursor:].strip():
            parts.append(Text(text[cursor:].strip("\n")))
    answer = trajectory.answer if trajectory.answer is not None else "(none)"
    calls = len(trajectory.executions)
    subtitle = (
        f"answer: {answer} · finish: {trajectory.finish_reason} · "
        f"{trajectory.completion_tokens} tokens · {calls} execution{'s' if calls != 1 else ''}"
    )
    title = f"sample {index}/{total}" if total > 1 else "solution"
    return Panel(Group(*parts), title=title, subtitle=subtitle, subtitle_align="left")
