"""The stages of a loop, each a folder of the run directory and the ``mathforge`` commands that fill it.

Iteration 0 trains on gold data; iteration k >= 1 samples RM data with policy k, trains RM_k,
rejection-samples with it, fine-tunes the next policy and runs GRPO on it (the report's order).
Every stage that makes a model is followed by a held-out evaluation of it; the base model is
evaluated on the same problems first.

A stage is a list of CLI commands plus small in-process steps (writing its problem files,
merging its outputs), so each stage can be run by hand with the commands ``loop plan`` prints,
and a training command can be prefixed by a distributed launcher. Which stages exist is fixed by
the config; what a stage's commands say may depend on its inputs (an RM that could not be
trained is left out of the stages after it), so commands are built when the stage runs.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathforge.data.decontam import record_question
from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import read_jsonl, read_jsonl_raw
from mathforge.loop.config import EvalSet, LoopConfig, Problems

BASE = "base"
EVAL_SUFFIX = "-eval"
TRAIN_FILE = "train.jsonl"
PROBLEMS_FILE = "problems.jsonl"
GOLD_REPLAY_FILE = "gold_replay.jsonl"  # an SFT stage's sample of the gold data (sft.gold_replay)
RM_SKIPPED = "skipped.json"
# SFT settings only iterations >= 1 read: changing them leaves iteration 0's SFT (and all after it) as is.
LATER_ITERATION_SFT_KEYS = {"init", "mix_bootstrap", "gold_replay", "next_lr"}


@dataclass
class Command:
    """One ``mathforge`` invocation of a stage; ``key`` names it inside the stage."""

    key: str
    argv: list[str]
    output: str
    launcher: list[str] = field(default_factory=list)
    overwrite_flag: str | None = "--overwrite"

    def full_argv(self, python: str) -> list[str]:
        """The process to start: ``python -m mathforge ...``, or the launcher's ``... -m mathforge ...``."""
        return [*(self.launcher or [python]), "-m", "mathforge", *self.argv]


@dataclass
class Stage:
    """A stage: its name (also its folder), its inputs and the settings that define its result."""

    name: str
    kind: str
    inputs: list[str]
    settings: dict[str, Any]
    build: Callable[[Path], list[Command]]
    prepare: Callable[[Path], None] | None = None  # writes the stage's own inputs (problem files)
    finish: Callable[[Path], dict[str, Any]] | None = None
    model: bool = False  # the stage's folder is a model directory (a policy)

    def folder(self, run_dir: Path) -> Path:
        return run_dir / self.name


def _flag_list(name: str, values: list[str]) -> list[str]:
    return [name, ",".join(values)] if values else []


def _data_dir(config: LoopConfig) -> list[str]:
    return ["--data-dir", config.data_dir] if config.data_dir else []


def _engine(config: LoopConfig) -> list[str]:
    return ["--engine", config.engine, *(["--dtype", config.dtype] if config.dtype else [])]


def policy_stage(config: LoopConfig, iteration: int) -> str | None:
    """The stage whose model is policy ``iteration`` (None: the base model)."""
    if iteration == 0:
        return None
    previous = iteration - 1
    if previous >= 1 and config.grpo.enabled:
        return f"it{previous}/grpo"
    return f"it{previous}/sft"


def model_path(config: LoopConfig, run_dir: Path, stage: str | None) -> str:
    return config.base if stage is None else str(run_dir / stage)


def rm_path(run_dir: Path, iteration: int) -> str | None:
    """RM_k's directory, or None when its stage found nothing to train on."""
    folder = run_dir / f"it{iteration}" / "rm"
    return None if (folder / RM_SKIPPED).is_file() else str(folder)


def bench_available(config: LoopConfig, bench: str) -> bool:
    """Whether a benchmark (held-out or training) can be read here: its folder under the data folder,
    or its file."""
    from mathforge.data import default_data_dir
    from mathforge.data.sources import is_file_spec

    if bench == "generated":
        return True
    if is_file_spec(bench):
        return Path(bench).is_file()
    base = Path(config.data_dir) if config.data_dir else default_data_dir()
    return (base / bench).is_dir()


