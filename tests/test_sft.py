"""SFT: the loss mask, record validation, learning, resume, refusal, the model directory, the CLI."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from transformers import TrainerCallback  # noqa: E402

from mathforge.engines.base import SamplingParams  # noqa: E402
from mathforge.errors import InputError, MathforgeError  # noqa: E402
from mathforge.prompts import prompt_messages, render_prompt  # noqa: E402
from mathforge.runs import prune_checkpoints  # noqa: E402
from mathforge.runtime import force_cpu_bf16  # noqa: E402
from mathforge.solve.code import OUTPUT_FENCE, output_block  # noqa: E402
from mathforge.train.records import SFTRecord, read_records  # noqa: E402
from mathforge.train.sft import SFTConfig, run, tokenize_record  # noqa: E402

TARGET = "The code is 7."


def tir_record(question: str = "What is 6 times 7?") -> dict[str, Any]:
    """A one-round TIR record as the solve loop lays it out."""
    first = "Let me compute it.\n```python\nprint(6 * 7)\n```\n"
    tool = output_block("42", first)
    last = "So the answer is $\\boxed{42}$."
    response = first + tool + last
    return {
        "id": "t/0",
        "prompt": prompt_messages(question, "tir"),
        "response": response,
        "segments": [
            {"kind": "model", "start": 0, "end": len(first)},
            {"kind": "tool", "start": len(first), "end": len(first) + len(tool)},
            {"kind": "model", "start": len(first) + len(tool), "end": len(response)},
        ],
        "answer": "42",
        "source": "test",
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def constant_records(n: int) -> list[dict[str, Any]]:
    """A trivially learnable mapping: every question gets the same short answer."""
    rows = []
    for index in range(n):
        response = TARGET
        rows.append(
            {
                "id": f"c/{index}",
                "prompt": prompt_messages(f"Item {index}: what is the code?", "cot"),
                "response": response,
                "segments": [{"kind": "model", "start": 0, "end": len(response)}],
            }
        )
    return rows


# --- the loss mask ---------------------------------------------------------------------------


def test_labels_cover_exactly_what_the_model_writes(embedded_tokenizer: Any) -> None:
    record = tir_record()
    row = tokenize_record(embedded_tokenizer, record)
    ids, labels = row["input_ids"], row["labels"]
    assert len(ids) == len(labels)
    assert all(label in (-100, token) for token, label in zip(ids, labels, strict=True))

    # The prompt is the solver's prompt, token for token, and carries no label.
    prompt_ids = embedded_tokenizer(render_prompt("What is 6 times 7?", embedded_tokenizer, "tir"))[
        "input_ids"
    ]
    assert ids[: len(prompt_ids)] == prompt_ids
    assert all(label == -100 for label in labels[: len(prompt_ids)])

    # What carries a label is the model's text, the fence it stops on, and the end of its turn.
    trained = embedded_tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
    segments = record["segments"]
    first = record["response"][: segments[0]["end"]]
    last = record["response"][segments[2]["start"] :]
    assert trained == first + OUTPUT_FENCE + last + "<|im_end|>"

    # Every executor-output token (the observation and its closing fence) is masked.
    masked_response = embedded_tokenizer.decode(
        [
            t
            for t, label in zip(ids[len(prompt_ids) :], labels[len(prompt_ids) :], strict=True)
            if label == -100
        ]
    )
    assert masked_response == "\n42\n```\n"
    response_ids = embedded_tokenizer(record["response"], add_special_tokens=False)["input_ids"]
    assert (
        ids[len(prompt_ids) : len(prompt_ids) + len(response_ids)] == response_ids
    )  # what the model would write


def test_tokenize_record_accepts_a_record_object(embedded_tokenizer: Any) -> None:
    record = tir_record()
    assert tokenize_record(embedded_tokenizer, SFTRecord.from_dict(record)) == tokenize_record(
        embedded_tokenizer, record
    )


def test_response_labels_follow_the_trajectory_tool_mask() -> None:
    from mathforge.solve.trajectory import Trajectory
    from mathforge.train.tokenize import response_labels

    trajectory = Trajectory(prompt="")
    trajectory.add("model", "code", [11, 12])
    trajectory.add("tool", "out", [13, 14, 15])
    trajectory.add("model", "end", [16])
    assert response_labels(trajectory) == [11, 12, -100, -100, -100, 16]


def test_a_tokenizer_without_chat_template_gets_plain_text_and_eos(embedded_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_dir)
    tokenizer.chat_template = None
    row = tokenize_record(tokenizer, tir_record())
    text = tokenizer.decode(row["input_ids"])
    assert text.startswith(
        prompt_messages("What is 6 times 7?", "tir")[0]["content"] + "\n\nWhat is 6 times 7?\n"
    )
    assert row["input_ids"][-1] == row["labels"][-1] == tokenizer.eos_token_id


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("response"), "field 'response': missing"),
        (lambda r: r.pop("segments"), "field 'segments': missing"),
        (lambda r: r.update(prompt="hello"), "field 'prompt'"),
        (lambda r: r["segments"].pop(), "field 'segments': spans end at character"),
        (
            lambda r: r.update(segments=[{"kind": "tool", "start": 0, "end": len(r["response"])}]),
            "no model-written",
        ),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path: Path, change: Any, message: str) -> None:
    bad = tir_record()
    change(bad)
    path = write_jsonl(tmp_path / "data.jsonl", [tir_record(), bad])
    with pytest.raises(InputError, match=r"data.jsonl:2: ") as caught:
        read_records([path])
    assert message in str(caught.value)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.jsonl: no records"):
        read_records([path])


def test_a_missing_data_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(InputError, match=r"nowhere\.jsonl: file not found"):
        run(_config(tmp_path, missing, tmp_path / "out"))


def _free_port() -> int:
    """A port no other process listens on (other test runs may launch torchrun at the same time)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mathforge.cli", "sft", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> bool:
    """Exit 2 and one ``error:`` line, no traceback (progress notes may precede it)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, tiny_model_dir: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    result = _cli("--data", empty, "--base", tiny_model_dir, "--out", tmp_path / "o1")
    assert _one_error_line(result)
    assert "empty.jsonl: no records" in result.stderr

    good = write_jsonl(tmp_path / "good.jsonl", constant_records(3))
    result = _cli("--data", good, "--base", tiny_model_dir, "--out", tmp_path / "o2", "--max-length", "12")
    assert _one_error_line(result)
    assert "good.jsonl:1: field 'prompt': the prompt fills --max-length 12" in result.stderr


# --- training --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("sft") / "const.jsonl", constant_records(60))


def _config(base: Path, data: Path, out: Path, **overrides: Any) -> SFTConfig:
    settings: dict[str, Any] = {
        "data": [str(data)],
        "base": str(base),
        "out": str(out),
        "eval_examples": 6,
        "max_steps": 24,
        "lr": 1e-2,
        "warmup": 0.1,
        "batch_size": 6,
        "grad_accum": 1,
        "max_length": 64,
        "save_steps": 12,
        "logging_steps": 4,
    }
    settings.update(overrides)
    return SFTConfig(**settings)


@pytest.mark.parametrize("native_bf16", [True, False], ids=["cpu-bf16", "cpu-float32"])
def test_tiny_model_learns_and_its_directory_loads_everywhere(
    tmp_path: Path, tiny_model_dir: Path, data_file: Path, native_bf16: bool
) -> None:
    out = tmp_path / "model"
    with force_cpu_bf16(native_bf16):
        result = run(_config(tiny_model_dir, data_file, out))
    assert result.steps == 24 and result.examples == 54 and result.eval_examples == 6
    assert result.eval_loss_start is not None and result.eval_loss is not None
    assert result.eval_loss < 0.3 * result.eval_loss_start  # held-out loss well below the start
    assert result.tokens_per_second and result.tokens_per_second > 0
    # 24 steps of 6 records: 144 records run forward and backward, their padding not counted.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    lengths = [len(tokenize_record(tokenizer, record)["input_ids"]) for record in constant_records(60)]
    assert 144 * min(lengths) <= result.trained_tokens <= 144 * max(lengths)

    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["dtype"] == ("bfloat16" if native_bf16 else "float32") and saved["world_size"] == 1
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "log.jsonl"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 24

    # The policy engine and the reward model both take the directory; greedy text is the target.
    from mathforge.engines import load_engine
    from mathforge.reward.model import RewardModel

    engine = load_engine("hf", str(out), dtype="float32", device="cpu")
    prompt = render_prompt("Item 999: what is the code?", engine.tokenizer, "cot")
    [[completion]] = engine.generate([prompt], SamplingParams(temperature=0.0, max_new_tokens=12))
    assert completion.text == TARGET and completion.finish_reason == "eos"
    reward = RewardModel.from_base(out, max_length=64, device="cpu")
    assert len(reward.score([prompt], [TARGET])) == 1


class _Kill(TrainerCallback):
    """The process dies in step 7 (checkpoints every 5 steps)."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 7:
            raise RuntimeError("killed")


