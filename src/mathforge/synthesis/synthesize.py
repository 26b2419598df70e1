"""Problem synthesis: the model of an iteration writes new problems from seed problems, answers
each k times, and keeps those whose majority answer is shared widely enough (the pseudo-gold).

Candidates are made in chunks of ``chunk_size``, each chunk seeded only by the run seed and its
position, so a run that is killed and resumed writes exactly what an uninterrupted one would:

1. plan: a prompt kind (change the numbers, add a step, change the setting, combine two
   problems) and its seed problems, drawn at random;
2. write: one sampled reply per plan, parsed into a problem text (else ``unparsable``);
3. before paying for answers, drop candidates that overlap an evaluation benchmark
   (``contaminated``) or near-copy the seed problems they were written from (``duplicate``);
4. answer: k sampled solutions each through :class:`mathforge.sampling.Sampler` (TIR by default);
5. keep a candidate when its majority answer's share is at least ``min_vote`` (else
   ``low_vote``) and it is no near-copy of any seed or of a problem kept before (``duplicate``).

Every candidate goes with its verdict to the run directory's ``candidates.jsonl`` when its chunk
ends, and the output file is rewritten from it: a kill loses at most the chunk in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mathforge.console import stderr_console
from mathforge.errors import InputError
from mathforge.jsonl import JsonlWriter, read_jsonl_raw
from mathforge.records import Problem, ProblemRecord
from mathforge.runs import RunDirectory
from mathforge.sampling.config import SamplingConfig
from mathforge.sampling.sampler import Sampler, chunk_seed, load_sampler

KINDS = ("numbers", "step", "setting", "combine")
BENCH = "synthesized"  # benchmark label of candidates: plain math answer extraction
CANDIDATES_FILE = "candidates.jsonl"
PROMPTS_FILE = "synthesis.yaml"
VERDICTS = ("kept", "unparsable", "contaminated", "duplicate", "low_vote")
MIN_WORDS, MAX_WORDS = 6, 400


class SynthesisConfig(SamplingConfig):
    """Settings of ``mathforge data synthesize``: the sampling settings answer the candidates
    (``n`` is k, the votes per candidate); the ``write_*`` ones sample the problems themselves."""

    # Keys of config.yaml that may change between reruns: how many problems to keep, where the
    # inputs live (their contents are part of the identity through digests).
    FREE_KEYS: ClassVar[tuple[str, ...]] = ("n", "max_written", "seeds", "data_dir")

    seeds: str = Field(description="JSONL file of seed problems (a --field text, optional id).")
    count: int = Field(
        ge=1,
        description="Problems to keep (stops there, or at --max-written).",
        json_schema_extra={"flag": "--n"},
    )
    n: int = Field(
        8, ge=1, description="Sampled solutions per candidate (they vote).", json_schema_extra={"flag": "--k"}
    )
    mode: Literal["cot", "tir"] = Field(
        "tir", description="How candidates are answered: tir (sandbox) or cot."
    )
    min_vote: float = Field(
        0.5, ge=0.0, le=1.0, description="Keep when the majority answer has this share of the k."
    )
    seed_field: str = Field(
        "question", description="Seed field holding the problem text.", json_schema_extra={"flag": "--field"}
    )
    kinds: list[str] = Field(
        default_factory=lambda: list(KINDS),
        min_length=1,
        description="Comma-separated prompt kinds: numbers, step, setting, combine.",
    )
    write_temperature: float = Field(1.0, ge=0.0, description="Temperature when writing problems.")
    write_top_p: float = Field(0.95, gt=0.0, le=1.0, description="Top-p when writing problems.")
    write_max_tokens: int = Field(512, ge=1, description="Token budget of a written problem.")
    max_written: int | None = Field(
        None, ge=1, description="Stop after this many candidates (default 10 x --n)."
    )
    against: str = Field("all", description="Decontaminate against: 'all', benchmark names or JSONL files.")
    data_dir: str | None = Field(None, description="Benchmark folder; default $MATHFORGE_DATA_DIR or ./data.")
    dedup_threshold: float = Field(
        0.8, gt=0.0, le=1.0, description="Jaccard of word bigrams counted as a duplicate."
    )
    id_prefix: str = Field("synth", min_length=1, description="Ids of written problems: PREFIX-000123.")
    # synthesized problems are answered without few-shot exemplars
    shots: int | None = Field(None, json_schema_extra={"cli": False})

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown kind {', '.join(unknown)} (use {', '.join(KINDS)})")
        return kinds

    @property
    def limit(self) -> int:
        """The most candidates this run writes."""
        return self.max_written or 10 * self.count

    def run_config(self, seeds_sha256: str, benchmarks: dict[str, int]) -> dict[str, Any]:
        """``config.yaml``: the settings (keys as on the command line), the digests of the seeds
        and prompts, the benchmarks checked against, the device and dtype, and the environment."""
        from mathforge.runtime import environment

        settings = self.model_dump(mode="json")
        # named as on the command line: --n problems to keep, --k votes each
        settings = {{"n": "k", "count": "n"}.get(key, key): value for key, value in settings.items()}
        return {
            **settings,
            "seeds_sha256": seeds_sha256,
            "prompts_sha256": hashlib.sha256(_prompts_text().encode()).hexdigest(),
            "decontam_benchmarks": benchmarks,
            **self.runtime(),
            "environment": environment(),
        }


@dataclass(frozen=True)
class Seed:
    """A seed problem: its id (recorded as provenance) and text."""

    id: str
    question: str


def read_seeds(path: Path, field: str = "question") -> tuple[list[Seed], str]:
    """The seed problems of ``path`` and the file's sha256; a bad line, a missing or empty
    ``field`` or an empty file is one error naming the file, line and field."""
    from mathforge.data.decontam import record_id

    seeds = []
    for index, (number, _, record) in enumerate(read_jsonl_raw(path)):
        if isinstance(record, InputError):
            raise record
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            problem = "missing (set --field)" if value is None else "empty or not text"
            raise InputError(path, problem, number, field)
        key = record_id(record)
        seeds.append(Seed(f"{path.stem}/{index if key is None else key}", value.strip()))
    if not seeds:
        raise InputError(path, "no seed problems (empty file)")
    return seeds, hashlib.sha256(path.read_bytes()).hexdigest()


@cache
def _prompts_text() -> str:
    return resources.files("mathforge.prompts").joinpath(PROMPTS_FILE).read_text(encoding="utf-8")


def _prompts_path() -> Path:
    return Path(str(resources.files("mathforge.prompts").joinpath(PROMPTS_FILE)))


@cache
def kind_templates() -> dict[str, str]:
    """The instruction of each prompt kind, with ``{problem}`` (``{problem_a}``/``{problem_b}``) slots."""
    return dict(yaml.safe_load(_prompts_text())["kinds"])


@dataclass(frozen=True)
class Plan:
    """What one candidate is written from: its position, prompt kind and seed problems."""

    index: int
    kind: str
    seeds: tuple[Seed, ...]

    def instruction(self) -> str:
        template = kind_templates()[self.kind]
        if self.kind == "combine":
            first, second = self.seeds
            return template.replace("{problem_a}", first.question).replace("{problem_b}", second.question)
        return template.replace("{problem}", self.seeds[0].question)


def plan_chunk(config: SynthesisConfig, seeds: Sequence[Seed], chunk: int) -> list[Plan]:
    """The plans of chunk ``chunk``: a function of the run seed and the chunk's position only."""
    rng = random.Random(chunk_seed(config.seed, "synthesize/plan", chunk))
    plans = []
    for offset in range(config.chunk_size):
        kind = rng.choice(config.kinds)
        chosen = rng.sample(range(len(seeds)), 2) if kind == "combine" else [rng.randrange(len(seeds))]
        plans.append(Plan(chunk * config.chunk_size + offset, kind, tuple(seeds[i] for i in chosen)))
    return plans