def final_model_stage(config: LoopConfig) -> str:
    """The stage whose model the loop ends with."""
    if config.iterations == 0:
        return "it0/sft"
    return f"it{config.iterations}/{'grpo' if config.grpo.enabled else 'sft'}"


def eval_sets(config: LoopConfig, model_stage: str | None) -> list[EvalSet]:
    """The held-out sets evaluated after ``model_stage`` (None: the base model)."""
    ends = model_stage is None or model_stage == final_model_stage(config)
    return [item for item in config.eval.sets if item.at == "every" or ends]


def eval_commands(config: LoopConfig, model: str, folder: Path, model_stage: str | None) -> list[Command]:
    """Greedy evaluation of ``model`` on its held-out sets in each of their modes."""
    commands = []
    for item in eval_sets(config, model_stage):
        if item.optional and not all(bench_available(config, bench) for bench in item.benches):
            continue
        for mode in item.modes:
            out = folder / f"{item.name}-{mode}"
            argv = ["eval", "--model", model, *_engine(config), "--mode", mode]
            argv += [*item.problems().options(), "--max-new-tokens", str(item.max_new_tokens)]
            argv += ["--chunk-size", str(config.eval.chunk_size), *_data_dir(config), "--out", str(out)]
            commands.append(Command(f"{item.name}-{mode}", argv, str(out)))
    return commands


def held_out_questions(config: LoopConfig) -> set[str]:
    """The held-out sets' questions, normalised: a training problem equal to one is dropped.

    The n-gram and LCS decontamination inside every command compares against the benchmarks of
    the data folder; the held-out generated problems are not there, and templated families share
    most words between instances, so for them an exact match is the rule that fits.
    """
    from mathforge.sampling.config import ProblemSource
    from mathforge.sampling.run import select_problems

    questions: set[str] = set()
    for item in config.eval.sets:
        benches = [bench for bench in item.benches if bench_available(config, bench)]
        if not benches:
            continue
        source = ProblemSource(
            benches=benches,
            limit=item.limit,
            data_dir=config.data_dir,
            split=item.split,
            gen_n=item.gen_n,
            gen_level=item.gen_level,
            gen_seed=item.gen_seed,
            gen_families=item.gen_families,
        )
        for problems in select_problems(source).values():
            questions.update(normalise_question(problem.question) for problem in problems)
    return questions


