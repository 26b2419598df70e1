"""Decontamination: find training texts that copy or nearly copy an evaluation benchmark's test items.

Two rules, as in the Qwen2.5-Math report: a line is flagged when it shares a 13-gram of
normalised words with a benchmark question, or when the longest common subsequence (LCS) of
normalised words over the longer text's length exceeds 0.6. The LCS rule catches what n-grams
miss: short texts, and copies with a number changed every few words. Words, not characters:
measured on characters, ordinary GSM8K-train questions pass 0.6 against unrelated benchmark
questions (shared function words and digits line up).

Speed comes from two exact indexes, so the verdicts equal an all-pairs comparison:

* 13-grams: a dictionary from each benchmark 13-gram to the items holding it;
* LCS: ``lcs(x, y) > t * max(|x|, |y|)`` implies that x and y share more than ``t * |x|`` words
  counted with multiplicity, so prefix filtering (a similarity-join technique) over words
  tagged with their occurrence number, rarest first, retrieves every possible match; rapidfuzz
  computes the LCS on the few candidates.

Words are mapped to single characters before matching, so rapidfuzz's bit-parallel string LCS
runs on word sequences and an n-gram of words is a short string.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rapidfuzz.distance import LCSseq
from rich.console import Console

from mathforge.data.loaders import default_data_dir, load_benchmark
from mathforge.data.registry import BENCHMARKS
from mathforge.data.sources import is_file_spec
from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import read_jsonl

NGRAM = 13
LCS_THRESHOLD = 0.6
# Record fields holding a worked solution or a model response: checked against benchmark
# questions and solutions (a solution copied from a test set leaks its answer).
SOLUTION_FIELDS = ("solution", "response", "responses")
# Benchmark fields holding a worked solution; gsm8k's gold ``answer`` is its solution text.
_BENCH_SOLUTION_FIELDS = ("solution", "rationale", "steps")
_BENCH_SOLUTION_OVERRIDES = {"gsm8k": "answer"}
_ID_KEYS = ("id", "idx", "unique_id")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# One token per CJK character (those scripts have no spaces), per number (1,000 -> 1000), per
# run of letters, and per arithmetic symbol: "2 + 3" and "2 * 3" must stay different problems,
# while prose punctuation, brackets, $ and LaTeX backslashes carry no meaning for a match.
_TOKEN = re.compile(rf"[{_CJK}]|\d+(?:[.,]\d+)*|[^\W\d_{_CJK}]+|[-+*/=<>^%≤≥≠]")
_SYMBOLS = str.maketrans({"−": "-", "–": "-", "×": "*", "÷": "/", "·": "*"})


def normalize_words(text: str) -> list[str]:
    """Case-, spacing- and punctuation-insensitive words of ``text``, keeping numbers and operators."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_SYMBOLS)
    return [token.replace(",", "") if token[0].isdigit() else token for token in _TOKEN.findall(text)]


@dataclass(frozen=True)
class BenchText:
    """One text of an evaluation set to protect: a test question or a worked solution."""

    benchmark: str
    id: str
    text: str
    solution: bool = False


@dataclass(frozen=True)
class Match:
    """Why a text is contaminated: the benchmark item it matches, by which rule, how strongly.

    ``score`` is the share of the text's 13-grams found in the item (``ngram``) or the LCS ratio
    (``lcs``); ``field`` names the record field that matched.
    """

    benchmark: str
    match_id: str
    rule: str
    score: float
    field: str = ""


class _Encoder:
    """Maps words to single characters (unknown words to one character no benchmark uses)."""

    UNKNOWN = "\x00"

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    def add(self, words: Sequence[str]) -> str:
        for word in words:
            if word not in self.codes:
                number = len(self.codes) + 1
                # skip the surrogate block, which is not a valid character on its own
                self.codes[word] = chr(number if number < 0xD800 else number + 0x800)
        return "".join(self.codes[word] for word in words)

    def encode(self, words: Sequence[str]) -> str:
        return "".join(self.codes.get(word, self.UNKNOWN) for word in words)


def _occurrences(code: str) -> list[tuple[str, int]]:
    """Words tagged with their occurrence number: multiset overlap becomes set overlap."""
    seen: Counter[str] = Counter()
    tokens = []
    for char in code:
        seen[char] += 1
        tokens.append((char, seen[char]))
    return tokens