_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_NEW_PROBLEM = re.compile(r"new\s+problem\b[^\n:]{0,30}:", re.I)
_PROBLEM = re.compile(r"^[\s#>*_]*problem\b[^\n:]{0,10}:", re.I | re.M)
_SOLUTION = re.compile(
    r"^[\s#>*_]*(?:solution|answer|final answer|step\s*1|explanation|hint|let'?s solve|to solve)\b"
    r"|^\s*(?:-{3,}|={3,})\s*$|^.*\\boxed",
    re.I | re.M,
)
_ASKS = re.compile(
    r"\?|\b(?:find|what|how|compute|calculate|determine|evaluate|prove|show|solve|simplify|express|"
    r"which|give|write|list|count)\b",
    re.I,
)


def parse_problem(reply: str, finish_reason: str = "stop") -> tuple[str | None, str]:
    """The problem text in a model's reply, or None and why not (``empty``, ``truncated``,
    ``too_short``, ``too_long``, ``repetitive``, ``no_question``).

    Takes the text after the last "New problem:" (else "Problem:") line, up to any solution,
    answer or ``\\boxed``; a reply cut by the token budget before any solution began is
    ``truncated``, since its problem may be cut too.
    """
    text = _THINK.sub("", reply)
    markers = list(_NEW_PROBLEM.finditer(text)) or list(_PROBLEM.finditer(text))
    if markers:
        text = text[markers[-1].end() :]
    solution = _SOLUTION.search(text)
    if solution is not None:
        text = text[: solution.start()]
    elif finish_reason == "length":
        return None, "truncated"
    lines = [
        line.strip().strip("*_").strip() for line in text.splitlines() if not line.strip().startswith("```")
    ]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip().strip("\"'“”").strip()
    words = text.split()
    if not words:
        return None, "empty"
    if len(words) < MIN_WORDS:
        return None, "too_short"
    if len(words) > MAX_WORDS:
        return None, "too_long"
    sentences = Counter(part.strip().lower() for part in re.split(r"[.?!\n]+", text) if part.strip())
    if max(sentences.values()) >= 3 or (len(words) >= 30 and len(set(words)) < 0.3 * len(words)):
        return None, "repetitive"
    if not _ASKS.search(text):
        return None, "no_question"
    return text, ""


