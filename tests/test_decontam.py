"""Decontamination: both rules on small fixtures, exactness against all pairs, the CLI, rm-data wiring."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mathforge.cli import app
from mathforge.data.decontam import (
    BenchText,
    Decontaminator,
    Match,
    benchmark_texts,
    decontaminate_records,
    normalize_words,
)
from mathforge.errors import InputError, MathforgeError

REPO = Path(__file__).resolve().parents[1]

# A tiny benchmark folder in the registry's layout: gsm8k (question + worked answer) and math500.
GSM8K_TEST = [
    {
        "question": "Janet has 16 ducks that lay eggs every day and she sells the remainder at the farmers "
        "market for 2 dollars per egg. How much does she make every day?",
        "answer": "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = 18 dollars every day at "
        "the farmer's market.\n#### 18",
        "idx": 0,
    },
    {
        "question": "A robe takes 2 bolts of blue fiber and half that much white fiber.",
        "answer": "#### 3",
        "idx": 1,
    },
]
MATH500_TEST = [
    {
        "problem": "What is the value of $\\sqrt{36 \\times \\sqrt{16}}$?",
        "solution": "We have $\\sqrt{36 \\times 4} = \\sqrt{144} = 12$, so the answer is $\\boxed{12}$.",
        "answer": "12",
        "unique_id": "test/prealgebra/1.json",
    },
]


def _write(path: Path, rows: Sequence[dict], extra_lines: dict[int, bytes] | None = None) -> Path:
    lines = [json.dumps(row).encode() for row in rows]
    for index, raw in sorted((extra_lines or {}).items()):
        lines.insert(index, raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "bench" / "gsm8k" / "test.jsonl", GSM8K_TEST)
    _write(tmp_path / "bench" / "math500" / "test.jsonl", MATH500_TEST)
    return tmp_path / "bench"


def test_normalisation_ignores_case_spacing_and_prose_punctuation_but_keeps_numbers_and_operators() -> None:
    assert normalize_words("What  is\tTHE sum, of 1,000 and 2.5?") == [
        "what",
        "is",
        "the",
        "sum",
        "of",
        "1000",
        "and",
        "2.5",
    ]
    assert normalize_words("Compute 2+3.") == normalize_words("compute 2 + 3")
    assert normalize_words("Compute 2+3") != normalize_words("Compute 2*3")
    assert normalize_words("5 − 3 × 2") == ["5", "-", "3", "*", "2"]  # unicode minus and times
    assert normalize_words("小明有3个苹果") == ["小", "明", "有", "3", "个", "苹", "果"]


def test_a_shared_13_gram_flags_a_longer_otherwise_different_text() -> None:
    item = "one two three four five six seven eight nine ten eleven twelve thirteen"
    checker = Decontaminator([BenchText("toy", "toy/0", item + " fourteen")])
    text = "Totally unrelated words come first here and then " + item.upper() + " and a long different tail"
    match = checker.check(text)
    assert match == Match("toy", "toy/0", "ngram", 0.0714)  # 1 of its 14 distinct 13-grams
    # twelve shared words are no 13-gram, and the LCS ratio stays far below 0.6
    assert checker.check("Totally unrelated words come first here and then " + item.rsplit(" ", 1)[0]) is None


def test_a_text_shorter_than_13_words_is_caught_only_by_lcs() -> None:
    checker = Decontaminator(
        [BenchText("toy", "toy/7", "Find the remainder of 2 to the power 100 divided by 7.")]
    )
    near = "find the remainder of 3 to the power 100 divided by 7"  # 12 words, one number changed
    assert len(normalize_words(near)) < 13
    match = checker.check(near)
    assert match is not None and (match.rule, match.match_id) == ("lcs", "toy/7")
    assert match.score == round(11 / 12, 4)
    assert checker.check("Find the remainder when a prime is divided by a smaller prime.") is None


def test_the_lcs_ratio_must_exceed_the_threshold_over_the_longer_text() -> None:
    checker = Decontaminator([BenchText("toy", "toy/0", "a b c d e f g h i j")])
    assert checker.check("a b c d e f x y z w") is None  # 6 of 10 in order: 0.6 is not above 0.6
    assert checker.check("a b c d e f g y z w") == Match("toy", "toy/0", "lcs", 0.7)
    assert checker.check("a b c d e f g") == Match("toy", "toy/0", "lcs", 0.7)  # over the longer text
    assert checker.check("a b c d e f g h i j k l m n o p") == Match("toy", "toy/0", "lcs", 0.625)
    assert checker.check("a b c d e f g h i j k l m n o p q") is None  # 10 of 17
    assert checker.check("j i h g f e d c b a") is None  # same words, wrong order


def test_solution_fields_are_checked_against_questions_and_solutions() -> None:
    solution = "We have 36 times 4 equals 144 and the square root of 144 is 12 so the answer is 12"
    checker = Decontaminator(
        [
            BenchText("toy", "toy/0", "What is the square root of 36 times the square root of 16?"),
            BenchText("toy", "toy/0", solution, solution=True),
        ]
    )
    # a question is compared with benchmark questions only
    assert checker.check(solution) is None
    assert checker.check_record({"question": solution}) is None
    record = {"question": "An unrelated question about trains.", "solution": solution + "."}
    assert checker.check_record(record) == Match("toy", "toy/0", "ngram", 1.0, "solution")
    responses = {"question": "Another unrelated one.", "responses": ["no idea", solution.upper()]}
    assert checker.check_record(responses) == Match("toy", "toy/0", "ngram", 1.0, "responses")


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous, row = row, [0]
        for j, y in enumerate(b, start=1):
            row.append(previous[j - 1] + 1 if x == y else max(previous[j], row[j - 1]))
    return row[-1]


def _brute_force(items: list[BenchText], text: str) -> tuple[str, str] | None:
    """The rules applied to every item with a plain dynamic-programming LCS (no index, no encoding)."""
    words = normalize_words(text)
    grams = {tuple(words[i : i + 13]) for i in range(len(words) - 12)}
    best_ngram = (0, "")
    best_lcs = (0.6, "")
    for item in items:
        other = normalize_words(item.text)
        shared = len(grams & {tuple(other[i : i + 13]) for i in range(len(other) - 12)})
        if shared > best_ngram[0]:
            best_ngram = (shared, item.id)
        ratio = _lcs(words, other) / max(len(words), len(other))
        if ratio > best_lcs[0]:
            best_lcs = (ratio, item.id)
    if best_ngram[0]:
        return "ngram", best_ngram[1]
    return ("lcs", best_lcs[1]) if best_lcs[1] else None


def test_indexed_verdicts_equal_an_all_pairs_check() -> None:
    """Random texts over a small vocabulary share many words: every LCS candidate must be retrieved."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(12)] + ["1", "2", "+", "="]
    items = [
        BenchText("toy", f"toy/{i}", " ".join(rng.choices(vocab, k=rng.randint(3, 30)))) for i in range(60)
    ]
    checker = Decontaminator(items)
    texts = []
    for _ in range(400):
        base = normalize_words(rng.choice(items).text)
        edited = [word for word in base if rng.random() > 0.25] + rng.choices(
            [*vocab, "new"], k=rng.randint(0, 8)
        )
        texts.append(" ".join(edited) or "new")
    verdicts = [checker.check(text) for text in texts]
    assert sum(verdict is not None for verdict in verdicts) > 100  # the comparison is not vacuous
    for text, verdict in zip(texts, verdicts, strict=True):
        expected = _brute_force(items, text)
        assert (None if verdict is None else (verdict.rule, verdict.match_id)) == expected, text


