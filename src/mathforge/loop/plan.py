"""``mathforge loop plan``: the stages, their commands, data sizes and a time estimate, running nothing.

Estimates are sizes over throughputs: tokens to generate over the config's generation rate,
tokens to train on over its training rate, plus a start-up cost per command. The presets carry
rates measured on the machines they were written for; a run's real times are in ``loop status``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mathforge.loop.config import LoopConfig, Problems
from mathforge.loop.stages import Stage, bench_available, eval_sets

if TYPE_CHECKING:
    from mathforge.loop.runner import StageStatus

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


def _response_tokens(config: LoopConfig, mode: str, max_new_tokens: int, *, base: bool = False) -> float:
    """Expected tokens of one response: the config's typical length (the base model's, for
    ``base``), capped by the budget."""
    lengths = config.estimate.tokens_per_response
    if base:
        lengths = {**lengths, **config.estimate.base_tokens_per_response}
    return min(lengths[mode], float(max_new_tokens))


def _problems(config: LoopConfig, spec: Problems) -> int:
    return _count(config, spec.benches, spec.split, spec.limit, spec.gen_n)


class _Unknown(Exception):
    """A set's size cannot be known here (its data files are elsewhere, e.g. on the GPU machine)."""


def _count(config: LoopConfig, benches: list[str], split: str, limit: int | None, gen_n: int) -> int:
    count = problem_count(config, benches, split, limit, gen_n)
    if count is None:
        raise _Unknown(",".join(benches))
    return count


def stage_sizes(config: LoopConfig, stage: Stage) -> dict[str, Any]:
    """The numbers that drive a stage's cost: problems, responses to sample, records to train on.

    ``{"unknown": NAMES}`` when a benchmark it reads has no file here.
    """
    try:
        return _sizes(config, stage)
    except _Unknown as exc:
        return {"unknown": str(exc)}


