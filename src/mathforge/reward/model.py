"""The math reward model: a causal LM backbone whose LM head is replaced by a two-layer scalar head.

Layout on disk (an "RM directory"): ``config.json`` of the backbone, ``model.safetensors`` (or
shards with an index) holding ``model.*`` (backbone) and ``head.*`` tensors, the tokenizer, and
``reward_config.json`` (how text is turned into the scored token sequence). Qwen2.5-Math-RM
checkpoints (same backbone names, head under ``score.*``) load here as well.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from mathforge.errors import MathforgeError
from mathforge.runtime import placement, resolve_device

REWARD_CONFIG_NAME = "reward_config.json"
_HEAD_PREFIXES = ("head.", "score.")
_END_MARKER = "MATHFORGE_RESPONSE_END_MARKER"


@dataclass(frozen=True)
class RewardFormat:
    """How a (prompt, response) pair becomes the token sequence the head reads, saved with the model."""

    end_text: str
    """Appended to every response (the chat template's end-of-turn token) so the score is always read
    at the same kind of token."""
    max_length: int = 2048
    """Longer sequences keep the end of the prompt and the end of the response (see ``encode``)."""


def closing_text(tokenizer: PreTrainedTokenizerBase) -> str:
    """The text the chat template puts after an assistant message (e.g. ``<|im_end|>``), else EOS."""
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": _END_MARKER}]
        try:
            rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception:  # a template with stricter role rules: fall back to EOS below
            rendered = ""
        if isinstance(rendered, str) and _END_MARKER in rendered:
            return rendered.split(_END_MARKER, 1)[1].strip()
    return tokenizer.eos_token or ""


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``(input_ids, attention_mask)``."""
    width = max(len(seq) for seq in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


class RewardModel(nn.Module):
    """Backbone (``self.model``) + scalar head (``self.head``: Linear, ReLU, Linear) at the last token."""

    def __init__(self, backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, fmt: RewardFormat):
        super().__init__()
        self.model = backbone
        self.tokenizer = tokenizer
        self.format = fmt
        hidden = backbone.config.get_text_config().hidden_size
        # The head of Qwen2.5-Math-RM: two linear layers with a ReLU between.
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.head.to(device=backbone.device, dtype=backbone.dtype)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    @property
    def config(self) -> Any:
        """The backbone's config (the Trainer and accelerate look here)."""
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- construction and persistence ----

    @classmethod
    def from_base(
        cls,
        path: str | Path,
        *,
        max_length: int = 2048,
        dtype: torch.dtype | str = torch.float32,
        device: str | torch.device | None = None,
    ) -> RewardModel:
        """A new RM with a fresh head on a causal LM (directory or known name; normally the SFT policy)."""
        from mathforge.models import resolve_model

        path = resolve_model(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        backbone = _load_backbone(path, dtype)
        model = cls(
            backbone, tokenizer, RewardFormat(end_text=closing_text(tokenizer), max_length=max_length)
        )
        return model.to(resolve_device(device))

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype | str = "auto",
        device: str | torch.device | None = None,
    ) -> RewardModel:
        """Load an RM directory; ``dtype="auto"``: bfloat16 where it is fast on ``device``, else float32."""
        path = Path(path)
        where = placement(device, dtype)
        fmt_file = path / REWARD_CONFIG_NAME
        config_file = path / "config.json"
        if not config_file.is_file():
            raise MathforgeError(f"{path}: not a model directory (no config.json)")
        if fmt_file.is_file():
            fmt_fields = json.loads(fmt_file.read_text(encoding="utf-8"))
            fmt_fields = {key: fmt_fields[key] for key in ("end_text", "max_length") if key in fmt_fields}
        else:
            architectures = json.loads(config_file.read_text(encoding="utf-8")).get("architectures") or []
            if not any(name.endswith("ForRewardModel") for name in architectures):
                raise MathforgeError(
                    f"{path}: not a reward model directory (no {REWARD_CONFIG_NAME}); "
                    "train one with `mathforge rm train --base MODEL ...`"
                )
            fmt_fields = {}  # a Qwen2.5-Math-RM checkpoint: its chat template gives the end token
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        fmt = RewardFormat(**{"end_text": closing_text(tokenizer), **fmt_fields})
        backbone = _load_backbone(path, where.dtype)
        model = cls(backbone, tokenizer, fmt)
        model.head.load_state_dict(_load_head(path), strict=True)
        return model.to(where.device).eval()

    def save_pretrained(
        self,
        path: str | Path,
        *,
        state_dict: dict[str, torch.Tensor] | None = None,
        is_main_process: bool = True,
        max_shard_size: int | str = "5GB",
    ) -> None:
        """Write an RM directory; ``state_dict`` lets a distributed trainer pass the gathered weights."""
        from huggingface_hub import save_torch_state_dict
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        if not is_main_process:
            return
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("model*.safetensors*"):
            stale.unlink()
        state_dict = state_dict if state_dict is not None else self.state_dict()
        quiet_already = are_progress_bars_disabled()
        disable_progress_bars()  # a bar per checkpoint would drown the training log
        try:
            save_torch_state_dict(state_dict, path, max_shard_size=max_shard_size, metadata={"format": "pt"})
        finally:
            if not quiet_already:
                enable_progress_bars()
        config = self.model.config
        architectures = config.architectures
        config.architectures = [type(self.model).__name__]  # what the weights are, besides the head
        try:
            config.save_pretrained(path)
        finally:
            config.architectures = architectures
        (path / REWARD_CONFIG_NAME).write_text(json.dumps(asdict(self.format), indent=2) + "\n", "utf-8")
        self.tokenizer.save_pretrained(str(path))

    def train_top_layers(self, count: int) -> None:
        """Freeze the embeddings and all but the top ``count`` transformer layers (the head always trains).

        Frozen layers run without building an autograd graph, so a step costs little more than a
        forward pass: on a CPU this is what makes training a full-size backbone practical.
        """
        layers = getattr(self.model, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise MathforgeError(f"cannot freeze layers of {type(self.model).__name__}: no `layers` list")
        if not 0 <= count <= len(layers):
            raise MathforgeError(f"--train-layers must be between 0 and {len(layers)}, got {count}")
        self.model.requires_grad_(False)
        for layer in layers[len(layers) - count :]:
            layer.requires_grad_(True)
        final_norm = getattr(self.model, "norm", None)
        if isinstance(final_norm, nn.Module):
            final_norm.requires_grad_(True)

    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict[str, Any] | None = None, **options: Any
    ) -> None:
        """Delegate to the backbone (the Trainer calls this when activation checkpointing is on)."""
        self.model.activation_checkpointing_enable(
            activation_checkpointing_kwargs=activation_checkpointing_kwargs, **options
        )

    # ---- scoring ----

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One float32 score per sequence, read at its last non-padding token (left or right padding)."""
        # Positions count real tokens only, so a left-padded sequence sees the same positions as alone.
        position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        width = attention_mask.shape[1]
        last = width - 1 - attention_mask.flip(dims=[1]).argmax(dim=1)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.head(hidden[rows, last]).squeeze(-1).float()

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of ``prompt + response + end_text``, cut to ``max_length``.

        The prompt is the fully rendered chat prompt, so no special tokens are added. When too
        long, the middle goes: the prompt keeps its end (the question and the assistant header,
        at least half the budget when it needs it) and the response keeps its end (the answer and
        the end token the score is read at).
        """
        end = self.format.end_text
        if end and not response.rstrip().endswith(end):
            response = response + end
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
        budget = self.format.max_length
        if len(prompt_ids) + len(response_ids) <= budget:
            return prompt_ids + response_ids
        keep_prompt = min(len(prompt_ids), max(budget - len(response_ids), budget // 2))
        keep_response = budget - keep_prompt
        return prompt_ids[len(prompt_ids) - keep_prompt :] + response_ids[len(response_ids) - keep_response :]

    @torch.inference_mode()
    def score(
        self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 8, progress: bool = False
    ) -> list[float]:
        """Reward of each (prompt, response) pair, batched by similar length; order is kept."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [self.encode(prompt, response) for prompt, response in zip(prompts, responses, strict=True)]
        order = sorted(range(len(encoded)), key=lambda index: -len(encoded[index]))
        scores = [0.0] * len(encoded)
        was_training = self.training
        self.eval()
        try:
            with tqdm(total=len(order), desc="scoring", unit="resp", disable=not progress) as bar:
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    input_ids, attention_mask = pad_right([encoded[row] for row in rows], self.pad_id)
                    values = self(input_ids.to(self.device), attention_mask.to(self.device))
                    for row, value in zip(rows, values.tolist(), strict=True):
                        scores[row] = value
                    bar.update(len(rows))
        finally:
            self.train(was_training)
        return scores


def _load_backbone(path: Path, dtype: torch.dtype | str) -> PreTrainedModel:
    """The backbone from the ``model.*`` tensors, quietly: the loader would report the head (or a causal LM's
    ``lm_head``) as unused, which is expected here."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModel.from_pretrained(str(path), dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)


def _load_head(path: Path) -> dict[str, torch.Tensor]:
    """The head tensors of an RM directory (single file or shards) without their prefix: ``head.*`` as
    written by :meth:`RewardModel.save_pretrained`, or ``score.*`` in a Qwen2.5-Math-RM checkpoint."""
    from safetensors import safe_open

    index_file = path / "model.safetensors.index.json"
    if index_file.is_file():
        weight_map: dict[str, str] = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
        files = sorted({name for key, name in weight_map.items() if key.startswith(_HEAD_PREFIXES)})
    else:
        files = ["model.safetensors"]
    head: dict[str, torch.Tensor] = {}
    for name in files:
        if not (path / name).is_file():
            raise MathforgeError(f"{path}: weights file {name} is missing")
        with safe_open(str(path / name), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open handles are not iterable)
                if key.startswith(_HEAD_PREFIXES):
                    head[key.split(".", 1)[1]] = handle.get_tensor(key)
    if not head:
        raise MathforgeError(f"{path}: no reward head (head.* or score.*) tensors in the weights")
    return head