class _CtrlC(TrainerCallback):
    """A real SIGINT during step 7, as a user's Ctrl-C: that step ends, is saved, and training stops."""

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 6:
            os.kill(os.getpid(), signal.SIGINT)


class _Notices(logging.Handler):
    """The messages transformers logs (its own handler writes to whichever stderr it first saw)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1


SHORT = {"max_steps": 10, "save_steps": 5, "eval_examples": 0}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, data_file: Path) -> Path:
    out = tmp_path_factory.mktemp("whole") / "model"
    with force_cpu_bf16(False):
        assert run(_config(tiny_model_dir, data_file, out, **SHORT)).steps == 10
    return out


@pytest.mark.parametrize(
    ("stop", "error", "checkpoint"), [(_Kill, RuntimeError, 5), (_CtrlC, KeyboardInterrupt, 7)]
)
def test_resume_after_an_interruption_matches_an_uninterrupted_run(
    tmp_path: Path,
    tiny_model_dir: Path,
    data_file: Path,
    uninterrupted: Path,
    stop: type,
    error: type,
    checkpoint: int,
) -> None:
    out = tmp_path / "model"
    handler = signal.getsignal(signal.SIGINT)
    with force_cpu_bf16(False):
        with pytest.raises(error):
            run(_config(tiny_model_dir, data_file, out, **SHORT), callbacks=[stop()])
        assert signal.getsignal(signal.SIGINT) is handler  # training puts back the handler it replaced
        saved = sorted(path.name for path in (out / "checkpoints").iterdir())
        assert saved[-1] == f"checkpoint-{checkpoint}"
        counter = _CountSteps()
        notices = _Notices()
        logging.getLogger("transformers").addHandler(notices)
        try:
            resumed = run(_config(tiny_model_dir, data_file, out, **SHORT), callbacks=[counter])
        finally:
            logging.getLogger("transformers").removeHandler(notices)
        assert resumed.steps == 10 and counter.steps == 10 - checkpoint  # no finished step redone
        # Tokens trained are counted over the whole run, the steps before the interruption included.
        whole = json.loads((uninterrupted / "metrics.json").read_text())
        assert resumed.trained_tokens == whole["trained_tokens"] > 0
        # The tied output layer is restored with the embedding: no "missing keys" notice on resume.
        assert not [message for message in notices.messages if "missing keys" in message]
        with pytest.raises(MathforgeError, match=r"different config \(lr: 0.01 -> 0.001"):
            run(_config(tiny_model_dir, data_file, out, **SHORT, lr=1e-3))

    from safetensors.torch import load_file

    first, second = load_file(uninterrupted / "model.safetensors"), load_file(out / "model.safetensors")
    for name, tensor in first.items():
        assert torch.allclose(tensor, second[name], atol=1e-5), name


def test_a_finished_run_is_not_trained_again(
    tmp_path: Path, tiny_model_dir: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4 steps of 10 per epoch: the run ends inside an epoch, where resuming from the last checkpoint
    # would otherwise train a fifth step.
    from safetensors.torch import load_file

    from mathforge.train import sft

    out = tmp_path / "model"
    settings = {"max_steps": 4, "save_steps": 2, "eval_examples": 0}
    with force_cpu_bf16(False):
        assert run(_config(tiny_model_dir, data_file, out, **settings)).steps == 4
        weights = load_file(out / "model.safetensors")
        before = (out / "model.safetensors").read_bytes()
        counter = _CountSteps()
        with monkeypatch.context() as patch:  # the stored result comes back before any tokenizing
            patch.setattr(sft, "encode_records", _fail_if_called)
            again = run(_config(tiny_model_dir, data_file, out, **settings), callbacks=[counter])
        assert counter.steps == 0 and again.steps == 4
        assert (out / "model.safetensors").read_bytes() == before

        (out / "metrics.json").unlink()  # killed after the last checkpoint, before the end files
        (out / "model.safetensors").unlink()
        finished = run(_config(tiny_model_dir, data_file, out, **settings), callbacks=[counter])
    assert counter.steps == 0 and finished.steps == 4
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4
    for name, tensor in load_file(out / "model.safetensors").items():
        assert torch.equal(tensor, weights[name]), name

    final = (out / "model.safetensors").read_bytes()
    assert prune_checkpoints(out) > 0  # what the loop does to a finished stage: it stays finished
    with force_cpu_bf16(False):
        assert run(_config(tiny_model_dir, data_file, out, **settings), callbacks=[counter]).steps == 4
    assert counter.steps == 0 and (out / "model.safetensors").read_bytes() == final


def test_a_run_recorded_before_length_grouping_resumes_in_random_order(
    tmp_path: Path, tiny_model_dir: Path, data_file: Path
) -> None:
    import yaml

    out = tmp_path / "model"
    settings = {"max_steps": 4, "save_steps": 2, "eval_examples": 0}
    with force_cpu_bf16(False):
        run(_config(tiny_model_dir, data_file, out, group_by_length=False, **settings))
        config_file = out / "config.yaml"
        recorded = yaml.safe_load(config_file.read_text())
        del recorded["group_by_length"]  # as an earlier version wrote it
        config_file.write_text(yaml.safe_dump(recorded))
        (out / "metrics.json").unlink()  # killed after the last checkpoint, before the end files
        resumed = run(_config(tiny_model_dir, data_file, out, **settings))  # grouping on by default
        assert resumed.steps == 4
        assert yaml.safe_load(config_file.read_text())["group_by_length"] is False
        with pytest.raises(MathforgeError, match=r"group_by_length: False -> True"):
            run(_config(tiny_model_dir, data_file, out, **{**settings, "max_steps": 6}))


def _fail_if_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("called")


def test_packing_gives_the_same_loss_as_padding(
    tmp_path: Path, tiny_model_dir: Path, data_file: Path
) -> None:
    with force_cpu_bf16(False):
        plain = run(_config(tiny_model_dir, data_file, tmp_path / "plain", max_steps=1))
        packed = run(_config(tiny_model_dir, data_file, tmp_path / "packed", max_steps=1, packing=True))
    assert packed.eval_loss_start == pytest.approx(plain.eval_loss_start, rel=1e-4)


def test_padding_batches_to_a_multiple_leaves_the_loss_unchanged(
    tmp_path: Path, tiny_model_dir: Path, data_file: Path
) -> None:
    with force_cpu_bf16(False):
        plain = run(_config(tiny_model_dir, data_file, tmp_path / "a", max_steps=1, pad_to_multiple_of=0))
        padded = run(_config(tiny_model_dir, data_file, tmp_path / "b", max_steps=1, pad_to_multiple_of=64))
    assert padded.eval_loss_start == pytest.approx(plain.eval_loss_start, rel=1e-5)
    assert padded.train_loss == pytest.approx(plain.train_loss, rel=1e-4)


def test_two_processes_follow_one_process_at_the_same_global_batch(
    tmp_path: Path, tiny_model_dir: Path, data_file: Path
) -> None:
    common = [
        "--data",
        data_file,
        "--base",
        tiny_model_dir,
        "--max-steps",
        "6",
        "--lr",
        "3e-3",
        "--warmup",
        "0.1",
    ]
    common += ["--eval-examples", "6", "--max-length", "64", "--logging-steps", "1", "--grad-accum", "1"]
    env = {"MATHFORGE_CPU_BF16": "0", "OMP_NUM_THREADS": "1"}
    single = _cli(*common, "--batch-size", "6", "--out", tmp_path / "one", env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
    ]
    command = [
        *torchrun,
        "-m",
        "mathforge.cli",
        "sft",
        *map(str, common),
        "--batch-size",
        "3",
        "--out",
        str(tmp_path / "two"),
    ]
    double = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert double.returncode == 0, double.stderr[-3000:]

    import yaml

    assert yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())["world_size"] == 2

    def losses(out: Path) -> list[float]:
        return [json.loads(line)["loss"] for line in (out / "log.jsonl").open() if '"loss"' in line]

    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    assert one[-1] < one[0]
    assert two == pytest.approx(one, rel=2e-3)


@pytest.mark.parametrize("name", ["deepspeed_zero2", "deepspeed_zero3", "fsdp"])
def test_shipped_accelerate_configs_load(name: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(Path(__file__).parents[1] / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == ("FSDP" if name == "fsdp" else "DEEPSPEED")
    assert config.mixed_precision == "bf16"
    if name != "fsdp":
        assert config.deepspeed_config["zero_stage"] == int(name[-1])
