"""Sampling: problems x prompts -> engine (-> sandbox) -> graded trajectories, chunked, seeded,
resumable into a run directory. Evaluation, reward-model data and the training stages sample
through this package and share its one config (:class:`SamplingConfig`)."""

from mathforge.sampling.config import ProblemSelection, ProblemSource, SamplingConfig, SamplingRunConfig
from mathforge.sampling.run import open_run, prepare, sample_run, select_problems
from mathforge.sampling.sampler import Sampler, Scorer, build_record, chunk_seed, exemplars, load_sampler

__all__ = [
    "ProblemSelection",
    "ProblemSource",
    "Sampler",
    "SamplingConfig",
    "SamplingRunConfig",
    "Scorer",
    "build_record",
    "chunk_seed",
    "exemplars",
    "load_sampler",
    "open_run",
    "prepare",
    "sample_run",
    "select_problems",
]
