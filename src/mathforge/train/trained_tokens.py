"""The LM head on trained tokens only, where TRL's log-prob kernel has no compact path (the CPU).

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
:class:`CompletionTokenGRPOTrainer` does the same for GRPO's per-token log-probabilities (policy
and reference), which TRL's CPU path computes for the prompt positions too.

The head is added by patching the model's ``forward`` (as TRL adds its own fused head), so the
call still goes through DDP's and accelerate's wrappers (gradient sync, autocast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput
from trl import GRPOTrainer, SFTTrainer

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
    """Per position of the shifted sequence (``[batch, length - 1]``), zero where no label is set:
    the label's log-probability (differentiable) and the entropy (detached, when asked); and counts
    of trained positions and of those whose label is the top token (when asked)."""

    log_probs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    trained: torch.Tensor | None = None
    correct: torch.Tensor | None = None


def plain_head(model: Any) -> bool:
    """Whether the model's logits are its LM head's output as is (no softcap, no scale)."""
    text_config = model.config.get_text_config()
    return all(getattr(text_config, name, None) is None for name in _LOGIT_TRANSFORMS)


def add_trained_token_head(model: Any) -> None:
    """Let ``model(..., labels=L, trained_tokens_only=True[, temperature=T, statistics=False])``
    return :class:`TrainedTokenOutput`, projecting only the positions whose next-token label is set
    (``statistics=False``: no entropy or accuracy).

    Without the flag the forward is the one the model had, so generation and TRL's paths are
    unchanged.
    """
    original_forward = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.pop(TRAINED_ONLY, False):
            return original_forward(*args, **kwargs)
        labels = kwargs.pop("labels")
        temperature = kwargs.pop("temperature", 1.0)
        statistics = kwargs.pop("statistics", True)
        kwargs.pop("num_items_in_batch", None)
        kwargs["use_cache"] = False
        hidden = model.get_decoder()(*args, **kwargs).last_hidden_state
        targets = labels[:, 1:]
        trained = targets != IGNORE_INDEX
        logits = model.get_output_embeddings()(hidden[:, :-1][trained]).float()
        if temperature != 1.0:
            logits = logits / temperature
        log_softmax = logits.log_softmax(-1)
        wanted = targets[trained]
        picked = log_softmax.gather(-1, wanted[:, None]).squeeze(-1)
        grid = torch.zeros(trained.shape, dtype=picked.dtype, device=picked.device)
        output = TrainedTokenOutput(log_probs=grid.masked_scatter(trained, picked), trained=trained.sum())
        if statistics:  # a pass over the whole vocabulary per position: only when someone reads them
            with torch.no_grad():
                detached = log_softmax.detach()
                output.entropy = grid.masked_scatter(trained, -(detached.exp() * detached).sum(-1))
                output.correct = (detached.argmax(-1) == wanted).sum()
        return output

    model.forward = forward


class TrainedTokenSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` whose NLL loss, on a CPU, projects only the trained positions.

    Any other setting (a GPU, label smoothing, a custom loss, DFT, a model with transformed
    logits, returning outputs) goes to TRL's ``compute_loss`` unchanged. ``group_by_length``
    draws each global batch among records of similar length (less padding to compute).
    """

    def __init__(self, *args: Any, group_by_length: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group_by_length = group_by_length
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

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """With ``group_by_length``, each global batch holds records of similar length
        (:mod:`mathforge.train.length_groups`); otherwise the Trainer's own sampler."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or dataset is None:
            return super()._get_train_sampler(train_dataset)
        from mathforge.train.length_groups import LengthGroupedBatches

        args = self.args
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        lengths = [len(ids) for ids in dataset["input_ids"]]
        seed = args.data_seed if args.data_seed is not None else args.seed
        return LengthGroupedBatches(lengths, batch, seed)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if return_outputs or not self.trained_tokens_only:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        outputs = model(**inputs, **{TRAINED_ONLY: True})
        count = outputs.trained if num_items_in_batch is None else num_items_in_batch
        loss = -outputs.log_probs.sum() / torch.as_tensor(count).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count is global
        gather = self.accelerator.gather_for_metrics
        valid = gather(outputs.trained).sum()
        if valid > 0:
            entropy = gather(outputs.entropy.sum()).sum()
            self._metrics[mode]["entropy"].append((entropy / valid).item())
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


class CompletionTokenGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` whose per-token log-probabilities, on a CPU, project only the completion.

    TRL's CPU path scores the prompt positions too and discards them; this one projects the
    completion positions only, for the policy and the reference model alike. Multimodal inputs,
    the MoE auxiliary loss, an entropy bonus (which needs the entropy's gradient) and models with
    transformed logits go to TRL's method unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.completion_tokens_only = (
            self.args.device.type == "cpu" and not self._entropy_bonus_enabled and plain_head(self.model)
        )
        if self.completion_tokens_only:
            add_trained_token_head(self.model)
            if self.ref_model is not None:
                add_trained_token_head(self.ref_model)

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **multimodal: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if (
            not self.completion_tokens_only
            or compute_aux_loss
            or any(value is not None for value in multimodal.values())
        ):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size,
                compute_entropy, compute_aux_loss, **multimodal,
            )  # fmt: skip
        batch_size = batch_size or input_ids.size(0)
        log_probs, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids, mask = input_ids[start : start + batch_size], attention_mask[start : start + batch_size]
            labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
            labels[:, :-logits_to_keep] = IGNORE_INDEX  # only the completion is scored
            with self.accelerator.autocast():
                outputs = model(
                    input_ids=ids,
                    attention_mask=mask,
                    labels=labels,
                    temperature=self.temperature,
                    statistics=compute_entropy,
                    **{TRAINED_ONLY: True},
                )
            log_probs.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(outputs.entropy[:, -logits_to_keep:])
        return torch.cat(log_probs), torch.cat(entropies) if compute_entropy else None, None
