"""Problems in, graded records out: prompt rendering, the engine (and TIR sandbox), grading, voting.

A :class:`Sampler` is the model side of every sampling stage. ``load_sampler`` builds one from a
config; a caller holding a model in memory (a policy being trained, a test's scripted engine)
constructs ``Sampler(config, engine, sandbox)`` itself.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mathforge.records import Execution, Problem, ProblemRecord, Provenance, SampleRecord, Segment
from mathforge.sampling.config import SamplingConfig


class Scorer(Protocol):
    """A reward model as sampling uses it (``mathforge.reward.RewardModel`` fits)."""

    def score(self, prompts: list[str], responses: list[str]) -> list[float]: ...


def exemplars(problem: Problem, shots: int | None) -> list[tuple[str, str]]:
    """The few-shot examples put before ``problem``: its protocol's, or ``shots`` when given."""
    from mathforge.prompts import few_shot_examples

    count = problem.shots if shots is None else shots
    return few_shot_examples(problem.benchmark, k=count) if count else []


def chunk_seed(seed: int, bench: str, chunk_index: int) -> int:
    """The sampling seed of one chunk: independent of which other chunks ran before it."""
    return (seed * 1_000_003 + zlib.crc32(f"{bench}/{chunk_index}".encode())) % 2**31


@dataclass
class Sampler:
    """An engine (and for TIR a sandbox, optionally a reward model) sampling under one config."""

    config: SamplingConfig
    engine: Any
    sandbox: Any = None
    scorer: Scorer | None = None

    def prompts(self, problems: Sequence[Problem]) -> list[str]:
        from mathforge.prompts import render_prompt

        return [
            render_prompt(
                problem.question,
                self.engine.tokenizer,
                template=self.config.mode,
                few_shot=exemplars(problem, self.config.shots),
            )
            for problem in problems
        ]

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()

    def run(self, problems: Sequence[Problem], bench: str, seed: int) -> list[ProblemRecord]:
        """Sample, grade and (with a scorer) score ``config.n`` responses for each problem."""
        from mathforge.engines import SamplingParams
        from mathforge.solve import solve_prompts

        config = self.config.resolved()
        start = time.perf_counter()
        prompts = self.prompts(problems)
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            seed=seed,
        )
        trajectories = solve_prompts(
            prompts,
            self.engine,
            mode=config.mode,
            n=config.n,
            params=params,
            sandbox=self.sandbox,
            max_calls=config.max_calls,
            dataset=bench,
        )
        provenance = Provenance(
            model=config.model,
            mode=config.mode,
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            seed=seed,
        )
        records = [
            build_record(problem, prompt, group, bench, provenance)
            for problem, prompt, group in zip(problems, prompts, trajectories, strict=True)
        ]
        if self.scorer is not None:
            flat = [(record.prompt, sample) for record in records for sample in record.samples]
            scores = self.scorer.score(
                [prompt for prompt, _ in flat], [sample.response for _, sample in flat]
            )
            for (_, sample), score in zip(flat, scores, strict=True):
                sample.rm_score = float(score)
        seconds = (time.perf_counter() - start) / max(len(records), 1)
        for record in records:
            record.seconds = seconds
        return records


def build_record(
    problem: Problem,
    prompt: str,
    trajectories: Sequence[Any],
    bench: str,
    provenance: Provenance | None = None,
) -> ProblemRecord:
    """Grade one problem's trajectories and group their answers for majority voting.

    Each response goes through :func:`mathforge.answers.grade` (the one grader every stage
    uses), and the answer it extracted is the one recorded, voted on and shown in reports. The
    trajectory's token ids, segments and (when the engine gave them) log-probabilities are kept.
    """
    from mathforge.answers import grade, is_equiv
    from mathforge.metrics import group_answers

    verdicts = [grade(trajectory.response, problem.gold, bench) for trajectory in trajectories]
    answers = [verdict.pred or "" for verdict in verdicts]
    groups = group_answers(answers, equiv=is_equiv)
    samples = []
    for trajectory, verdict, answer, group in zip(trajectories, verdicts, answers, groups, strict=True):
        data = trajectory.to_dict()
        samples.append(
            SampleRecord(
                response=trajectory.response,
                answer=answer,
                correct=verdict.correct,
                reason=verdict.reason,
                group=group,
                finish_reason=str(trajectory.finish_reason),
                completion_tokens=int(trajectory.completion_tokens),
                executions=[Execution.model_validate(call) for call in data["executions"]],
                token_ids=data["token_ids"],
                segments=[Segment.model_validate(segment) for segment in data["segments"]],
                logprobs=data.get("logprobs"),
            )
        )
    return ProblemRecord(
        id=problem.id,
        benchmark=problem.benchmark,
        question=problem.question,
        gold=problem.gold,
        meta=problem.meta,
        prompt=prompt,
        prompt_tokens=int(trajectories[0].prompt_tokens) if trajectories else 0,
        samples=samples,
        provenance=provenance,
    )


def load_sampler(config: SamplingConfig, scorer: Scorer | None = None) -> Sampler:
    """The engine ``config`` names (and a sandbox for TIR), loaded."""
    from mathforge.engines import load_engine

    engine = load_engine(config.engine, config.model, **config.engine_arguments())
    sandbox = None
    if config.mode == "tir":
        from mathforge.sandbox import Sandbox

        sandbox = Sandbox()
    return Sampler(config, engine, sandbox, scorer)