def _sizes(config: LoopConfig, stage: Stage) -> dict[str, Any]:
    est = config.estimate
    if stage.kind == "eval":
        problems = responses = tokens = 0.0
        model_stage = None if stage.name == "base/eval" else stage.name.removesuffix("-eval")
        for item in eval_sets(config, model_stage):
            if item.optional and not all(bench_available(config, bench) for bench in item.benches):
                continue
            count = _count(config, item.benches, item.split, item.limit, item.gen_n)
            problems += count
            responses += count * len(item.modes)
            tokens += sum(
                count * _response_tokens(config, mode, item.max_new_tokens, base=model_stage is None)
                for mode in item.modes
            )
        return {"problems": problems, "responses": responses, "generate_tokens": tokens}
    if stage.kind == "rm-eval":
        sampled = config.eval.sampled
        assert sampled is not None
        item = next(item for item in config.eval.sets if item.name == sampled.set)
        count = _count(config, item.benches, item.split, sampled.limit or item.limit, item.gen_n)
        responses = count * sampled.n
        tokens = responses * _response_tokens(config, sampled.mode, item.max_new_tokens)
        return {"problems": count, "responses": responses, "generate_tokens": tokens}
    if stage.kind == "data":
        return {"records": _bootstrap_records(config)}
    if stage.kind == "sft":
        records = _sft_records(config, stage)
        seen = records * config.sft.epochs
        if config.sft.max_steps > 0:
            seen = min(seen, config.sft.max_steps * config.sft.batch_size * config.sft.grad_accum)
        return {"records": records, "train_tokens": seen * est.tokens_per_record}
    if stage.kind in ("rm-data", "rm"):
        rm = config.rm
        responses = _problems(config, rm.problems) * rm.n
        tokens = responses * _response_tokens(config, rm.mode, rm.max_new_tokens)
        if stage.kind == "rm-data":
            return {"problems": responses // rm.n, "responses": responses, "generate_tokens": tokens}
        # Only problems with a right and a wrong sample carry a ranking signal; the others are dropped.
        share = est.rm_pairable_share
        return {"responses": round(responses * share), "train_tokens": tokens * share * rm.epochs}
    if stage.kind == "rs":
        rs = config.rs
        count = _problems(config, rs.problems)
        tokens = sum(count * rs.n * _response_tokens(config, mode, rs.max_new_tokens) for mode in rs.modes)
        return {"problems": count, "responses": count * rs.n * len(rs.modes), "generate_tokens": tokens}
    if stage.kind == "grpo":
        grpo = config.grpo
        responses = grpo.steps * grpo.problems_per_step * grpo.group
        tokens = responses * _response_tokens(config, grpo.mode, grpo.max_new_tokens)
        # Training scores every rollout with the policy (forward and backward) and the reference
        # (forward): about the cost of training on the same tokens once more.
        return {"responses": responses, "generate_tokens": tokens, "train_tokens": tokens * 1.3}
    return {}


def _bootstrap_records(config: LoopConfig) -> int:
    records = 0
    for source in config.bootstrap:
        if source.source == "generated":
            count = source.limit or 1000
        elif source.optional and not bench_available(config, source.source):
            continue
        else:
            count = _count(config, [source.source], source.split, source.limit, 0)
        records += count * len(source.formats)
    return records


def _sft_records(config: LoopConfig, stage: Stage) -> int:
    """Records an SFT stage trains on: the gold data, or the expected share of K kept per problem
    and mode (with the gold records replayed beside them)."""
    bootstrap = _bootstrap_records(config)
    if stage.name.startswith("it0/"):
        return bootstrap
    rs = config.rs
    kept = round(_problems(config, rs.problems) * rs.keep * len(rs.modes) * config.estimate.rs_kept_share)
    if not config.sft.mix_bootstrap:
        return kept
    replay = config.sft.gold_replay
    return kept + (bootstrap if replay is None else min(bootstrap, replay * kept))


def estimate_seconds(config: LoopConfig, stage: Stage, sizes: dict[str, Any] | None = None) -> float:
    """A stage's expected wall time from its sizes (computed unless given) and the config's throughputs."""
    est = config.estimate
    sizes = stage_sizes(config, stage) if sizes is None else sizes
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


TRAINING_KINDS = frozenset({"sft", "rm", "grpo"})


def _cost_class(stage: Stage) -> str:
    return "training" if stage.kind in TRAINING_KINDS else "generation"


def pace(config: LoopConfig, statuses: Iterable[StageStatus]) -> dict[str, float]:
    """How long this run's finished stages took against their estimates, for training and for
    generation apart (1.0 before any finished): the config's throughputs were measured on another
    machine, or on this one at another speed, and one class can be off while the other is not."""
    spent = {"training": 0.0, "generation": 0.0}
    estimated = dict(spent)
    for row in statuses:
        if row.status == "done" and row.state is not None and row.state.seconds > 0:
            kind = _cost_class(row.stage)
            spent[kind] += row.state.seconds
            estimated[kind] += estimate_seconds(config, row.stage)
    return {kind: spent[kind] / estimated[kind] if estimated[kind] > 0 else 1.0 for kind in spent}


def seconds_left(config: LoopConfig, row: StageStatus, factors: dict[str, float]) -> float:
    """A stage's expected remaining time at the run's pace; a partial stage's time spent so far
    counts as done (at least a tenth of its estimate stays)."""
    if row.status == "done":
        return 0.0
    total = estimate_seconds(config, row.stage) * factors[_cost_class(row.stage)]
    spent = row.state.seconds if row.status == "partial" and row.state is not None else 0.0
    return max(total - spent, 0.1 * total)


def _size_text(sizes: dict[str, Any]) -> str:
    if "unknown" in sizes:
        return f"? ({sizes['unknown']}: no data files here)"
    labels = {
        "problems": "problems",
        "responses": "responses",
        "records": "records",
        "generate_tokens": "tokens to generate",
        "train_tokens": "tokens to train",
    }
    return ", ".join(f"{int(value):,} {labels[key]}" for key, value in sizes.items() if value is not None)


def plan_rows(config: LoopConfig, run_dir: str | Path) -> tuple[list[dict[str, Any]], float]:
    """One row per stage (sizes, estimate, the commands it will run) and the total estimate (of the
    stages whose size is known here)."""
    import shlex

    from mathforge.loop.stages import build_stages

    run_dir = Path(run_dir).resolve()
    rows, total = [], 0.0
    for stage in build_stages(config, run_dir):
        sizes = stage_sizes(config, stage)
        seconds = estimate_seconds(config, stage, sizes)
        total += seconds
        commands = [shlex.join(command.full_argv("python")) for command in stage.build(stage.folder(run_dir))]
        rows.append(
            {
                "stage": stage.name,
                "sizes": _size_text(sizes),
                "estimate": "?" if "unknown" in sizes else f"{seconds / 60:.1f} min",
                "seconds": seconds,
                "commands": commands,
            }
        )
    return rows, total
