"""`mathforge data synthesize`: parsing, majority-vote keeping, decontamination, dedup, resume, identity."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from mathforge.data import load_problems_file
from mathforge.engines import Completion, SamplingParams
from mathforge.errors import MathforgeError
from mathforge.sampling import Sampler
from mathforge.synthesis import (
    CANDIDATES_FILE,
    Candidate,
    SynthesisConfig,
    SynthesisSummary,
    default_run_dir,
    parse_problem,
    plan_chunk,
    read_seeds,
    synthesize,
)

BENCH_QUESTION = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
    "for her friends every day with four. She sells the remainder at the farmers' market daily for $2 "
    "per fresh duck egg. How much in dollars does she make every day at the farmers' market?"
)
SEEDS = [
    {
        "id": "apples",
        "question": "Tom has 3 apples and buys 5 more at the market. How many apples does he have?",
    },
    {
        "id": "train",
        "question": "A train travels 60 km per hour for 2 hours. How far does it travel in total?",
    },
    {"id": "coins", "question": "Sara has 4 coins worth 25 cents each. How many cents does she have in all?"},
    {"id": "tiles", "question": "A floor is 6 m by 4 m. How many square tiles of side 1 m cover the floor?"},
    {"id": "ducks", "question": "A farmer has 12 hens that lay 2 eggs each per day. How many eggs per week?"},
    {"id": "copy", "question": "Ann reads 12 pages a day for 9 days straight. How many pages does she read?"},
    {"id": "junk", "question": "What is 17 more than the product of 6 and 8 when both are doubled first?"},
]
# What the scripted model writes from each seed, and the answers its k solutions give.
WRITTEN = {
    "apples": "Sure!\n\n**New problem:** Mia has 7 pears and buys 9 more. How many pears does she have?\n\n"
    "**Solution:** 7 + 9 = 16, so \\boxed{16}.",
    "train": "New problem:\nA bus drives 45 km per hour for 3 hours, then 20 km more. How far does it go?",
    "coins": "New Problem: Leo has 6 coins worth 10 cents each and finds 3 more such coins. "
    "How many cents does he have?",
    "tiles": "New problem: A garden is 8 m by 5 m. How many square slabs of side 1 m pave the garden?",
    "ducks": "New problem: " + BENCH_QUESTION.replace("16 eggs", "18 eggs"),
    "copy": "New problem: Ann reads 12 pages a day for 9 days straight. How many pages does she read?",
    "junk": "I am sorry, I cannot",
}
ANSWERS = {  # by a word of the written problem
    "pears": ["16", "16", "16", "16"],  # share 1.0
    "bus": ["155", "155", "155", "135"],  # share 0.75
    "Leo": ["90", "60", "30", "9"],  # share 0.25
    "garden": ["40", "40", "13", "14"],  # share 0.5
    "eggs": ["22", "22", "22", "22"],
    "Ann": ["108", "108", "108", "108"],
}


class ScriptedEngine:
    """Writes the problem scripted for the first seed its prompt quotes; answers a problem with the
    scripted answers (the i-th sample boxes the i-th). Outputs depend on the prompt only, like a
    seeded model. Raises KeyboardInterrupt on call ``interrupt_at`` (a kill mid-run)."""

    tokenizer = None

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at
        self.prompts: list[str] = []

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.prompts.extend(prompts)
        return [self._complete(prompt, params.n) for prompt in prompts]

    def _complete(self, prompt: str, n: int) -> list[Completion]:
        if "Write only the new problem" in prompt:
            first = min(
                (prompt.index(seed["question"]), seed["id"]) for seed in SEEDS if seed["question"] in prompt
            )
            return [Completion(WRITTEN[first[1]], [], "eos")] * n
        answers = next(values for word, values in ANSWERS.items() if word in prompt)
        return [
            Completion(f"So the answer is \\boxed{{{answers[i % len(answers)]}}}.", [], "eos")
            for i in range(n)
        ]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    seeds = _write(tmp_path / "seeds.jsonl", SEEDS)
    bench = _write(tmp_path / "bench.jsonl", [{"id": "0", "question": BENCH_QUESTION}])
    return seeds, bench


def _config(seeds: Path, bench: Path, **changes: object) -> SynthesisConfig:
    settings: dict[str, object] = {
        "model": "scripted",
        "seeds": str(seeds),
        "count": 50,
        "max_written": 24,
        "n": 4,
        "mode": "cot",
        "chunk_size": 8,
        "kinds": ["numbers", "step", "setting"],
        "against": str(bench),
    }
    settings.update(changes)
    return SynthesisConfig(**settings)  # type: ignore[arg-type]


def _run(config: SynthesisConfig, out: Path, engine: ScriptedEngine, **options: object) -> SynthesisSummary:
    return synthesize(config, out, sampler=lambda cfg: Sampler(cfg, engine), **options)  # type: ignore[arg-type]


def _candidates(out: Path) -> list[Candidate]:
    lines = (default_run_dir(out) / CANDIDATES_FILE).read_text(encoding="utf-8").splitlines()
    return [Candidate.model_validate_json(line) for line in lines]


def _share(word: str) -> float:
    answers = ANSWERS[word]
    return max(answers.count(answer) for answer in answers) / len(answers)


def test_parse_problem_takes_the_problem_and_drops_what_is_not_one() -> None:
    reply = "Here you go.\n\n### New Problem:\n**A box holds 4 red and 6 blue balls. How many balls?**\n\n"
    assert parse_problem(reply + "### Solution\n4 + 6 = \\boxed{10}") == (
        "A box holds 4 red and 6 blue balls. How many balls?",
        "",
    )
    assert parse_problem("<think>hmm</think>Problem: Find x if 2x + 3 = 11 and x is real.")[0] == (
        "Find x if 2x + 3 = 11 and x is real."
    )
    we_have = "We have 5 red cards and 3 blue cards.\nNote: no card is lost. How many cards are there?"
    assert parse_problem(f"New problem: {we_have}\n\nLet's solve it: 5 + 3 = 8") == (we_have, "")
    assert parse_problem("New problem: Find the sum of 2 and 3, then \\boxed{5}") == (None, "empty")
    assert parse_problem("New problem: Find x + 1.") == (None, "too_short")
    assert parse_problem("New problem:   \n\nSolution: 5") == (None, "empty")
    assert parse_problem("New problem: A shop sells pens for 3 dollars each and", "length") == (
        None,
        "truncated",
    )
    assert parse_problem("New problem: A shop sells pens. A shop sells pens. A shop sells pens. How many?")[
        1
    ] == ("repetitive")
    assert parse_problem("New problem: The shop sells seven pens and some pencils on Monday.") == (
        None,
        "no_question",
    )
    assert parse_problem(" ".join(["word"] * 20 + [f"w{i}" for i in range(400)]) + "?") == (None, "too_long")
    # the budget ran out in the solution: the problem itself is whole
    assert parse_problem("New problem: How many legs do 3 cats and 2 birds have?\nSolution: 3 * 4", "length")[
        0
    ]


@pytest.mark.parametrize("min_vote", [0.5, 0.6])
def test_majority_vote_keeps_and_drops_with_decontam_and_dedup(
    files: tuple[Path, Path], tmp_path: Path, min_vote: float
) -> None:
    seeds, bench = files
    out = tmp_path / "synth.jsonl"
    config = _config(seeds, bench, min_vote=min_vote)
    summary = _run(config, out, ScriptedEngine())

    word_of = {"apples": "pears", "train": "bus", "coins": "Leo", "tiles": "garden"}
    candidates = _candidates(out)
    assert [c.index for c in candidates] == list(range(24))
    kept_words: set[str] = set()
    for candidate in candidates:
        (seed_id,) = candidate.seed_ids
        seed = seed_id.split("/", 1)[1]
        if seed == "junk":
            expected = "unparsable"
        elif seed == "ducks":
            expected = "contaminated"  # a near-copy of the benchmark question
        elif seed == "copy":
            expected = "duplicate"  # the seed itself
        elif _share(word_of[seed]) < min_vote:
            expected = "low_vote"
        elif word_of[seed] in kept_words:
            expected = "duplicate"  # the same problem was kept before
        else:
            expected = "kept"
            kept_words.add(word_of[seed])
        assert candidate.verdict == expected, candidate
    verdicts = [c.verdict for c in candidates]
    for verdict in ("kept", "unparsable", "contaminated", "duplicate", "low_vote"):
        assert verdict in verdicts
    assert summary.written == 24 and summary.kept == verdicts.count("kept")
    assert summary.dropped == {
        v: verdicts.count(v) for v in ("unparsable", "contaminated", "duplicate", "low_vote")
    }
    assert summary.contaminated_by == {"bench": verdicts.count("contaminated")}
    assert summary.unparsable_by == {"too_short": verdicts.count("unparsable")}
    assert summary.duplicate_of["seed"] == sum(c.seed_ids == ["seeds/copy"] for c in candidates)
    assert kept_words == ({"pears", "bus", "garden"} if min_vote == 0.5 else {"pears", "bus"})

    # the output loads back as problems: majority answer as gold, provenance on every line
    problems = load_problems_file(out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(problems) == summary.kept == len(lines)
    by_word = {word: problem for problem in problems for word in kept_words if word in problem.question}
    assert by_word["pears"].gold == "16" and by_word["bus"].gold == "155"
    for line in lines:
        assert line["model"] == "scripted" and line["k"] == 4 and line["mode"] == "cot"
        assert line["kind"] in ("numbers", "step", "setting") and len(line["seed_ids"]) == 1
        assert line["vote_share"] >= min_vote and line["id"].startswith("synth-")
    bus = next(line for line in lines if "bus" in line["question"])
    assert bus["vote_share"] == 0.75
    assert json.loads(out.with_name("synth.summary.json").read_text())["kept"] == summary.kept


def test_stops_at_n_kept_and_extends_when_n_grows(files: tuple[Path, Path], tmp_path: Path) -> None:
    seeds, bench = files
    out = tmp_path / "synth.jsonl"
    engine = ScriptedEngine()
    first = _run(_config(seeds, bench, count=2, max_written=None), out, engine)
    assert first.in_output == 2 == len(out.read_text().splitlines())
    assert first.written % 8 == 0 and first.kept >= 2
    calls = engine.calls
    assert _run(_config(seeds, bench, count=2, max_written=None), out, engine).written == first.written
    assert engine.calls == calls  # nothing left to do: the model is not asked again
    more = _run(_config(seeds, bench, count=3, max_written=None), out, engine)
    assert more.in_output == 3 and more.written >= first.written


def test_combine_prompts_quote_two_distinct_seeds(files: tuple[Path, Path]) -> None:
    seeds, bench = files
    config = _config(seeds, bench, kinds=["combine"], chunk_size=16)
    plans = plan_chunk(config, read_seeds(seeds)[0], 3)
    assert [plan.index for plan in plans] == list(range(48, 64))
    for plan in plans:
        first, second = plan.seeds
        assert first.id != second.id
        assert first.question in plan.instruction() and second.question in plan.instruction()
    assert plan_chunk(config, read_seeds(seeds)[0], 3) == plans


def test_resume_after_an_interruption_gives_the_uninterrupted_output(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    seeds, bench = files
    whole = tmp_path / "whole" / "synth.jsonl"
    _run(_config(seeds, bench), whole, ScriptedEngine())

    out = tmp_path / "cut" / "synth.jsonl"
    with pytest.raises(KeyboardInterrupt):  # killed while answering the second chunk
        _run(_config(seeds, bench), out, ScriptedEngine(interrupt_at=4))
    assert len(_candidates(out)) == 8
    with (default_run_dir(out) / CANDIDATES_FILE).open("a") as handle:
        handle.write('{"id": "synth-000008", "index": 8, "ch')  # a line torn by the kill
    engine = ScriptedEngine()
    _run(_config(seeds, bench), out, engine)
    assert engine.calls == 4  # two chunks left, each written then answered
    assert out.read_text() == whole.read_text()
    assert _candidates(out) == _candidates(whole)


def test_changed_settings_are_refused(files: tuple[Path, Path], tmp_path: Path) -> None:
    seeds, bench = files
    out = tmp_path / "synth.jsonl"
    _run(_config(seeds, bench, max_written=8), out, ScriptedEngine())
    with pytest.raises(MathforgeError, match=r"min_vote: 0\.5 -> 0\.9"):
        _run(_config(seeds, bench, max_written=8, min_vote=0.9), out, ScriptedEngine())
    with pytest.raises(MathforgeError, match="different config"):
        _run(_config(seeds, bench, max_written=8, write_temperature=0.5), out, ScriptedEngine())
    with pytest.raises(MathforgeError, match="k: 4 -> 2"):  # named as on the command line
        _run(_config(seeds, bench, max_written=8, n=2), out, ScriptedEngine())
    extra = {"question": "What is 2 + 2 when added twice over?"}
    changed = _write(tmp_path / "seeds2.jsonl", [*SEEDS, extra])
    with pytest.raises(MathforgeError, match="seeds_sha256"):
        _run(_config(changed, bench, max_written=8), out, ScriptedEngine())
    written = _candidates(out)
    with pytest.raises(MathforgeError, match="unknown model"):  # checked before anything is deleted
        synthesize(_config(seeds, bench, max_written=8, model="no-such-model"), out, overwrite=True)
    assert _candidates(out) == written
    summary = _run(_config(seeds, bench, max_written=8, min_vote=0.9), out, ScriptedEngine(), overwrite=True)
    assert summary.written == 8 and all(c.verdict != "kept" or c.vote_share >= 0.9 for c in _candidates(out))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from mathforge.cli import main; main()", "data", "synthesize", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (
            b'{"question": "What is 1 + 1?"}\n{"id": 3, "text": "no question here"}\n',
            ["seeds.jsonl:2", "'question'"],
        ),
        (b"", ["seeds.jsonl", "empty file"]),
        (b'{"question": "What is 1 + 1?"}\n{"question": "caf\xe9"}\n', ["seeds.jsonl:2", "not UTF-8"]),
        (b'{"question": "What is 1 + 1?"}\n{"question": ""}\n', ["seeds.jsonl:2", "'question'", "empty"]),
    ],
    ids=["missing-field", "empty", "not-utf8", "empty-field"],
)
def test_bad_seeds_are_one_line_errors(tmp_path: Path, content: bytes, fragments: list[str]) -> None:
    (tmp_path / "seeds.jsonl").write_bytes(content)
    done = _cli("--seeds", "seeds.jsonl", "--n", "2", "-o", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    assert not (tmp_path / "out.synth").exists() and not (tmp_path / "out.jsonl").exists()


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    _write(tmp_path / "seeds.jsonl", SEEDS[:1])
    done = _cli(
        "--seeds", "seeds.jsonl", "--n", "2", "--kinds", "numbers,riddle", "-o", "o.jsonl", cwd=tmp_path
    )
    assert done.returncode == 2 and "--kinds" in done.stderr and "riddle" in done.stderr
    done = _cli("--seeds", "seeds.jsonl", "--n", "2", "-o", "o.jsonl", cwd=tmp_path)
    assert done.returncode == 2 and "seeds.jsonl" in done.stderr and "combine" in done.stderr
    done = _cli("--seeds", "seeds.jsonl", "-o", "o.jsonl", cwd=tmp_path)
    assert done.returncode == 2 and "--n" in done.stderr


class ToolEngine(ScriptedEngine):
    """Answers by running code: round 0 writes a python block, round 1 boxes what it printed."""

    def _complete(self, prompt: str, n: int) -> list[Completion]:
        if "Write only the new problem" in prompt:
            return super()._complete(prompt, n)
        if "```output\n" in prompt:
            printed = prompt.rsplit("```output\n", 1)[1].split("\n", 1)[0]
            return [Completion(f"So the answer is \\boxed{{{printed}}}.", [], "eos")] * n
        return [Completion("```python\nprint(7 + 9)\n```\n", [], "stop", "```output")] * n


def test_candidates_are_answered_with_tools_by_default(files: tuple[Path, Path], tmp_path: Path) -> None:
    _, bench = files
    apples = _write(tmp_path / "apples.jsonl", SEEDS[:1])
    config = SynthesisConfig(
        model="scripted", seeds=str(apples), count=1, n=2, chunk_size=2, kinds=["numbers"], against=str(bench)
    )
    assert config.mode == "tir"
    out = tmp_path / "synth.jsonl"
    summary = _run(config, out, ToolEngine())
    assert (summary.written, summary.kept) == (2, 1)  # the second copy duplicates the first
    (line,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (line["answer"], line["vote_share"], line["mode"], line["k"]) == ("16", 1.0, "tir", 2)
    assert _candidates(out)[0].answers == ["16", "16"]


def test_cli_runs_a_real_model_end_to_end(
    tiny_model_dir: Path, files: tuple[Path, Path], tmp_path: Path
) -> None:
    """A tiny random model through the hf engine: every candidate is written, judged and counted once."""
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from mathforge.cli.app import app

    seeds, bench = files
    out = tmp_path / "synth.jsonl"
    args = ["data", "synthesize", "--model", str(tiny_model_dir), "--seeds", str(seeds), "--n", "2"]
    args += [
        "--max-written",
        "4",
        "--chunk-size",
        "2",
        "--k",
        "2",
        "--mode",
        "cot",
        "--write-max-tokens",
        "12",
    ]
    args += ["--max-new-tokens", "8", "--dtype", "float32", "--against", str(bench), "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "synth.summary.json").read_text())
    assert summary["written"] == 4 == len(_candidates(out))
    assert summary["kept"] + sum(summary["dropped"].values()) == 4
    assert len(out.read_text().splitlines()) == summary["in_output"]
    assert "dropped: unparsable" in result.output and "written by the model" in result.output
    assert all(candidate.reply for candidate in _candidates(out))