class Candidate(BaseModel):
    """One written problem and its verdict: a line of ``candidates.jsonl``.

    ``detail`` says why it was dropped (the parse failure; ``benchmark:item (rule)``; the id it
    duplicates); ``answer`` is the majority answer and ``vote_share`` its share of ``answers``.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    index: int
    chunk: int
    kind: str
    seed_ids: list[str]
    reply: str
    finish_reason: str
    question: str | None = None
    verdict: Literal["kept", "unparsable", "contaminated", "duplicate", "low_vote"]
    detail: str = ""
    answer: str | None = None
    vote_share: float | None = None
    answers: list[str] = Field(default_factory=list)

    def output_line(self, config: SynthesisConfig) -> dict[str, Any]:
        """The kept problem as written to the output: loads back as a problem, with provenance."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "vote_share": self.vote_share,
            "k": config.n,
            "model": config.model,
            "mode": config.mode,
            "kind": self.kind,
            "seed_ids": self.seed_ids,
        }


def vote(record: ProblemRecord) -> tuple[str | None, float]:
    """The majority answer among a candidate's samples and its share of all of them (empty
    answers count as votes for nothing)."""
    from mathforge.metrics import majority_index

    groups = record.groups
    index = majority_index(groups)
    if index is None:
        return None, 0.0
    return record.samples[index].answer, round(groups.count(groups[index]) / len(groups), 4)


@dataclass
class SynthesisSummary:
    """What a run wrote and why candidates were dropped (``OUT stem + .summary.json``)."""

    written: int
    kept: int
    in_output: int
    dropped: dict[str, int]
    unparsable_by: dict[str, int] = field(default_factory=dict)
    contaminated_by: dict[str, int] = field(default_factory=dict)
    duplicate_of: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    mean_vote_share: float | None = None
    benchmarks: dict[str, int] = field(default_factory=dict)
    out: str = ""
    run_dir: str = ""
    seconds: float = 0.0


