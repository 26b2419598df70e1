"""SFT loss on the trained tokens only, where TRL's log-prob kernel has no compact path (the CPU).

TRL's ``SFTTrainer`` projects the hidden states through the LM head with its chunked log-prob
kernel. On CUDA/XPU it scores only the positions whose label is set; elsewhere it scores every
position (kept fixed so compilers see one tile shape), prompt, executor output and padding
included, with the head product accumulated in float32 outside autocast. Our records leave most
positions unlabelled (system prompt, question, executor output, padding), so on a CPU that path
spent about half of an SFT step on logits nobody trains on. :class:`TrainedTokenSFTTrainer` keeps
TRL's trainer (data, collation, packing, logging, checkpoints, DDP) and replaces only the loss on
CPU: the backbone runs as usual, the LM head runs on the labelled positions only, under the same
autocast as the rest of the model, and the loss is the same token-level NLL (sum over trained
tokens divided by the trained-token count of the whole accumulated batch, as TRL divides it).
The entropy and mean-token-accuracy metrics TRL logs are computed on the same positions.

The head is added by patching the model's ``forward`` (as TRL adds its own fused head), so the
call still goes through DDP's and accelerate's wrappers (gradient sync, autocast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput
from trl import SFTTrainer

from mathforge.train.tokenize import IGNORE_INDEX

TRAINED_ONLY = "trained_tokens_only"

# Config fields of models whose logits are not the plain head product (softcapping, scaling):
# those keep TRL's kernel, which applies them.
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


@dataclass
class TrainedTokenOutput(ModelOutput):
    """Sums over the trained positions of one micro-batch (reduced by the trainer)."""

    nll_sum: torch.Tensor | None = None
    trained: torch.Tensor | None = None
    entropy_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None


def plain_head(model: Any) -> bool:
    """Whether the model's logits are its LM head's output as is (no softcap, no scale)."""
    text_config = model.config.get_text_config()
    return all(getattr(text_config, name, None) is None for name in _LOGIT_TRANSFORMS)


def add_trained_token_head(model: Any) -> None:
    """Let ``model(..., labels=L, trained_tokens_only=True)`` return :class:`TrainedTokenOutput`.

    Without the flag the forward is the one the model had, so generation and TRL's paths are
    unchanged.
    """
    original_forward = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.pop(TRAINED_ONLY, False):
            return original_forward(*args, **kwargs)
        labels = kwargs.pop("labels")
        kwargs.pop("num_items_in_batch", None)
        kwargs["use_cache"] = False
        hidden = model.get_decoder()(*args, **kwargs).last_hidden_state
        targets = labels[:, 1:]
        trained = targets != IGNORE_INDEX
        logits = model.get_output_embeddings()(hidden[:, :-1][trained]).float()
        wanted = targets[trained]
        nll_sum = F.cross_entropy(logits, wanted, reduction="sum")
        with torch.no_grad():
            log_probs = logits.detach().log_softmax(-1)
            entropy_sum = -(log_probs.exp() * log_probs).sum()
            correct = (log_probs.argmax(-1) == wanted).sum()
        return TrainedTokenOutput(
            nll_sum=nll_sum, trained=trained.sum(), entropy_sum=entropy_sum, correct=correct
        )

    model.forward = forward


class TrainedTokenSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` whose NLL loss, on a CPU, projects only the trained positions.

    Any other setting (a GPU, label smoothing, a custom loss, DFT, a model with transformed
    logits, returning outputs) goes to TRL's ``compute_loss`` unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained_tokens_only = (
            self.args.device.type == "cpu"
            and self.args.loss_type == "nll"
            and self.label_smoother is None
            and self.compute_loss_func is None
            and not self.aux_loss_enabled
            and plain_head(self.model)
        )
        if self.trained_tokens_only:
            add_trained_token_head(self.model)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if return_outputs or not self.trained_tokens_only:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        outputs = model(**inputs, **{TRAINED_ONLY: True})
        count = outputs.trained if num_items_in_batch is None else num_items_in_batch
        loss = outputs.nll_sum / torch.as_tensor(count).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count is global
        gather = self.accelerator.gather_for_metrics
        valid = gather(outputs.trained).sum()
        if valid > 0:
            self._metrics[mode]["entropy"].append((gather(outputs.entropy_sum).sum() / valid).item())
            self._metrics[mode]["mean_token_accuracy"].append((gather(outputs.correct).sum() / valid).item())
        if mode == "train":
            self._total_train_tokens += _batch_tokens(inputs, gather)
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss


def _batch_tokens(inputs: dict[str, Any], gather: Any) -> int:
    """Tokens in the batch across ranks, padding excluded (TRL's ``num_tokens`` count)."""
    if "attention_mask" in inputs:
        return int(gather(inputs["attention_mask"].sum()).sum().item())
    local = torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
    return int(gather(local).sum().item())
