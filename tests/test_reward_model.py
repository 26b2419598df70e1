"""RewardModel: format, padding invariance, save/load round trip; plus the tiny models other RM tests use."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mathforge.errors import MathforgeError  # noqa: E402
from mathforge.reward.model import RewardModel, closing_text  # noqa: E402

SPECIAL = ["<pad>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"]
WORDS = [
    "system",
    "user",
    "assistant",
    "good",
    "bad",
    "the",
    "answer",
    "is",
    "so",
    "we",
    "add",
    "+",
    "=",
    "?",
]
VOCAB = SPECIAL + WORDS + [str(digit) for digit in range(10)]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def build_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A word-level ChatML tokenizer over a tiny vocabulary (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel(vocab={tok: i for i, tok in enumerate(VOCAB)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_base_model(path: Path, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    """Save a tiny randomly initialised Llama causal LM with the tiny tokenizer to ``path``."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


def prompt_for(question: str) -> str:
    return build_tokenizer().apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def synthetic_groups(n_problems: int, n: int = 6, seed: int = 0) -> list[dict]:
    """RM data where correctness is learnable: correct responses contain "good", wrong ones "bad",
    at a random place among random filler words; every problem has 1..n-1 correct responses."""
    rng = random.Random(seed)
    filler = ["the", "answer", "is", "so", "we", "add", "+", "="] + [str(digit) for digit in range(10)]
    lines = []
    for index in range(n_problems):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        k = rng.randint(1, n - 1)
        correct = [True] * k + [False] * (n - k)
        rng.shuffle(correct)
        responses = []
        for flag in correct:
            words = [rng.choice(filler) for _ in range(rng.randint(4, 12))]
            words.insert(rng.randint(0, len(words)), "good" if flag else "bad")
            responses.append(" ".join(words))
        lines.append(
            {
                "id": f"p{index}",
                "prompt": prompt_for(f"{a} + {b} ?"),
                "responses": responses,
                "correct": correct,
            }
        )
    return lines


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base_model(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def reward_model(base_dir: Path) -> RewardModel:
    torch.manual_seed(1)
    return RewardModel.from_base(base_dir, max_length=64, device="cpu")


RESPONSES = ["the answer is 2", "so we add 1 + 1 = 2 the answer is 2", "bad", "1 + 1 = 3 the answer is 3"]


def test_closing_text_comes_from_the_chat_template() -> None:
    tokenizer = build_tokenizer()
    assert closing_text(tokenizer) == "<|im_end|>"
    tokenizer.chat_template = None
    assert closing_text(tokenizer) == "<eos>"


def test_encode_appends_the_end_of_turn_token_once(reward_model: RewardModel) -> None:
    prompt = prompt_for("1 + 1 ?")
    ids = reward_model.encode(prompt, "the answer is 2")
    end_id = reward_model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ids[-1] == end_id
    assert ids == reward_model.encode(prompt, "the answer is 2<|im_end|>")
    prompt_ids = reward_model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids


def test_encode_cuts_the_middle_and_keeps_the_scored_end(reward_model: RewardModel) -> None:
    prompt = prompt_for("1 + 1 ?")
    long_response = " ".join(["so we add 1 + 1"] * 30) + " the answer is 2"
    ids = reward_model.encode(prompt, long_response)
    assert len(ids) == reward_model.format.max_length
    tokens = reward_model.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[-5:] == ["the", "answer", "is", "2", "<|im_end|>"]
    prompt_ids = reward_model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids  # a short prompt is kept whole
    long_prompt = prompt_for(" ".join(["1 + 1"] * 40) + " ?")
    ids = reward_model.encode(long_prompt, long_response)
    tokens = reward_model.tokenizer.convert_ids_to_tokens(ids)
    half = reward_model.format.max_length // 2
    assert len(ids) == 2 * half
    assert tokens[half - 2 : half] == ["<|im_start|>", "assistant"]  # a long prompt keeps its end
    assert tokens[-2:] == ["2", "<|im_end|>"]


def test_padding_does_not_change_a_score(reward_model: RewardModel) -> None:
    prompt = prompt_for("1 + 1 ?")
    batched = reward_model.score([prompt] * len(RESPONSES), RESPONSES, batch_size=len(RESPONSES))
    single = [reward_model.score([prompt], [response])[0] for response in RESPONSES]
    assert batched == pytest.approx(single, abs=1e-5)
    assert len(set(batched)) == len(batched)  # distinct inputs, distinct scores: the head reads real tokens


def test_left_padding_gives_the_same_scores(reward_model: RewardModel) -> None:
    prompt = prompt_for("1 + 1 ?")
    encoded = [reward_model.encode(prompt, response) for response in RESPONSES]
    width = max(len(ids) for ids in encoded)
    pad = reward_model.pad_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
    with torch.no_grad():
        left = reward_model(input_ids, attention_mask).tolist()
    assert left == pytest.approx(reward_model.score([prompt] * len(RESPONSES), RESPONSES), abs=1e-5)


def test_save_load_round_trip_gives_identical_scores(reward_model: RewardModel, tmp_path: Path) -> None:
    prompt = prompt_for("2 + 2 ?")
    before = reward_model.score([prompt] * len(RESPONSES), RESPONSES)
    reward_model.save_pretrained(tmp_path / "rm")
    loaded = RewardModel.from_pretrained(tmp_path / "rm", dtype=torch.float32, device="cpu")
    assert loaded.format == reward_model.format
    assert loaded.score([prompt] * len(RESPONSES), RESPONSES) == before
    assert sorted(p.name for p in (tmp_path / "rm").glob("*.json")) >= ["config.json", "reward_config.json"]


def test_qwen_style_reward_checkpoint_loads(reward_model: RewardModel, tmp_path: Path) -> None:
    """A checkpoint with the Qwen2.5-Math-RM layout (head under score.*, no reward_config.json)."""
    from safetensors.torch import load_file, save_file

    reward_model.save_pretrained(tmp_path / "rm")
    weights = load_file(tmp_path / "rm" / "model.safetensors")
    renamed = {
        key.replace("head.", "score.", 1) if key.startswith("head.") else key: v for key, v in weights.items()
    }
    save_file(renamed, tmp_path / "rm" / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "rm" / "reward_config.json").unlink()
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    config["architectures"] = ["Qwen2ForRewardModel"]
    (tmp_path / "rm" / "config.json").write_text(json.dumps(config))
    loaded = RewardModel.from_pretrained(tmp_path / "rm", dtype=torch.float32, device="cpu")
    prompt = prompt_for("2 + 2 ?")
    assert loaded.score([prompt], [RESPONSES[0]]) == reward_model.score([prompt], [RESPONSES[0]])


def test_a_causal_lm_directory_is_not_taken_for_a_reward_model(base_dir: Path) -> None:
    with pytest.raises(MathforgeError, match="not a reward model directory"):
        RewardModel.from_pretrained(base_dir, device="cpu")


def test_score_checks_lengths(reward_model: RewardModel) -> None:
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        reward_model.score(["a", "b"], ["c"])
