"""GRPO rollouts and rewards without training: TRL's rollout contract, executor masks, the shaped reward."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mathforge.engines.base import Completion, EngineCapabilities, SamplingParams
from mathforge.train.rewards import MathReward
from mathforge.train.rollouts import Rollout

CODE_ROUND = "Let me compute it.\n```python\nprint(6 * 7)\n```\n"
ANSWER_ROUND = "So the answer is \\boxed{42}."


class ScriptedTirEngine:
    """A token-exact model that writes one program, reads its output, then answers (a test double)."""

    capabilities = EngineCapabilities(token_ids_in=True, logprobs=True)

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: Sequence[Any], params: SamplingParams) -> list[list[Completion]]:
        groups = []
        for prompt in prompts:
            if self.tokenizer.decode(prompt).endswith("```output\n42\n```\n"):  # the executor replied
                ids = self.encode(ANSWER_ROUND)
                sampled = [*ids, self.tokenizer.eos_token_id]
                done = Completion(
                    ANSWER_ROUND, ids, "eos", sampled_ids=sampled, logprobs=[-0.5] * len(sampled)
                )
            else:
                sampled = self.encode(CODE_ROUND + "```output")
                kept = self.encode(CODE_ROUND)
                done = Completion(
                    CODE_ROUND,
                    kept,
                    "stop",
                    "```output",
                    sampled_ids=sampled,
                    logprobs=[-0.25] * len(sampled),
                )
            groups.append([done] * params.n)
        return groups


def _trainer(step: int = 0) -> Any:
    """What a rollout reads from TRL's trainer: the step and the process index."""
    state, accelerator = SimpleNamespace(global_step=step), SimpleNamespace(process_index=0)
    return SimpleNamespace(state=state, accelerator=accelerator)


def test_tir_rollout_masks_exactly_the_executor_output(embedded_tokenizer: Any) -> None:
    from mathforge.sandbox import Sandbox

    tokenizer = embedded_tokenizer
    prompts = ["<|im_start|>user\nWhat is 6 times 7?<|im_end|>\n<|im_start|>assistant\n"] * 2
    with Sandbox() as sandbox:
        rollout = Rollout(
            mode="tir",
            params=SamplingParams(max_new_tokens=64),
            engine_factory=lambda trainer: ScriptedTirEngine(tokenizer),
            sandbox=sandbox,
        )
        output = rollout(prompts, _trainer())
    assert len(output["completion_ids"]) == 2
    for ids, mask in zip(output["completion_ids"], output["env_mask"], strict=True):
        assert len(ids) == len(mask)
        executor = [token for token, keep in zip(ids, mask, strict=True) if keep == 0]
        assert tokenizer.decode(executor) == "\n42\n```\n"  # the model wrote the "```output" fence itself
        # The masked tokens are one contiguous span between the program and the answer.
        first, last = mask.index(0), len(mask) - 1 - mask[::-1].index(0)
        assert set(mask[first : last + 1]) == {0}
        assert tokenizer.decode(ids[:first]) == CODE_ROUND + "```output"
        assert tokenizer.decode(ids[last + 1 :], skip_special_tokens=True) == ANSWER_ROUND
        assert ids[-1] == tokenizer.eos_token_id and mask[-1] == 1  # the model's own end of sequence
    for logprobs, mask in zip(output["logprobs"], output["env_mask"], strict=True):
        assert [lp is None for lp in logprobs] == [keep == 0 for keep in mask]
    assert output["prompt_ids"] == [tokenizer(prompts[0], add_special_tokens=False)["input_ids"]] * 2
    assert output["tool_calls"] == [1, 1]
    assert output["tool_ok"] == [1, 1]
    assert output["masked_tokens"] == [output["env_mask"][0].count(0)] * 2
    assert output["answer"] == ["42", "42"]
    assert output["truncated"] == [False, False]


def test_rollout_keeps_trl_order_and_samples_each_prompt_run_as_one_group(embedded_tokenizer: Any) -> None:
    calls: list[tuple[list[str], int]] = []

    class Recording:
        tokenizer = embedded_tokenizer
        capabilities = EngineCapabilities(token_ids_in=True, logprobs=True)

        def encode(self, prompt: str) -> list[int]:
            return [ord(prompt)]

        def generate(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
            calls.append(([chr(p[0]) for p in prompts], params.n))
            return [
                [
                    Completion("", [], "length", sampled_ids=[p[0], j], logprobs=[-1.0, -2.0])
                    for j in range(params.n)
                ]
                for p in prompts
            ]

    rollout = Rollout(mode="cot", params=SamplingParams(), engine_factory=lambda trainer: Recording())
    output = rollout(["a", "a", "a", "b", "b", "b"], _trainer())
    assert calls == [(["a", "b"], 3)]
    assert output["completion_ids"] == [[97, 0], [97, 1], [97, 2], [98, 0], [98, 1], [98, 2]]
    assert output["prompt_ids"] == [[97]] * 3 + [[98]] * 3
    assert output["env_mask"] == [[1, 1]] * 6
    assert output["truncated"] == [True] * 6


@pytest.fixture(scope="module")
def tiny_rm(tiny_model_dir: Path) -> Any:
    from mathforge.reward.model import RewardModel

    return RewardModel.from_base(tiny_model_dir, max_length=256)


def test_shaped_reward_orders_every_correct_response_above_every_wrong_one(tiny_rm: Any) -> None:
    responses = [
        "The answer is \\boxed{12}.",
        "So we get \\boxed{12}",
        "I think \\boxed{13}.",
        "No idea.",
        "12 - 1 = \\boxed{11}",
        "Twelve: \\boxed{12.0}",
    ]
    correct = [True, True, False, False, False, True]
    logged: dict[str, float] = {}
    reward = MathReward(tiny_rm)
    rewards = reward(
        prompts=["What is 3 * 4?"] * len(responses),
        completions=responses,
        completion_ids=[[0]] * len(responses),
        gold=["12"] * len(responses),
        benchmark=["gsm8k"] * len(responses),
        response=responses,
        answer=None,
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    right = [r for r, c in zip(rewards, correct, strict=True) if c]
    wrong = [r for r, c in zip(rewards, correct, strict=True) if not c]
    assert min(right) > max(wrong)
    assert all(0 < r < 1 for r in right) and all(-1 < r < 0 for r in wrong)
    # The RM still orders responses within a class (a random head gives distinct scores).
    assert len(set(rewards)) == len(rewards)
    assert logged["accuracy"] == pytest.approx(0.5)
    assert "rm_mean" in logged


def test_without_a_reward_model_the_reward_is_the_verdict() -> None:
    rewards = MathReward()(
        prompts=["p"] * 3,
        completions=["\\boxed{5}", "\\boxed{6}", "nothing"],
        completion_ids=[[0]] * 3,
        gold=["5"] * 3,
        benchmark=["gsm8k"] * 3,
    )
    assert rewards == [1.0, 0.0, 0.0]