def test_registry_benchmarks_give_questions_and_solutions(bench_dir: Path) -> None:
    texts, missing = benchmark_texts("all", bench_dir)
    assert {(text.benchmark, text.solution) for text in texts} == {
        ("gsm8k", False),
        ("gsm8k", True),
        ("math500", False),
        ("math500", True),
    }
    assert [text.id for text in texts if not text.solution] == [
        "gsm8k/test/0",
        "gsm8k/test/1",
        "math500/test/test/prealgebra/1.json",
    ]
    assert "aime24" in missing and "gsm8k" not in missing
    extra = _write(bench_dir.parent / "mine.jsonl", [{"problem": "Extra text", "id": "x"}])
    texts, _ = benchmark_texts(f"math500,{extra}", bench_dir)
    assert [(text.benchmark, text.id) for text in texts if not text.solution] == [
        ("mine", "mine/x"),
        ("math500", "math500/test/test/prealgebra/1.json"),
    ]
    with pytest.raises(MathforgeError, match="unknown benchmark 'gsm9k'"):
        benchmark_texts("gsm9k", bench_dir)


def test_decontaminate_records_splits_in_order_with_reasons(bench_dir: Path) -> None:
    records = [
        {"id": "a", "question": "How many legs do 3 spiders have?"},
        {"id": "b", "question": GSM8K_TEST[0]["question"].lower()},
        {"id": "c", "question": "What is the value of sqrt(36 x sqrt(16))?"},
        {"id": "d", "question": "Name a prime larger than 10."},
    ]
    clean, flagged, summary = decontaminate_records(records, against="all", data_dir=bench_dir)
    assert [record["id"] for record in clean] == ["a", "d"] and clean[0] is records[0]
    assert [(f["index"], f["id"], f["benchmark"], f["rule"]) for f in flagged] == [
        (1, "b", "gsm8k", "ngram"),
        (2, "c", "math500", "lcs"),
    ]
    assert flagged[1]["match_id"] == "math500/test/test/prealgebra/1.json" and flagged[1]["score"] > 0.6
    assert (summary.lines, summary.flagged) == (4, 2)
    assert summary.by_benchmark == {"gsm8k": {"ngram": 1}, "math500": {"lcs": 1}}
    assert summary.benchmarks == {"gsm8k": 2, "math500": 1}
    assert summary.describe().startswith("removed 2 of 4 lines against 2 benchmarks (gsm8k: 1 ngram")
    with pytest.raises(MathforgeError, match="record 1: field 'question'"):
        decontaminate_records([records[0], {"id": "x"}], data_dir=bench_dir)


