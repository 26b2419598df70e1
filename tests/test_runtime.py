"""The one device/dtype policy: both CPU branches forced and exercised on any machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from mathforge.engines import SamplingParams, load_engine  # noqa: E402
from mathforge.errors import MathforgeError  # noqa: E402
from mathforge.runtime import (  # noqa: E402
    CPU_BF16_ENV,
    Placement,
    cpu_has_fast_bf16,
    environment,
    force_cpu_bf16,
    placement,
    resolve_dtype,
)

PROMPTS = ["What is 2 + 3?", "Name a prime number.", "Solve x + 1 = 4."]


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_follows_the_forced_probe(native: bool) -> None:
    with force_cpu_bf16(native):
        assert cpu_has_fast_bf16() is native
        assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
        assert placement("cpu").dtype == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype(torch.float16, "cpu") == torch.float16


def test_bad_settings_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MathforgeError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")
    monkeypatch.setenv(CPU_BF16_ENV, "maybe")
    with pytest.raises(MathforgeError, match=CPU_BF16_ENV):
        cpu_has_fast_bf16()


@pytest.mark.parametrize(
    ("device", "dtype", "expected"),
    [
        ("cpu", "bfloat16", {"use_cpu": True, "bf16": True, "fp16": False}),
        ("cpu", "float32", {"use_cpu": True, "bf16": False, "fp16": False}),
        ("cuda", "bfloat16", {"use_cpu": False, "bf16": True, "fp16": False}),
        ("cuda", "float16", {"use_cpu": False, "bf16": False, "fp16": True}),
    ],
)
def test_trainer_arguments_per_placement(device: str, dtype: str, expected: dict[str, bool]) -> None:
    where = Placement(device=torch.device(device), dtype=getattr(torch, dtype))
    assert where.trainer_arguments() == expected


@pytest.mark.parametrize("native", [True, False])
def test_cpu_training_arguments_are_accepted_on_any_cpu(native: bool, tmp_path: Path) -> None:
    # transformers refuses bf16 without a GPU unless the run is declared a CPU run.
    from transformers import TrainingArguments

    with force_cpu_bf16(native):
        where = placement("cpu")
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", **where.trainer_arguments())
    assert args.device.type == "cpu" and args.bf16 is native


def test_environment_names_versions_and_commit() -> None:
    env = environment()
    assert {"torch", "transformers", "mathforge"} <= set(env["versions"])
    assert isinstance(env["cpu_native_bf16"], bool)
    assert env["git_commit"] is None or len(env["git_commit"].removesuffix("+dirty")) == 40


@pytest.mark.parametrize("native", [True, False])
def test_engine_auto_dtype_generates_on_both_cpu_paths(native: bool, tiny_model_dir: Any) -> None:
    with force_cpu_bf16(native):
        engine = load_engine("hf", model=str(tiny_model_dir), dtype="auto", device="cpu")
    assert engine.model.dtype == (torch.bfloat16 if native else torch.float32)
    out = engine.generate(PROMPTS, SamplingParams(max_new_tokens=6))
    assert all(len(group[0].token_ids) == 6 for group in out)


def test_packed_and_plain_layers_give_the_same_greedy_text(tiny_model_dir: Any) -> None:
    from mathforge.engines.hf.kernels import PackedLinear

    packed = load_engine("hf", model=str(tiny_model_dir), dtype="float32", pack_linear=True)
    plain = load_engine("hf", model=str(tiny_model_dir), dtype="float32", pack_linear=False)
    assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
    if torch.backends.mkl.is_available():
        assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
    params = SamplingParams(max_new_tokens=24)
    texts = [[c.text for c in group] for group in packed.generate(PROMPTS, params)]
    assert texts == [[c.text for c in group] for group in plain.generate(PROMPTS, params)]
