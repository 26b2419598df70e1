"""``mathforge loop plan``: the stages, their commands, data sizes and a time estimate, running nothing.

Estimates are sizes over throughputs: tokens to generate over the config's generation rate,
tokens to train on over its training rate, plus a start-up cost per command. The presets carry
rates measured on the machines they were written for; a run's real times are in ``loop status``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathforge.loop.config import LoopConfig, Problems
from mathforge.loop.stages import Stage, eval_set_available, eval_sets

GSM8K_SOLUTION_TOKENS = 180.0


def problem_count(
    config: LoopConfig, benches: list[str], split: str, limit: int | None, gen_n: int
) -> int | None:
    """How many problems a set holds (None: a benchmark whose file is not here, so unknown)."""
    from mathforge.data import default_data_dir
    from mathforge.data.sources import is_file_spec

    total = 0
    for bench in benches:
        if bench == "generated":
            count: int | None = gen_n
        elif is_file_spec(bench):
            count = _lines(Path(bench))
        else:
            base = Path(config.data_dir) if config.data_dir else default_data_dir()
            count = _lines(base / bench / f"{split}.jsonl")
        if count is None:
            return None
        total += min(count, limit) if limit else count
    return total


def _lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _response_tokens(config: LoopConfig, mode: str, max_new_tokens: int) -> float:
    """Expected tokens of one response: the config's typical length, capped by the budget."""
    return min(config.estimate.tokens_per_response[mode], float(max_new_tokens))


def _problems(config: LoopConfig, spec: Problems) -> int | None:
    return problem_count(config, spec.benches, spec.split, spec.limit, spec.gen_n)


def stage_sizes(config: LoopConfig, stage: Stage) -> dict[str, Any]:
    """The numbers that drive a stage's cost: problems, responses to sample, records to train on."""
    est = config.estimate
    if stage.kind == "eval":
        problems = responses = tokens = 0
        model_stage = None if stage.name == "base/eval" else stage.name.removesuffix("-eval")
        for item in eval_sets(config, model_stage):
            if item.optional and not all(eval_set_available(config, bench) for bench in item.benches):
                continue
            count = problem_count(config, item.benches, item.split, item.limit, item.gen_n) or 0
            problems += count
            responses += count * len(item.modes)
            tokens += sum(count * _response_tokens(config, mode, item.max_new_tokens) for mode in item.modes)
        return {"problems": problems, "responses": responses, "generate_tokens": tokens}
    if stage.kind == "rm-eval":
        sampled = config.eval.sampled
        assert sampled is not None
        item = next(item for item in config.eval.sets if item.name == sampled.set)
        count = problem_count(config, item.benches, item.split, sampled.limit or item.limit, item.gen_n) or 0
        responses = count * sampled.n
        return {
            "problems": count,
            "responses": responses,
            "generate_tokens": responses * _response_tokens(config, sampled.mode, item.max_new_tokens),
        }
    if stage.kind == "data":
        records = 0
        for source in config.bootstrap:
            if source.source == "generated":
                count = source.limit or 1000
            else:
                count = problem_count(config, [source.source], source.split, source.limit, 0) or 0
            records += count * len(source.formats)
        return {"records": records}
    if stage.kind == "sft":
        records = _sft_records(config, stage)
        epochs = config.sft.epochs
        if config.sft.max_steps > 0:
            per_step = config.sft.batch_size * config.sft.grad_accum
            records_seen = (
                min(records * epochs, config.sft.max_steps * per_step)
                if records
                else config.sft.max_steps * per_step
            )
        else:
            records_seen = records * epochs
        return {"records": records, "train_tokens": records_seen * est.tokens_per_record}
    if stage.kind == "rm-data":
        count = _problems(config, config.rm.problems) or 0
        responses = count * config.rm.n
        return {
            "problems": count,
            "responses": responses,
            "generate_tokens": responses * _response_tokens(config, config.rm.mode, config.rm.max_new_tokens),
        }
    if stage.kind == "rm":
        count = _problems(config, config.rm.problems) or 0
        responses = count * config.rm.n
        return {
            "responses": responses,
            "train_tokens": responses
            * config.rm.epochs
            * _response_tokens(config, config.rm.mode, config.rm.max_new_tokens),
        }
    if stage.kind == "rs":
        count = _problems(config, config.rs.problems) or 0
        per = [_response_tokens(config, mode, config.rs.max_new_tokens) for mode in config.rs.modes]
        tokens = sum(count * config.rs.n * value for value in per)
        return {
            "problems": count,
            "responses": count * config.rs.n * len(config.rs.modes),
            "generate_tokens": tokens,
        }
    if stage.kind == "grpo":
        grpo = config.grpo
        responses = grpo.steps * grpo.problems_per_step * grpo.group
        tokens = responses * _response_tokens(config, grpo.mode, grpo.max_new_tokens)
        # The policy's forward and backward pass plus the reference model's forward: about 3x a forward.
        return {
            "problems": _problems(config, grpo.problems),
            "responses": responses,
            "generate_tokens": tokens,
            "train_tokens": tokens,
        }
    return {}