def _invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["data", "decontam", *map(str, args)])


def test_cli_writes_clean_lines_unchanged_and_flagged_reports(bench_dir: Path, tmp_path: Path) -> None:
    rows = [
        {"id": 1, "question": "How   many legs do 3 spiders have?", "extra": [1, 2]},
        {
            "id": 2,
            "question": "janet has 16 ducks that lay eggs every day and she sells the remainder at the "
            "farmers market for 3 dollars per egg. how much does she make?",
        },
        {"question": "A fresh question without an id.", "solution": GSM8K_TEST[0]["answer"]},
        {"id": 4, "question": "Name a prime larger than 10.", "answer": 11},
    ]
    source = _write(tmp_path / "in.jsonl", rows)
    raw = source.read_bytes().splitlines(keepends=True)
    out, flagged, summary = tmp_path / "clean.jsonl", tmp_path / "flagged.jsonl", tmp_path / "summary.json"
    result = _invoke(
        source, "--data-dir", bench_dir, "-o", out, "--flagged", flagged, "--summary-json", summary
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == raw[0] + raw[3]
    reports = [json.loads(line) for line in flagged.read_text().splitlines()]
    assert [(r["id"], r["line"], r["field"], r["benchmark"], r["match_id"], r["rule"]) for r in reports] == [
        (2, 2, "question", "gsm8k", "gsm8k/test/0", "ngram"),
        (None, 3, "solution", "gsm8k", "gsm8k/test/0", "ngram"),
    ]
    assert all(0 < r["score"] <= 1 for r in reports)
    data = json.loads(summary.read_text())
    assert (data["lines"], data["flagged"], data["by_benchmark"]) == (4, 2, {"gsm8k": {"ngram": 2}})
    assert "2 of 4 (50.0%)" in result.output and "gsm8k" in result.output


def test_cli_against_a_file_only(bench_dir: Path, tmp_path: Path) -> None:
    mine = _write(tmp_path / "held_out.jsonl", [{"question": "How many legs do 3 spiders have?", "idx": 9}])
    source = _write(tmp_path / "in.jsonl", [{"question": "how many legs do 4 spiders have"}, *GSM8K_TEST])
    flagged = tmp_path / "flagged.jsonl"
    result = _invoke(source, "--against", mine, "-o", tmp_path / "clean.jsonl", "--flagged", flagged)
    assert result.exit_code == 0, result.output
    (report,) = [json.loads(line) for line in flagged.read_text().splitlines()]
    assert (report["benchmark"], report["match_id"], report["rule"]) == ("held_out", "held_out/9", "lcs")
    assert len((tmp_path / "clean.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        (
            [{"question": "ok"}, {"problem": "no question"}],
            None,
            "in.jsonl:2: field 'question': missing (set --field)",
        ),
        ([{"question": "ok"}, {"question": 7}], None, "in.jsonl:2: field 'question': expected text, got int"),
        ([{"question": "ok"}, {"question": "  "}], None, "in.jsonl:2: field 'question': empty"),
        (
            [{"question": "ok"}],
            {1: b'{"question": "caf\xe9"}'},
            "in.jsonl:2: not UTF-8 text (byte 0xe9 at column 18)",
        ),
        ([{"question": "ok"}], {1: b"{oops"}, "in.jsonl:2: not valid JSON"),
        ([], None, "in.jsonl: no lines (empty file)"),
    ],
)
def test_cli_bad_input_is_one_error_naming_file_line_and_field(
    bench_dir: Path, tmp_path: Path, rows: list[dict], extra: dict[int, bytes] | None, message: str
) -> None:
    source = _write(tmp_path / "in.jsonl", rows, extra)
    result = _invoke(source, "--data-dir", bench_dir, "-o", tmp_path / "clean.jsonl")
    assert isinstance(result.exception, InputError)
    assert str(result.exception).startswith(f"{tmp_path}/{message}")
    assert not (tmp_path / "clean.jsonl").exists()