class _Ledger:
    """``candidates.jsonl``: candidates of finished chunks; a torn or unfinished chunk is dropped."""

    def __init__(self, path: Path, chunk_size: int) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.candidates: list[Candidate] = []
        self._writer: JsonlWriter | None = None

    def load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        torn = None if not data or data.endswith(b"\n") else data.count(b"\n") + 1
        by_chunk: dict[int, list[Candidate]] = {}
        for number, _, obj in read_jsonl_raw(self.path):
            if number == torn:
                continue
            if isinstance(obj, InputError):
                raise obj
            try:
                candidate = Candidate.model_validate(obj)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"])
                raise InputError(self.path, error["msg"], number, where) from None
            by_chunk.setdefault(candidate.chunk, []).append(candidate)
        chunk = 0
        while len({c.index for c in by_chunk.get(chunk, [])}) == self.chunk_size:
            self.candidates.extend(
                sorted({c.index: c for c in by_chunk[chunk]}.values(), key=lambda c: c.index)
            )
            chunk += 1
        if len(self.candidates) != sum(len(items) for items in by_chunk.values()) or torn:
            self._rewrite()  # what follows the finished chunks is redone, identically

    def _rewrite(self) -> None:
        partial = self.path.with_name(f".{self.path.name}.partial")
        with partial.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(c.model_dump(), ensure_ascii=False) + "\n" for c in self.candidates)
        os.replace(partial, self.path)

    @property
    def chunks(self) -> int:
        return len(self.candidates) // self.chunk_size

    def append(self, candidates: Sequence[Candidate]) -> None:
        if self._writer is None:
            self._writer = JsonlWriter(self.path, mode="a")
        for candidate in candidates:
            self._writer.write(candidate.model_dump())
        self.candidates.extend(candidates)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def default_run_dir(out: str | Path) -> Path:
    """``synth.jsonl`` -> ``synth.synth/``: the run's config and every candidate with its verdict."""
    out = Path(out)
    return out.with_name(f"{out.stem}.synth")


