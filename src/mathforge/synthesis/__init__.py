"""Problem synthesis: the model of an iteration writes new problems from seed problems and keeps
those its own sampled solutions agree on (majority-vote pseudo-gold), decontaminated and deduplicated.

A package of its own: it builds on ``data`` (decontamination, dedup) and ``sampling``, which
must not import each other's consumers.
"""

from mathforge.synthesis.synthesize import (
    CANDIDATES_FILE,
    KINDS,
    Candidate,
    SynthesisConfig,
    SynthesisSummary,
    Synthesizer,
    default_run_dir,
    parse_problem,
    plan_chunk,
    read_seeds,
    synthesize,
)

__all__ = [
    "CANDIDATES_FILE",
    "KINDS",
    "Candidate",
    "SynthesisConfig",
    "SynthesisSummary",
    "Synthesizer",
    "default_run_dir",
    "parse_problem",
    "plan_chunk",
    "read_seeds",
    "synthesize",
]