def test_cli_without_benchmark_files_says_where_it_looked(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [{"question": "ok"}])
    result = _invoke(source, "--data-dir", tmp_path / "nothing", "-o", tmp_path / "clean.jsonl")
    assert isinstance(result.exception, MathforgeError)
    assert f"no benchmark test files under {tmp_path / 'nothing'}" in str(result.exception)


def test_cli_error_exit_code_and_one_line_in_a_fresh_process(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"question": "fine"}\n{"question": "caf\xe9"}\n')
    command = [
        sys.executable,
        "-c",
        "from mathforge.cli import main; main()",
        "data",
        "decontam",
        str(source),
    ]
    result = subprocess.run(
        [*command, "-o", str(tmp_path / "c.jsonl")], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {source}:2: not UTF-8 text (byte 0xe9 at column 18)"]


def test_real_benchmarks_flag_copies_and_pass_ordinary_training_questions(data_dir: Path) -> None:
    checker = Decontaminator.from_benchmarks("all", data_dir)
    assert "math" in checker.missing and checker.benchmarks["gsm8k"] == 1319
    test_question = json.loads((data_dir / "gsm8k" / "test.jsonl").open().readline())["question"]
    match = checker.check(test_question.replace("Janet", "Maria").upper())
    assert match is not None and (match.benchmark, match.match_id) == ("gsm8k", "gsm8k/test/0")
    train = [json.loads(line)["question"] for line in (data_dir / "gsm8k" / "train.jsonl").open()][:300]
    flagged = sum(checker.check(question) is not None for question in train)
    assert flagged <= 6  # 2%


def test_rm_data_drops_contaminated_problems_before_sampling(bench_dir: Path, tmp_path: Path) -> None:
    from mathforge.engines import Completion, SamplingParams
    from mathforge.reward.collect import build_rm_data
    from mathforge.sampling import Sampler, SamplingRunConfig

    class Engine:
        """Right answer in even samples, 0 in odd ones; records every prompt it is asked."""

        tokenizer = None

        def __init__(self) -> None:
            self.prompts: list[str] = []

        def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
            self.prompts.extend(prompts)
            return [
                [Completion(f"\\boxed{{{5 if i % 2 == 0 else 0}}}", [], "eos") for i in range(params.n)]
                for _ in prompts
            ]

    problems = _write(
        tmp_path / "train.jsonl",
        [
            {"question": "Tom has 2 apples and buys 3 more. How many apples does he have?", "answer": "5"},
            {"question": GSM8K_TEST[0]["question"].replace("16", "17"), "answer": "5"},
            {"question": "What is the value of sqrt(36 * sqrt(16))?", "answer": "5"},
        ],
    )
    config = SamplingRunConfig(model="scripted", benches=[str(problems)], n=2, data_dir=str(bench_dir))
    engine = Engine()
    log = tmp_path / "log.txt"
    from rich.console import Console

    with log.open("w") as handle:
        summary = build_rm_data(
            config,
            tmp_path / "rm.jsonl",
            console=Console(file=handle, width=300),
            sampler=lambda cfg: Sampler(cfg, engine),
        )
    assert len(engine.prompts) == 1 and "Tom has 2 apples" in engine.prompts[0]
    assert (summary.problems, summary.pairable, summary.contaminated) == (1, 1, 2)
    assert summary.contaminated_by == {"gsm8k": {"ngram": 1}, "math500": {"lcs": 1}}
    saved = json.loads((tmp_path / "rm.summary.json").read_text())
    assert saved["contaminated"] == 2
    assert "decontamination: removed 2 of 3 lines against 2 benchmarks" in log.read_text()


def _sft_records(data_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """Bootstrap CoT records of generated problems with one record of a GSM8K test problem planted
    in the middle: an SFT record file as ``mathforge data bootstrap`` writes it."""
    from mathforge.train.bootstrap import (
        bootstrap_records,
        generated_solutions,
        gsm8k_solutions,
        write_records,
    )

    generated, _ = generated_solutions(12, seed=3)
    records, _ = bootstrap_records(generated, "cot")
    (planted,) = gsm8k_solutions(data_dir / "gsm8k" / "test.jsonl", "gsm8k", "test", limit=1)
    planted_records, _ = bootstrap_records([planted], "cot")
    records.insert(5, planted_records[0])
    path = tmp_path / "sft.jsonl"
    write_records(records, path)
    return path, planted.problem.question


def test_cli_reads_sft_records_by_the_question_in_their_prompt(data_dir: Path, tmp_path: Path) -> None:
    from mathforge.train.records import read_records

    source, question = _sft_records(data_dir, tmp_path)
    records = read_records([source])
    assert (
        records[5].prompt[-1] == {"role": "user", "content": question} and "question" not in records[5].extra
    )
    out, flagged = tmp_path / "clean.jsonl", tmp_path / "flagged.jsonl"
    result = _invoke(source, "--against", "gsm8k", "--data-dir", data_dir, "-o", out, "--flagged", flagged)
    assert result.exit_code == 0, result.output
    (report,) = [json.loads(line) for line in flagged.read_text().splitlines()]
    assert (report["line"], report["field"], report["benchmark"], report["match_id"], report["rule"]) == (
        6,
        "prompt",
        "gsm8k",
        "gsm8k/test/0",
        "ngram",
    )
    raw = source.read_text().splitlines(keepends=True)
    assert out.read_text() == "".join(raw[:5] + raw[6:])
    assert [record.id for record in read_records([out])] == [r.id for i, r in enumerate(records) if i != 5]


def test_an_sft_response_copying_a_benchmark_solution_is_flagged(bench_dir: Path) -> None:
    prompt = [{"role": "system", "content": "Reason."}, {"role": "user", "content": "Tom has 2 apples."}]
    records = [
        {"id": "a", "prompt": prompt, "response": "He has 2 apples. \\boxed{2}"},
        {"id": "b", "prompt": prompt, "response": GSM8K_TEST[0]["answer"]},
    ]
    clean, flagged, _ = decontaminate_records(records, data_dir=bench_dir)
    assert [record["id"] for record in clean] == ["a"]
    assert [(f["id"], f["field"], f["match_id"]) for f in flagged] == [("b", "response", "gsm8k/test/0")]


def test_cli_sft_record_without_a_user_message_names_the_prompt(bench_dir: Path, tmp_path: Path) -> None:
    good = {"id": "a", "prompt": [{"role": "user", "content": "Tom has 2 apples."}], "response": "2"}
    bad = {"id": "b", "prompt": [{"role": "system", "content": "Reason."}], "response": "2"}
    source = _write(tmp_path / "in.jsonl", [good, bad])
    result = _invoke(source, "--data-dir", bench_dir, "-o", tmp_path / "clean.jsonl")
    assert isinstance(result.exception, InputError)
    assert str(result.exception) == f"{source}:2: field 'prompt': no user message (an SFT record's question)"