class Synthesizer:
    """One synthesis run: seeds, decontamination index and dedup index, writing into a run directory."""

    def __init__(
        self,
        config: SynthesisConfig,
        out: str | Path,
        *,
        run_dir: str | Path | None = None,
        overwrite: bool = False,
        console: Console | None = None,
        sampler: Callable[[SynthesisConfig], Sampler] | None = None,
    ) -> None:
        from mathforge.data.decontam import Decontaminator
        from mathforge.data.dedup import Deduplicator

        self.config = config.resolved()
        self.out = Path(out)
        self.console = console or stderr_console()
        self._make_sampler = sampler
        seeds_path = Path(config.seeds)
        self.seeds, digest = read_seeds(seeds_path, config.seed_field)
        if "combine" in config.kinds and len(self.seeds) < 2:
            raise InputError(seeds_path, "the 'combine' kind needs two seed problems (or set --kinds)")
        self.checker = Decontaminator.from_benchmarks(config.against, config.data_dir)
        self.run = RunDirectory(run_dir if run_dir is not None else default_run_dir(out))
        record = self.config.run_config(digest, self.checker.benchmarks)
        self.run.check(record, SynthesisConfig.FREE_KEYS, overwrite)
        self.ledger = _Ledger(self.run.path / CANDIDATES_FILE, config.chunk_size)
        if not overwrite:
            self.ledger.load()
        if self._pending() and sampler is None and config.engine != "openai":
            from mathforge.models import resolve_model

            resolve_model(config.model)
        # only now, every setting checked, may an overwrite delete the old run's candidates
        self.run.open(record, SynthesisConfig.FREE_KEYS, overwrite=overwrite)
        if overwrite:
            self.ledger.path.unlink(missing_ok=True)
        self.index = Deduplicator(config.dedup_threshold)
        for seed in self.seeds:
            self.index.add(seed.id, seed.question)
        for candidate in self.ledger.candidates:
            if candidate.verdict == "kept":
                self.index.add(candidate.id, str(candidate.question))

    def kept(self) -> list[Candidate]:
        return [candidate for candidate in self.ledger.candidates if candidate.verdict == "kept"]

    def _pending(self) -> bool:
        return len(self.kept()) < self.config.count and len(self.ledger.candidates) < self.config.limit

    def run_all(self) -> SynthesisSummary:
        """Write chunks until ``count`` problems are kept or ``limit`` candidates written."""
        start = time.monotonic()
        if not self.checker.items:
            self.console.print(
                "decontamination: no benchmark test files found; nothing checked (pass --data-dir)"
            )
        else:
            names = ", ".join(self.checker.benchmarks)
            self.console.print(f"decontamination against {names}", highlight=False, soft_wrap=True)
        if self._pending():
            if self.ledger.candidates:
                self.console.print(
                    f"resuming {self.run.path}: {len(self.ledger.candidates)} candidates written, "
                    f"{len(self.kept())} kept",
                    highlight=False,
                    soft_wrap=True,
                )
            self.console.print(
                f"loading {self.config.model} ({self.config.engine}, {self.config.mode})", highlight=False
            )
            sampler = self._make_sampler(self.config) if self._make_sampler else load_sampler(self.config)
            try:
                self._loop(sampler)
            finally:
                self.ledger.close()
                sampler.close()
        self.write_output()
        summary = self.summary()
        summary.seconds = round(time.monotonic() - start, 3)
        _write_json(self.out.with_name(f"{self.out.stem}.summary.json"), asdict(summary))
        return summary

    def _loop(self, sampler: Sampler) -> None:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("kept, {task.fields[written]} written"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        log_lines = not self.console.is_terminal
        kept, start = len(self.kept()), time.monotonic()
        kept_at_start = kept
        with Progress(*columns, console=self.console, disable=log_lines) as progress:
            task = progress.add_task(
                "synthesize", total=self.config.count, completed=kept, written=len(self.ledger.candidates)
            )
            while self._pending():
                chunk = self.ledger.chunks
                if log_lines:
                    self.console.print(
                        f"chunk {chunk}: writing {self.config.chunk_size} problems", highlight=False
                    )
                candidates = self.chunk(sampler, chunk, log_lines)
                self.ledger.append(candidates)
                self.write_output()
                new = sum(candidate.verdict == "kept" for candidate in candidates)
                kept += new
                written = len(self.ledger.candidates)
                progress.update(task, completed=min(kept, self.config.count), written=written)
                if log_lines:
                    elapsed = time.monotonic() - start
                    rate = (kept - kept_at_start) / elapsed if elapsed else 0.0
                    eta = (
                        _clock((self.config.count - kept) / rate)
                        if rate and kept < self.config.count
                        else "-"
                    )
                    shown = f"{min(kept, self.config.count)}/{self.config.count}"
                    self.console.print(
                        f"chunk {chunk}: {written} written, {shown} kept, "
                        f"{_clock(elapsed)} elapsed, eta {eta}",
                        highlight=False,
                        soft_wrap=True,
                    )

    def chunk(self, sampler: Sampler, chunk: int, log: bool = False) -> list[Candidate]:
        """Write, filter and answer the candidates of chunk ``chunk``; each with its verdict
        (``log``: say when answering starts, for logs that show no live progress)."""
        from mathforge.engines import SamplingParams
        from mathforge.prompts import render_prompt
        from mathforge.solve import solve_prompts

        config = self.config
        plans = plan_chunk(config, self.seeds, chunk)
        prompts = [
            render_prompt(plan.instruction(), sampler.engine.tokenizer, _prompts_path()) for plan in plans
        ]
        params = SamplingParams(
            temperature=config.write_temperature,
            top_p=config.write_top_p,
            max_new_tokens=config.write_max_tokens,
            seed=chunk_seed(config.seed, "synthesize/write", chunk),
        )
        replies = [group[0] for group in solve_prompts(prompts, sampler.engine, "cot", 1, params)]
        candidates = []
        for plan, reply in zip(plans, replies, strict=True):
            question, reason = parse_problem(reply.response, str(reply.finish_reason))
            candidate = Candidate(
                id=f"{config.id_prefix}-{plan.index:06d}",
                index=plan.index,
                chunk=chunk,
                kind=plan.kind,
                seed_ids=[seed.id for seed in plan.seeds],
                reply=reply.response,
                finish_reason=str(reply.finish_reason),
                question=question,
                verdict="unparsable" if question is None else "kept",
                detail=reason,
            )
            if question is not None:
                self._screen(candidate, plan)
            candidates.append(candidate)
        alive = [candidate for candidate in candidates if candidate.verdict == "kept"]
        if alive:
            if log:
                self.console.print(
                    f"chunk {chunk}: answering {len(alive)} candidates, k={config.n} ({config.mode})",
                    highlight=False,
                )
            problems = [Problem(c.id, BENCH, str(c.question), "") for c in alive]
            records = sampler.run(problems, BENCH, chunk_seed(config.seed, "synthesize/answer", chunk))
            for candidate, record in zip(alive, records, strict=True):
                candidate.answer, candidate.vote_share = vote(record)
                candidate.answers = [sample.answer for sample in record.samples]
                if candidate.answer is None or candidate.vote_share < config.min_vote:
                    candidate.verdict, candidate.detail = "low_vote", f"share {candidate.vote_share}"
                    continue
                duplicate = self.index.add(candidate.id, str(candidate.question))
                if duplicate is not None:
                    candidate.verdict = "duplicate"
                    candidate.detail = f"{duplicate.of} ({duplicate.rule} {duplicate.score})"
        return candidates

    def _screen(self, candidate: Candidate, plan: Plan) -> None:
        """Drop, before answering, a candidate overlapping a benchmark or near-copying its seeds."""
        from mathforge.data.decontam import normalize_words
        from mathforge.data.dedup import shingles

        question = str(candidate.question)
        match = self.checker.check(question)
        if match is not None:
            candidate.verdict = "contaminated"
            candidate.detail = f"{match.benchmark}:{match.match_id} ({match.rule} {match.score})"
            return
        grams = shingles(normalize_words(question))
        for seed in plan.seeds:
            other = shingles(normalize_words(seed.question))
            score = len(grams & other) / len(grams | other) if grams | other else 1.0
            if score >= self.config.dedup_threshold:
                candidate.verdict, candidate.detail = "duplicate", f"{seed.id} (seed {round(score, 4)})"
                return

    def write_output(self) -> None:
        """Rewrite the output file: the first ``count`` kept problems, replaced atomically."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        partial = self.out.with_name(f".{self.out.name}.partial")
        with partial.open("w", encoding="utf-8") as handle:
            for candidate in self.kept()[: self.config.count]:
                handle.write(json.dumps(candidate.output_line(self.config), ensure_ascii=False) + "\n")
        os.replace(partial, self.out)

    def summary(self) -> SynthesisSummary:
        candidates = self.ledger.candidates
        verdicts = Counter(candidate.verdict for candidate in candidates)
        kept = self.kept()
        seed_ids = {seed.id for seed in self.seeds}
        by_kind: dict[str, dict[str, int]] = {}
        for candidate in candidates:
            counts = by_kind.setdefault(candidate.kind, {"written": 0, "kept": 0})
            counts["written"] += 1
            counts["kept"] += candidate.verdict == "kept"
        duplicates = [c.detail.split(" ", 1)[0] for c in candidates if c.verdict == "duplicate"]
        return SynthesisSummary(
            written=len(candidates),
            kept=len(kept),
            in_output=min(len(kept), self.config.count),
            dropped={verdict: verdicts[verdict] for verdict in VERDICTS[1:]},
            unparsable_by=dict(Counter(c.detail for c in candidates if c.verdict == "unparsable")),
            contaminated_by=dict(
                Counter(c.detail.split(":", 1)[0] for c in candidates if c.verdict == "contaminated")
            ),
            duplicate_of={
                "seed": sum(of in seed_ids for of in duplicates),
                "synthesized": sum(of not in seed_ids for of in duplicates),
            },
            by_kind=by_kind,
            mean_vote_share=round(sum(float(c.vote_share or 0) for c in kept) / len(kept), 4)
            if kept
            else None,
            benchmarks=self.checker.benchmarks,
            out=str(self.out),
            run_dir=str(self.run.path),
        )


def synthesize(
    config: SynthesisConfig,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    sampler: Callable[[SynthesisConfig], Sampler] | None = None,
) -> SynthesisSummary:
    """Synthesize ``config.count`` problems into ``out`` (resuming the run in ``run_dir``).

    ``sampler`` builds the model side instead of loading ``config.model`` (tests pass a scripted
    engine; a trainer passes its policy).
    """
    synthesizer = Synthesizer(
        config, out, run_dir=run_dir, overwrite=overwrite, console=console, sampler=sampler
    )
    return synthesizer.run_all()


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
