"""The CPU SFT loss on trained positions only equals TRL's loss, gradients and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import SFTConfig  # noqa: E402

from mathforge.prompts import prompt_messages  # noqa: E402
from mathforge.solve.code import output_block  # noqa: E402
from mathforge.train.records import SFTRecord  # noqa: E402
from mathforge.train.tokenize import IGNORE_INDEX, tokenize_record  # noqa: E402
from mathforge.train.trained_tokens import TrainedTokenSFTTrainer  # noqa: E402


def _records(count: int) -> list[dict[str, Any]]:
    """TIR-shaped records of different lengths: prompt, model text, executor output (masked), model text."""
    rows = []
    for index in range(count):
        first = "Let me compute it." + " Step." * (index % 5) + f"\n```python\nprint({index} * 7)\n```\n"
        tool = output_block(str(index * 7), first)
        last = f"So the answer is $\\boxed{{{index * 7}}}$."
        response = first + tool + last
        record = SFTRecord.from_dict(
            {
                "id": f"r/{index}",
                "prompt": prompt_messages(f"What is {index} times 7?", "tir"),
                "response": response,
                "segments": [
                    {"kind": "model", "start": 0, "end": len(first)},
                    {"kind": "tool", "start": len(first), "end": len(first) + len(tool)},
                    {"kind": "model", "start": len(first) + len(tool), "end": len(response)},
                ],
            }
        )
        rows.append(record)
    return rows


@pytest.fixture()
def trainer(tmp_path: Path, tiny_model_dir: Path) -> TrainedTokenSFTTrainer:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [tokenize_record(tokenizer, record) for record in _records(8)]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_length=256,
    )
    return TrainedTokenSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )


def _loss_and_grads(
    trainer: TrainedTokenSFTTrainer, batch: dict[str, Any], ours: bool
) -> tuple[float, list[Any]]:
    trainer.model.zero_grad()
    trainer.trained_tokens_only = ours
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = [param.grad.clone() for param in trainer.model.parameters() if param.grad is not None]
    return float(loss.detach()), grads


def test_the_trained_token_loss_equals_trls_with_the_same_gradients(trainer: TrainedTokenSFTTrainer) -> None:
    assert trainer.trained_tokens_only  # a CPU run takes this path
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"]
    assert (labels == IGNORE_INDEX).any() and (labels != IGNORE_INDEX).any()  # masked and trained positions
    assert (batch["attention_mask"] == 0).any()  # padding in the batch
    trainer.model.train()

    ours, our_grads = _loss_and_grads(trainer, batch, ours=True)
    our_metrics = {key: list(values) for key, values in trainer._metrics["train"].items()}
    trainer._metrics["train"].clear()
    theirs, their_grads = _loss_and_grads(trainer, batch, ours=False)
    their_metrics = trainer._metrics["train"]

    assert ours == pytest.approx(theirs, rel=1e-5)
    assert len(our_grads) == len(their_grads)
    for mine, reference in zip(our_grads, their_grads, strict=True):
        assert torch.allclose(mine, reference, rtol=1e-4, atol=1e-6)
    assert our_metrics["entropy"][0] == pytest.approx(their_metrics["entropy"][0], rel=1e-4)
    assert our_metrics["mean_token_accuracy"] == their_metrics["mean_token_accuracy"]
    assert our_metrics["num_tokens"] == [int(batch["attention_mask"].sum())]


def test_the_loss_divides_by_the_accumulated_batch_count(trainer: TrainedTokenSFTTrainer) -> None:
    batch = next(iter(trainer.get_train_dataloader()))
    trained = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    alone = trainer.compute_loss(trainer.model, dict(batch))
    accumulated = trainer.compute_loss(
        trainer.model, dict(batch), num_items_in_batch=torch.tensor(3 * trained)
    )
    assert float(accumulated.detach()) == pytest.approx(float(alone.detach()) / 3, rel=1e-5)


def test_other_loss_settings_keep_trls_path(tmp_path: Path, tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [tokenize_record(tokenizer, record) for record in _records(2)]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none", loss_type="dft"
    )
    trainer = TrainedTokenSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    assert not trainer.trained_tokens_only


def test_grpo_completion_log_probs_equal_trls(tmp_path: Path, tiny_model_dir: Path) -> None:
    from trl import GRPOConfig

    from mathforge.train.trained_tokens import CompletionTokenGRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        per_device_train_batch_size=2,
        num_generations=2,
        temperature=0.7,
        beta=0.1,
    )
    trainer = CompletionTokenGRPOTrainer(
        model=model,
        reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": "What is 6 times 7?"}] * 2),
        processing_class=tokenizer,
    )
    assert trainer.completion_tokens_only and trainer.ref_model is not None
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 200, (3, 20), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, :4] = 0  # left-padded prompt
    attention_mask[1, -3:] = 0  # completion padded after its end
    keep = 8
    results = {}
    for ours in (True, False):
        trainer.completion_tokens_only = ours
        trainer.model.zero_grad()
        logps, entropy, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, keep, batch_size=2, compute_entropy=True
        )
        (logps * attention_mask[:, -keep:]).sum().backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
        with torch.no_grad():
            reference, _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.ref_model, input_ids, attention_mask, keep, batch_size=3
            )
        results[ours] = (logps.detach(), entropy, grads, reference)
    valid = attention_mask[:, -keep:].bool()
    (ours_logps, ours_entropy, ours_grads, ours_ref), (logps, entropy, grads, ref) = (
        results[True],
        results[False],
    )
    assert ours_logps.shape == logps.shape == (3, keep)
    assert torch.allclose(ours_logps[valid], logps[valid], atol=1e-5)
    assert torch.allclose(ours_entropy[valid], entropy[valid], atol=1e-4)
    assert torch.allclose(ours_ref[valid], ref[valid], atol=1e-5)
    # The two paths multiply matrices of different shapes, so float32 sums run in another order;
    # how far that moves an entry depends on the CPU's kernels (an AVX2-only CPU: 1.7e-6 on a
    # gradient whose largest entry is 3.2, i.e. 5e-7 of its scale, on an entry of 0.003). The
    # bound is relative to each gradient's scale: a token wrongly in or out of the loss moves
    # entries by a sizeable fraction of it.
    for mine, reference_grad in zip(ours_grads, grads, strict=True):
        scale = reference_grad.abs().max().item()
        assert torch.allclose(mine, reference_grad, rtol=1e-4, atol=1e-5 * scale)
