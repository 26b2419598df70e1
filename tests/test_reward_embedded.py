"""The reward model on the embedded SmolLM2-135M: chat format, padding invariance, train-save-load (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mathforge.prompts import render_prompt  # noqa: E402
from mathforge.reward.model import RewardModel  # noqa: E402
from mathforge.reward.training import RewardTrainingConfig, train_reward_model  # noqa: E402

pytestmark = pytest.mark.slow

RESPONSES = [
    "We add 7 and 2: 7 + 2 = 9. The answer is $\\boxed{9}$.",
    "7 - 2 = 5, so the answer is $\\boxed{5}$.",
    "There are 7 red and 2 green apples, 9 in all. \\boxed{9}",
    "The basket has \\boxed{14} apples.",
]


def test_embedded_reward_model_trains_saves_and_loads(embedded_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RewardModel.from_base(embedded_dir, max_length=256, device="cpu")
    assert model.format.end_text == "<|im_end|>"
    prompt = render_prompt(
        "Seven red apples and two green apples are in the basket. How many?", model.tokenizer
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = model.encode(prompt, RESPONSES[0])
    assert model.tokenizer.convert_ids_to_tokens(ids[-1]) == "<|im_end|>"
    batched = model.score([prompt] * 4, RESPONSES)
    single = [model.score([prompt], [response])[0] for response in RESPONSES]
    assert batched == pytest.approx(single, abs=1e-4)

    data = tmp_path / "data.jsonl"
    line = {"prompt": prompt, "responses": RESPONSES, "correct": [True, False, True, False]}
    data.write_text("".join(json.dumps({"id": f"p{i}", **line}) + "\n" for i in range(4)))
    cfg = RewardTrainingConfig(
        base=str(embedded_dir),
        data=str(data),
        out=str(tmp_path / "rm"),
        eval_fraction=0.25,
        max_steps=3,
        lr=1e-4,
        grad_accum=1,
        max_length=256,
        train_layers=2,
        save_steps=3,
    )
    result = train_reward_model(cfg)
    assert result.steps == 3
    trained = RewardModel.from_pretrained(cfg.out, dtype=torch.float32, device="cpu")
    scores = trained.score([prompt] * 4, RESPONSES)
    assert scores != batched  # the top layers and the head moved
    assert (
        RewardModel.from_pretrained(cfg.out, dtype=torch.float32, device="cpu").score([prompt] * 4, RESPONSES)
        == scores
    )
    # frozen layers are saved unchanged
    first_before = model.model.layers[0].mlp.down_proj.weight
    assert torch.equal(trained.model.layers[0].mlp.down_proj.weight, first_before)