class Decontaminator:
    """Checks texts against benchmark items with the 13-gram and LCS-ratio rules.

    Build it once from :func:`benchmark_texts` (or :meth:`from_benchmarks`) and call
    :meth:`check` per text; the index is exact, so a verdict is what comparing the text with
    every item would give.
    """

    def __init__(
        self,
        texts: Iterable[BenchText],
        *,
        n: int = NGRAM,
        threshold: float = LCS_THRESHOLD,
        missing: Sequence[str] = (),
    ) -> None:
        self.n = n
        self.threshold = threshold
        self.items: list[BenchText] = list(texts)
        self.missing = list(missing)  # registry benchmarks asked for ("all") without a local file
        self._encoder = _Encoder()
        self.codes: list[str] = [self._encoder.add(normalize_words(item.text)) for item in self.items]
        self._ngrams: dict[str, list[int]] = {}
        for index, code in enumerate(self.codes):
            for gram in {code[i : i + n] for i in range(len(code) - n + 1)}:
                self._ngrams.setdefault(gram, []).append(index)
        occurrences = [_occurrences(code) for code in self.codes]
        self._rank: dict[tuple[str, int], int] = {}
        frequency = Counter(token for tokens in occurrences for token in tokens)
        for rank, (token, _) in enumerate(sorted(frequency.items(), key=lambda pair: pair[1])):
            self._rank[token] = rank
        self._prefix: dict[int, list[int]] = {}
        for index, tokens in enumerate(occurrences):
            for rank in self._prefix_ranks(tokens):
                self._prefix.setdefault(rank, []).append(index)

    @classmethod
    def from_benchmarks(
        cls, against: str | Sequence[str] = "all", data_dir: str | Path | None = None, **options: Any
    ) -> Decontaminator:
        """A decontaminator over the test items of ``against`` (see :func:`benchmark_texts`)."""
        texts, missing = benchmark_texts(against, data_dir)
        return cls(texts, missing=missing, **options)

    @property
    def benchmarks(self) -> dict[str, int]:
        """Questions per benchmark, in load order."""
        return dict(Counter(item.benchmark for item in self.items if not item.solution))

    def _prefix_ranks(self, tokens: list[tuple[str, int]]) -> list[int]:
        """Ranks of the rarest ``len - floor(t * len)`` tokens: any text sharing more than
        ``t * len`` of them shares one of these (unknown tokens, rank -1, count but match nothing)."""
        ranks = sorted(self._rank.get(token, -1) for token in tokens)
        keep = len(ranks) - math.floor(self.threshold * len(ranks))
        return [rank for rank in ranks[:keep] if rank >= 0]

    def check(self, text: str, *, solution: bool = False) -> Match | None:
        """The best match of ``text`` (13-gram rule first, then LCS), or None when it is clean.

        ``solution=True`` also compares with benchmark solutions, for a record's worked
        solution or model response.
        """
        code = self._encoder.encode(normalize_words(text))
        if not code:
            return None
        return self._ngram_match(code, solution) or self._lcs_match(code, solution)

    def _allowed(self, index: int, solution: bool) -> bool:
        return solution or not self.items[index].solution

    def _ngram_match(self, code: str, solution: bool) -> Match | None:
        grams = {code[i : i + self.n] for i in range(len(code) - self.n + 1)}
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(index for index in self._ngrams.get(gram, ()) if self._allowed(index, solution))
        if not shared:
            return None
        index = min(shared, key=lambda i: (-shared[i], i))
        return self._match(index, "ngram", shared[index] / len(grams))

    def _lcs_match(self, code: str, solution: bool) -> Match | None:
        candidates = {
            index for rank in self._prefix_ranks(_occurrences(code)) for index in self._prefix.get(rank, ())
        }
        best, best_ratio = -1, 0.0
        for index in sorted(candidates):
            ratio = self.lcs_ratio(code, index) if self._allowed(index, solution) else 0.0
            if ratio > best_ratio:
                best, best_ratio = index, ratio
        return self._match(best, "lcs", best_ratio) if best >= 0 else None

    def lcs_ratio(self, code: str, index: int) -> float:
        """LCS of encoded ``code`` and item ``index`` over the longer length; 0 at or below the threshold."""
        other = self.codes[index]
        longest = max(len(code), len(other))
        cutoff = math.floor(self.threshold * longest) + 1  # strictly above the threshold
        if min(len(code), len(other)) < cutoff:
            return 0.0
        common = LCSseq.similarity(code, other, score_cutoff=cutoff)
        return common / longest if common >= cutoff else 0.0

    def encode(self, text: str) -> str:
        """``text`` as the index sees it: one character per normalised word."""
        return self._encoder.encode(normalize_words(text))

    def _match(self, index: int, rule: str, score: float) -> Match:
        item = self.items[index]
        return Match(item.benchmark, item.id, rule, round(score, 4))

    def check_record(self, record: Mapping[str, Any], field: str = "question") -> Match | None:
        """Check the record's problem text (:func:`record_question`) against questions, then its
        solution/response fields against questions and solutions; the first match, with the
        field that matched."""
        text, source = record_question(record, field)
        match = self.check(str(text))
        if match is not None:
            return Match(match.benchmark, match.match_id, match.rule, match.score, source)
        for name in SOLUTION_FIELDS:
            for text in _strings(record.get(name)):
                match = self.check(text, solution=True)
                if match is not None:
                    return Match(match.benchmark, match.match_id, match.rule, match.score, name)
        return None