def normalise_question(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def write_problem_file(config: LoopConfig, spec: Problems, out: Path) -> dict[str, int]:
    """The training problems of ``spec`` as one JSONL file, held-out questions left out."""
    from mathforge.data import write_problems
    from mathforge.sampling.config import ProblemSource
    from mathforge.sampling.run import select_problems

    source = ProblemSource(**spec.model_dump(), data_dir=config.data_dir)
    held_out = held_out_questions(config)
    problems = [problem for items in select_problems(source).values() for problem in items]
    kept = [problem for problem in problems if normalise_question(problem.question) not in held_out]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_problems(kept, out)
    return {"problems": len(problems), "held_out_duplicates": len(problems) - len(kept)}


def merge_records(files: list[Path], out: Path, held_out: set[str]) -> dict[str, int]:
    """SFT record files into one, records whose question is a held-out question left out."""
    kept = dropped = 0
    with out.open("w", encoding="utf-8") as handle:
        for path in files:
            if not path.is_file():
                continue
            for _, line, record in read_jsonl_raw(path):
                if isinstance(record, InputError):
                    raise record
                question, _ = record_question(record)
                if normalise_question(question or "") in held_out:
                    dropped += 1
                    continue
                handle.write(line.rstrip("\n") + "\n")
                kept += 1
    return {"records": kept, "held_out_duplicates": dropped}


def _read_summary(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def build_stages(config: LoopConfig, run_dir: Path) -> list[Stage]:
    """Every stage of ``config`` in the order it runs."""
    stages = [_eval_stage(config, run_dir, None)]
    stages += _iteration_zero(config, run_dir)
    for iteration in range(1, config.iterations + 1):
        stages += _iteration(config, run_dir, iteration)
    return stages


def _eval_stage(config: LoopConfig, run_dir: Path, model_stage: str | None) -> Stage:
    # Whether an optional set's data is here is part of what the stage evaluates.
    sets = [
        item.model_dump() | {"available": all(bench_available(config, bench) for bench in item.benches)}
        for item in eval_sets(config, model_stage)
    ]
    settings = {"sets": sets, "chunk_size": config.eval.chunk_size, "engine": config.engine}
    settings |= {"dtype": config.dtype, "data_dir": config.data_dir}
    if model_stage is None:
        settings["base"] = config.base
    folder = f"{BASE}/eval" if model_stage is None else f"{model_stage}{EVAL_SUFFIX}"
    model = model_path(config, run_dir, model_stage)
    return Stage(
        name=folder,
        kind="eval",
        inputs=[model_stage] if model_stage else [],
        settings=settings,
        build=lambda folder_path: eval_commands(config, model, folder_path, model_stage),
    )


def _iteration_zero(config: LoopConfig, run_dir: Path) -> list[Stage]:
    sources = [
        source.model_dump()
        | {"available": source.source == "generated" or bench_available(config, source.source)}
        for source in config.bootstrap
    ]

    def build_bootstrap(folder: Path) -> list[Command]:
        commands = []
        for index, source in enumerate(config.bootstrap):
            if source.optional and source.source == "gsm8k" and not bench_available(config, "gsm8k"):
                continue
            for fmt in source.formats:
                name = (
                    Path(source.source).stem if source.source not in ("gsm8k", "generated") else source.source
                )
                out = folder / f"{index}-{name}-{fmt}.jsonl"
                argv = [
                    "data",
                    "bootstrap",
                    "--source",
                    source.source,
                    "--format",
                    fmt,
                    "--split",
                    source.split,
                ]
                argv += ["--limit", str(source.limit)] if source.limit else []
                if source.source == "generated":
                    argv += ["--gen-level", str(source.gen_level), "--gen-seed", str(source.gen_seed)]
                    argv += _flag_list("--gen-families", source.gen_families)
                argv += [*_data_dir(config), "--out", str(out)]
                commands.append(Command(f"{index}-{name}-{fmt}", argv, str(out), overwrite_flag=None))
        return commands

    def finish_bootstrap(folder: Path) -> dict[str, Any]:
        files = [Path(command.output) for command in build_bootstrap(folder)]  # not stale ones
        merged = merge_records(files, folder / TRAIN_FILE, held_out_questions(config))
        merged["sources"] = {
            path.stem: _read_summary(path.with_name(f"{path.stem}.summary.json")) for path in files
        }
        return merged

    bootstrap = Stage(
        name="it0/bootstrap",
        kind="data",
        inputs=[],
        settings={"bootstrap": sources, "data_dir": config.data_dir, "eval_sets": _eval_identity(config)},
        build=build_bootstrap,
        finish=finish_bootstrap,
    )
    sft = _sft_stage(config, run_dir, 0, [run_dir / "it0/bootstrap" / TRAIN_FILE], ["it0/bootstrap"])
    return [bootstrap, sft, _eval_stage(config, run_dir, "it0/sft")]


def _eval_identity(config: LoopConfig) -> list[dict[str, Any]]:
    """What decides the held-out questions training data is checked against."""
    return [item.model_dump(exclude={"modes", "max_new_tokens"}) for item in config.eval.sets]


def _sft_stage(
    config: LoopConfig,
    run_dir: Path,
    iteration: int,
    data: list[Path],
    inputs: list[str],
    prepare: Callable[[Path], None] | None = None,
) -> Stage:
    sft = config.sft
    start = None if sft.init == "base" or iteration == 0 else policy_stage(config, iteration)
    base = model_path(config, run_dir, start)
    lr = sft.lr if iteration == 0 or sft.next_lr is None else sft.next_lr

    def build(folder: Path) -> list[Command]:
        # A rejection-sampling round that kept nothing leaves an empty file: train on the others;
        # no record at all is an error. Before the inputs exist (`loop plan`) the command names them all.
        files = [path for path in data if _count_lines(path) > 0]
        if not files and any(path.is_file() for path in data):
            raise MathforgeError(
                f"it{iteration}/sft: nothing to train on ({', '.join(str(path) for path in data)} "
                "are empty: the rejection-sampling round kept no response); raise rs.n or rs.problems, "
                "or set sft.gold_replay: null to train on all the gold data, then rerun"
            )
        files = files or data
        argv = ["sft", "--data", ",".join(str(path) for path in files), "--base", base, "--out", str(folder)]
        argv += ["--epochs", str(sft.epochs), "--max-steps", str(sft.max_steps), "--lr", str(lr)]
        argv += ["--warmup", str(sft.warmup), "--batch-size", str(sft.batch_size)]
        argv += ["--grad-accum", str(sft.grad_accum), "--max-length", str(sft.max_length)]
        argv += ["--packing" if sft.packing else "--no-packing", "--eval-examples", str(sft.eval_examples)]
        argv += ["--save-steps", str(sft.save_steps), "--seed", str(config.seed), *_data_dir(config)]
        return [Command("sft", argv, str(folder), launcher=config.train_launcher)]

    return Stage(
        name=f"it{iteration}/sft",
        kind="sft",
        inputs=[*inputs, *([start] if start else [])],
        settings={
            "sft": sft.model_dump(exclude=LATER_ITERATION_SFT_KEYS if iteration == 0 else None),
            "base": base if start is None else None,
            "seed": config.seed,
        },
        build=build,
        prepare=prepare,
        model=True,
    )


def _gold_replay_writer(
    sampled: Path, gold: Path, out: Path, per_record: int, seed: int
) -> Callable[[Path], None]:
    """Writes ``per_record`` gold records per rejection-sampled one, drawn seeded from the gold data."""

    def prepare(folder: Path) -> None:
        lines = [line.rstrip("\n") for _, line, _ in read_jsonl_raw(gold)]
        wanted = min(len(lines), per_record * _count_lines(sampled))
        chosen = random.Random(seed).sample(lines, wanted)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(line + "\n" for line in chosen), encoding="utf-8")

    return prepare


def _iteration(config: LoopConfig, run_dir: Path, k: int) -> list[Stage]:
    policy_name = policy_stage(config, k)
    policy = model_path(config, run_dir, policy_name)
    policy_inputs = [policy_name] if policy_name else []
    prefix = f"it{k}"
    stages: list[Stage] = []
    seed = config.seed + k

    # (a) RM data from policy k, then RM_k (listwise loss), started from policy k.
    rm = config.rm

    def build_rm_data(folder: Path) -> list[Command]:
        problems = folder / PROBLEMS_FILE
        argv = [
            "rm",
            "data",
            "--model",
            policy,
            *_engine(config),
            "--bench",
            str(problems),
            "--split",
            "train",
        ]
        argv += ["--mode", rm.mode, "--n", str(rm.n), "--temperature", str(rm.temperature)]
        argv += ["--top-p", str(rm.top_p), "--max-new-tokens", str(rm.max_new_tokens), "--seed", str(seed)]
        argv += ["--chunk-size", str(config.eval.chunk_size), *_data_dir(config)]
        argv += ["--out", str(folder / "rm_data.jsonl")]
        return [Command("rm-data", argv, str(folder / "rm_data.samples"))]

    stages.append(
        Stage(
            name=f"{prefix}/rm-data",
            kind="rm-data",
            inputs=policy_inputs,
            settings={"rm": rm.model_dump(), "seed": seed, "eval_sets": _eval_identity(config)},
            build=build_rm_data,
            prepare=_problem_writer(config, rm.problems),
            finish=lambda folder: _read_summary(folder / "rm_data.summary.json"),
        )
    )

    rm_data = run_dir / prefix / "rm-data" / "rm_data.jsonl"

    def decide_rm(folder: Path) -> None:
        """Too few problems with a correct and a wrong response: no RM this iteration (noted)."""
        (folder / RM_SKIPPED).unlink(missing_ok=True)
        pairable = _count_lines(rm_data)
        if pairable < 2:
            reason = (
                f"{pairable} problem(s) with both a correct and a wrong response; 2 needed to train an RM"
            )
            (folder / RM_SKIPPED).write_text(json.dumps({"reason": reason}) + "\n", encoding="utf-8")

    def build_rm(folder: Path) -> list[Command]:
        if (folder / RM_SKIPPED).is_file():
            return []
        data = rm_data
        argv = ["rm", "train", "--data", str(data), "--base", policy, "--out", str(folder)]
        argv += ["--epochs", str(rm.epochs), "--max-steps", str(rm.max_steps), "--lr", str(rm.lr)]
        argv += ["--grad-accum", str(rm.grad_accum), "--max-length", str(rm.max_length)]
        argv += ["--train-layers", str(rm.train_layers)] if rm.train_layers else []
        argv += ["--save-steps", str(rm.save_steps), "--seed", str(seed)]
        return [Command("rm", argv, str(folder), launcher=config.train_launcher)]

    def finish_rm(folder: Path) -> dict[str, Any]:
        skipped = folder / RM_SKIPPED
        return (
            _read_summary(skipped) | {"skipped": True}
            if skipped.is_file()
            else _read_summary(folder / "metrics.json")
        )

    stages.append(
        Stage(
            name=f"{prefix}/rm",
            kind="rm",
            inputs=[f"{prefix}/rm-data", *policy_inputs],
            settings={"rm": rm.model_dump(exclude={"problems"}), "seed": seed},
            build=build_rm,
            prepare=decide_rm,
            finish=finish_rm,
        )
    )

    sampled = config.eval.sampled
    if sampled is not None:
        stages.append(_rm_eval_stage(config, run_dir, k, policy, policy_inputs))

    # (b) rejection sampling with RM_k, then SFT of the next policy.
    rs = config.rs

    def build_rs(folder: Path) -> list[Command]:
        commands = []
        scorer = rm_path(run_dir, k) if rs.use_rm else None
        for mode in rs.modes:
            out = folder / f"{mode}.jsonl"
            argv = ["rs", "--model", policy, *_engine(config), "--bench", str(folder / PROBLEMS_FILE)]
            argv += ["--split", "train", "--mode", mode, "--n", str(rs.n), "--keep", str(rs.keep)]
            argv += ["--min-vote", str(rs.min_vote), "--temperature", str(rs.temperature)]
            argv += [
                "--top-p",
                str(rs.top_p),
                "--max-new-tokens",
                str(rs.max_new_tokens),
                "--seed",
                str(seed),
            ]
            argv += ["--chunk-size", str(config.eval.chunk_size), *_data_dir(config)]
            argv += [*(["--rm", scorer] if scorer else []), "--out", str(out)]
            commands.append(Command(f"rs-{mode}", argv, str(folder / f"{mode}.samples")))
        return commands

    def finish_rs(folder: Path) -> dict[str, Any]:
        files = [folder / f"{mode}.jsonl" for mode in rs.modes]
        merged = merge_records(files, folder / TRAIN_FILE, held_out_questions(config))
        merged["modes"] = {path.stem: _read_summary(folder / f"{path.stem}.summary.json") for path in files}
        return merged

    stages.append(
        Stage(
            name=f"{prefix}/rs",
            kind="rs",
            inputs=[f"{prefix}/rm", *policy_inputs],
            settings={"rs": rs.model_dump(), "seed": seed, "eval_sets": _eval_identity(config)},
            build=build_rs,
            prepare=_problem_writer(config, rs.problems),
            finish=finish_rs,
        )
    )
    sampled = run_dir / prefix / "rs" / TRAIN_FILE
    gold = run_dir / "it0/bootstrap" / TRAIN_FILE
    data = [sampled]
    inputs = [f"{prefix}/rs"]
    prepare = None
    if config.sft.mix_bootstrap:
        inputs.append("it0/bootstrap")
        if config.sft.gold_replay is None:
            data.append(gold)
        else:
            replay = run_dir / prefix / "sft" / GOLD_REPLAY_FILE
            data.append(replay)
            prepare = _gold_replay_writer(sampled, gold, replay, config.sft.gold_replay, seed)
    stages.append(_sft_stage(config, run_dir, k, data, inputs, prepare))
    stages.append(_eval_stage(config, run_dir, f"{prefix}/sft"))

    # (c) GRPO on the new SFT policy with the shaped reward from RM_k.
    if config.grpo.enabled:
        stages.append(_grpo_stage(config, run_dir, k))
        stages.append(_eval_stage(config, run_dir, f"{prefix}/grpo"))
    return stages


def _rm_eval_stage(config: LoopConfig, run_dir: Path, k: int, policy: str, policy_inputs: list[str]) -> Stage:
    sampled = config.eval.sampled
    assert sampled is not None
    item = next(item for item in config.eval.sets if item.name == sampled.set)

    def build(folder: Path) -> list[Command]:
        if item.optional and not all(bench_available(config, bench) for bench in item.benches):
            return []
        scorer = rm_path(run_dir, k)
        out = folder / f"{item.name}-{sampled.mode}"
        spec = item.problems().model_copy(update={"limit": sampled.limit or item.limit})
        argv = ["eval", "--model", policy, *_engine(config), "--mode", sampled.mode, "--n", str(sampled.n)]
        argv += [*spec.options(), "--max-new-tokens", str(item.max_new_tokens), "--seed", str(config.seed)]
        argv += ["--chunk-size", str(config.eval.chunk_size), *_data_dir(config)]
        argv += [*(["--rm", scorer] if scorer else []), "--out", str(out)]
        return [Command(f"{item.name}-{sampled.mode}", argv, str(out))]

    return Stage(
        name=f"it{k}/rm-eval",
        kind="rm-eval",
        inputs=[f"it{k}/rm", *policy_inputs],
        settings={"sampled": sampled.model_dump(), "set": item.model_dump(), "engine": config.engine},
        build=build,
    )


def _grpo_stage(config: LoopConfig, run_dir: Path, k: int) -> Stage:
    grpo = config.grpo
    prefix = f"it{k}"
    model = str(run_dir / prefix / "sft")

    def build(folder: Path) -> list[Command]:
        scorer = rm_path(run_dir, k) if grpo.use_rm else None
        argv = ["grpo", "--model", model, "--problems", str(folder / PROBLEMS_FILE), "--split", "train"]
        argv += ["--mode", grpo.mode, "--group", str(grpo.group)]
        argv += ["--problems-per-step", str(grpo.problems_per_step), "--steps", str(grpo.steps)]
        argv += ["--lr", str(grpo.lr), "--beta", str(grpo.beta), "--epsilon", str(grpo.epsilon)]
        argv += ["--loss", grpo.loss, "--temperature", str(grpo.temperature), "--top-p", str(grpo.top_p)]
        argv += ["--max-new-tokens", str(grpo.max_new_tokens), "--engine", config.engine]
        argv += ["--save-steps", str(grpo.save_steps), "--seed", str(config.seed + k), *_data_dir(config)]
        argv += [*(["--rm", scorer] if scorer else []), "--out", str(folder)]
        return [Command("grpo", argv, str(folder), launcher=config.train_launcher)]

    return Stage(
        name=f"{prefix}/grpo",
        kind="grpo",
        inputs=[f"{prefix}/sft", f"{prefix}/rm"],
        settings={"grpo": grpo.model_dump(), "seed": config.seed + k, "eval_sets": _eval_identity(config)},
        build=build,
        prepare=_problem_writer(config, grpo.problems),
        model=True,
    )


def _problem_writer(config: LoopConfig, spec: Problems) -> Callable[[Path], None]:
    """Writes a stage's training problems (held-out questions left out) before its commands run."""

    def prepare(folder: Path) -> None:
        counts = write_problem_file(config, spec, folder / PROBLEMS_FILE)
        (folder / "problems.summary.json").write_text(json.dumps(counts) + "\n", encoding="utf-8")

    return prepare


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    return sum(1 for _ in read_jsonl(path))