def _sft_records(config: LoopConfig, stage: Stage) -> int:
    """Records an SFT stage trains on: the gold data, or at most K kept per problem and mode."""
    bootstrap = stage_sizes(config, _kind_stage("data"))["records"]
    if stage.name.startswith("it0/"):
        return bootstrap
    rs = config.rs
    kept = (_problems(config, rs.problems) or 0) * rs.keep * len(rs.modes)
    return kept + (bootstrap if config.sft.mix_bootstrap else 0)


def _kind_stage(kind: str) -> Stage:
    return Stage(name=kind, kind=kind, inputs=[], settings={}, build=lambda folder: [])


def estimate_seconds(config: LoopConfig, stage: Stage) -> float:
    """A stage's expected wall time from its sizes and the config's throughputs."""
    est = config.estimate
    sizes = stage_sizes(config, stage)
    seconds = sizes.get("generate_tokens", 0) / est.generate_tokens_per_second
    seconds += sizes.get("train_tokens", 0) / est.train_tokens_per_second
    if stage.kind == "data":
        seconds += 0.02 * sizes.get("records", 0)  # templating and one sandbox run per TIR record
    commands = 1
    if stage.kind == "eval":
        model_stage = None if stage.name == "base/eval" else stage.name.removesuffix("-eval")
        commands = sum(len(item.modes) for item in eval_sets(config, model_stage))
    elif stage.kind == "rs":
        commands = len(config.rs.modes)
    elif stage.kind == "data":
        commands = sum(len(source.formats) for source in config.bootstrap)
    return seconds + commands * est.seconds_per_command


def _size_text(sizes: dict[str, Any]) -> str:
    labels = {
        "problems": "problems",
        "responses": "responses",
        "records": "records",
        "generate_tokens": "tokens to generate",
        "train_tokens": "tokens to train",
    }
    return ", ".join(f"{int(value):,} {labels[key]}" for key, value in sizes.items() if value is not None)


def plan_rows(config: LoopConfig, run_dir: str | Path) -> tuple[list[dict[str, Any]], float]:
    """One row per stage (sizes, estimate, the commands it will run) and the total estimate."""
    import shlex

    from mathforge.loop.stages import build_stages

    run_dir = Path(run_dir).resolve()
    rows, total = [], 0.0
    for stage in build_stages(config, run_dir):
        seconds = estimate_seconds(config, stage)
        total += seconds
        commands = [shlex.join(command.full_argv("python")) for command in stage.build(stage.folder(run_dir))]
        rows.append(
            {
                "stage": stage.name,
                "sizes": _size_text(stage_sizes(config, stage)),
                "estimate": f"{seconds / 60:.1f} min",
                "seconds": seconds,
                "commands": commands,
            }
        )
    return rows, total