def record_question(record: Mapping[str, Any], field: str = "question") -> tuple[Any, str]:
    """The problem text of ``record`` (unchecked: it may be missing or not text) and the field it
    came from: ``field`` when the record has one, else, for an SFT record (no question field,
    chat messages in ``prompt``), the last user message, which holds the question."""
    prompt = record.get("prompt")
    if field in record or not isinstance(prompt, list):
        return record.get(field), field
    users = [m.get("content") for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
    return (users[-1] if users else None), "prompt"


def _strings(value: Any) -> list[str]:
    """A field as a list of non-empty texts (``responses`` holds a list)."""
    values = value if isinstance(value, list) else [value]
    return [str(item) for item in values if isinstance(item, str) and item.strip()]


def benchmark_texts(
    against: str | Sequence[str] = "all", data_dir: str | Path | None = None
) -> tuple[list[BenchText], list[str]]:
    """The test questions and solutions to protect, and the registry benchmarks not found.

    ``against`` is a comma-separated list (or a sequence) of ``all`` (every registry benchmark
    with a local ``DATA_DIR/<name>/test.jsonl``; the hub-only ``math`` set must be named), registry
    names (loaded like ``mathforge eval`` does, hub included) and JSONL files (a ``question`` or
    ``problem`` field, optional ``solution``).
    """
    names = [part.strip() for part in against.split(",")] if isinstance(against, str) else list(against)
    names = [name for name in names if name]
    if not names:
        raise MathforgeError("--against: give 'all', benchmark names or JSONL files")
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    texts: list[BenchText] = []
    missing: list[str] = []
    chosen: list[str] = []
    for name in names:
        if name == "all":
            for bench in BENCHMARKS:
                if (base / bench / "test.jsonl").is_file():
                    chosen.append(bench)
                else:
                    missing.append(bench)
        elif name in BENCHMARKS or not is_file_spec(name):
            chosen.append(name)  # an unknown name fails in load_benchmark, listing the known ones
        else:
            texts.extend(_file_texts(Path(name)))
    for name in dict.fromkeys(chosen):
        texts.extend(_registry_texts(name, base))
    return texts, [name for name in missing if name not in chosen]


def _registry_texts(name: str, base: Path) -> list[BenchText]:
    problems = load_benchmark(name, data_dir=base, split="test")
    texts = [BenchText(name, problem.id, problem.question) for problem in problems]
    path = base / name / "test.jsonl"
    if path.is_file():  # solutions are read from the local file (loaders keep only the gold)
        for problem, (_, row) in zip(problems, read_jsonl(path), strict=True):
            fields = [_BENCH_SOLUTION_OVERRIDES.get(name, ""), *_BENCH_SOLUTION_FIELDS]
            for text in (text for key in fields if key for text in _strings(row.get(key))):
                texts.append(BenchText(name, problem.id, text, solution=True))
    return texts


def _file_texts(path: Path) -> list[BenchText]:
    texts = []
    for index, (line, row) in enumerate(read_jsonl(path)):
        question = row.get("question") or row.get("problem")
        if not isinstance(question, str) or not question.strip():
            raise InputError(
                path, "missing or empty (an --against file needs it, or 'problem')", line, "question"
            )
        key = next((row[k] for k in _ID_KEYS if row.get(k) not in (None, "")), index)
        item_id = f"{path.stem}/{key}"
        texts.append(BenchText(path.stem, item_id, question))
        texts.extend(
            BenchText(path.stem, item_id, text, solution=True) for text in _strings(row.get("solution"))
        )
    if not texts:
        raise InputError(path, "no lines (empty file)")
    return texts


@dataclass
class DecontamSummary:
    """What decontamination removed and why, for logs and the JSON summary."""

    lines: int
    flagged: int
    by_benchmark: dict[str, dict[str, int]] = field(default_factory=dict)
    benchmarks: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    index_seconds: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``removed 3 of 120 lines (gsm8k: 2 ngram, 1 lcs)`` for a stage's log."""
        reasons = "; ".join(
            f"{bench}: " + ", ".join(f"{count} {rule}" for rule, count in rules.items())
            for bench, rules in self.by_benchmark.items()
        )
        checked = f"against {len(self.benchmarks)} benchmarks"
        return f"removed {self.flagged} of {self.lines} lines {checked}" + (
            f" ({reasons})" if reasons else ""
        )


def record_id(record: Mapping[str, Any]) -> Any:
    """A record's own id (``id``, ``idx`` or ``unique_id``), or None."""
    return next((record[key] for key in _ID_KEYS if record.get(key) not in (None, "")), None)


def decontaminate_records(
    records: Sequence[Mapping[str, Any]],
    field: str = "question",
    against: str | Sequence[str] = "all",
    data_dir: str | Path | None = None,
    decontaminator: Decontaminator | None = None,
) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]], DecontamSummary]:
    """Split ``records`` into clean ones (in order) and flagged reports, with a summary.

    The problem text is ``record[field]``, or an SFT record's question (:func:`record_question`).
    The one call every training stage makes before using its data. A flagged report is
    ``{index, id, field, benchmark, match_id, rule, score}``; ``decontaminator`` reuses a built
    index (else one is built from ``against`` and ``data_dir``).
    """
    start = time.perf_counter()
    for index, record in enumerate(records):
        text, source = record_question(record, field)
        if not isinstance(text, str) or not text.strip():
            raise MathforgeError(f"record {index}: field '{source}' is missing, empty or not text")
    checker = decontaminator or Decontaminator.from_benchmarks(against, data_dir)
    index_seconds = time.perf_counter() - start
    clean: list[Mapping[str, Any]] = []
    flagged: list[dict[str, Any]] = []
    counts: dict[str, Counter[str]] = {}
    for index, record in enumerate(records):
        match = checker.check_record(record, field)
        if match is None:
            clean.append(record)
            continue
        counts.setdefault(match.benchmark, Counter())[match.rule] += 1
        report = {"index": index, "id": record_id(record), **asdict(match)}
        flagged.append(report)
    summary = DecontamSummary(
        lines=len(records),
        flagged=len(flagged),
        by_benchmark={bench: dict(sorted(rules.items())) for bench, rules in sorted(counts.items())},
        benchmarks=checker.benchmarks,
        missing=list(checker.missing),
        index_seconds=round(index_seconds, 3),
        seconds=round(time.perf_counter() - start, 3),
    )
    return clean, flagged, summary


class _Question(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def question(self) -> str: ...


Q = TypeVar("Q", bound=_Question)


def drop_contaminated(
    items: Sequence[Q], data_dir: str | Path | None, console: Console
) -> tuple[list[Q], DecontamSummary]:
    """The problems (or eval records) whose question passes decontamination against every
    evaluation benchmark with a test file under ``data_dir``; logs how many went and why.

    The call a training stage makes on its problems before using them.
    """
    records = [{"id": item.id, "question": item.question} for item in items]
    _, flagged, summary = decontaminate_records(records, "question", "all", data_dir)
    dropped = {report["index"] for report in flagged}
    if not summary.benchmarks:
        console.print(
            f"decontamination: no benchmark test files under {data_dir or default_data_dir()}; "
            "nothing checked (pass --data-dir)",
            highlight=False,
        )
    else:
        console.print(f"decontamination: {summary.describe()}", highlight=False)
    return [item for index, item in enumerate(items) if index not in dropped], summary
