"""The listwise loss, the shaped reward and the ranking metrics."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mathforge.reward.ranking import pairwise_accuracy, ranking_metrics, top1_is_correct
from mathforge.reward.shaping import shaped_reward

torch = pytest.importorskip("torch")

from mathforge.reward.loss import listwise_loss  # noqa: E402

# k = 2 correct (indices 0 and 3) of n = 6.
REWARDS = [2.0, -1.0, 0.5, 0.0, 1.0, -0.5]
CORRECT = [True, False, False, True, False, False]
# -log sigmoid(pos - neg) = log(1 + exp(neg - pos)) for the 2 x 4 pairs, computed by hand:
# pos 2.0 vs -1.0, 0.5, 1.0, -0.5 -> margins 3, 1.5, 1, 2.5 -> 0.048587, 0.201413, 0.313262, 0.078890
# pos 0.0 vs -1.0, 0.5, 1.0, -0.5 -> margins 1, -0.5, -1, 0.5 -> 0.313262, 0.974077, 1.313262, 0.474077
HAND_LOSS = (0.048587 + 0.201413 + 0.313262 + 0.078890 + 0.313262 + 0.974077 + 1.313262 + 0.474077) / 8


def _loss(rewards, correct, groups) -> torch.Tensor:
    return listwise_loss(torch.tensor(rewards), torch.tensor(correct), torch.tensor(groups))


def test_loss_matches_the_hand_computed_example() -> None:
    assert _loss(REWARDS, CORRECT, [0] * 6).item() == pytest.approx(HAND_LOSS, abs=1e-5)


def test_loss_is_the_mean_over_problems_not_over_pairs() -> None:
    # problem 1: one pair with margin 0 -> log 2; problem 0: the hand example with 8 pairs
    rewards = [*REWARDS, 0.3, 0.3]
    correct = [*CORRECT, True, False]
    groups = [0] * 6 + [1, 1]
    assert _loss(rewards, correct, groups).item() == pytest.approx((HAND_LOSS + math.log(2)) / 2, abs=1e-5)


def test_groups_without_a_pair_are_skipped() -> None:
    rewards = [*REWARDS, 5.0, -3.0, 7.0, 1.0]
    correct = [*CORRECT, True, True, False, False]  # problem 1 all correct, problem 2 all wrong
    groups = [0] * 6 + [1, 1, 2, 2]
    assert _loss(rewards, correct, groups).item() == pytest.approx(HAND_LOSS, abs=1e-5)


def test_a_batch_without_any_pair_gives_zero_loss_and_zero_gradient() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = listwise_loss(rewards, torch.tensor([True, True, False]), torch.tensor([0, 0, 1]))
    loss.backward()
    assert loss.item() == 0.0
    assert rewards.grad is not None and rewards.grad.abs().sum().item() == 0.0


def test_gradient_raises_correct_scores_and_lowers_wrong_ones() -> None:
    rewards = torch.tensor(REWARDS, requires_grad=True)
    listwise_loss(rewards, torch.tensor(CORRECT), torch.zeros(6, dtype=torch.long)).backward()
    grad = rewards.grad.tolist()
    for value, flag in zip(grad, CORRECT, strict=True):
        # gradient descent moves each score against its gradient: up for correct, down for wrong
        assert value < 0 if flag else value > 0
    assert sum(grad) == pytest.approx(0.0, abs=1e-6)  # the loss depends on differences only
    with torch.no_grad():
        stepped = rewards - 0.1 * rewards.grad
    assert _loss(stepped.tolist(), CORRECT, [0] * 6).item() < HAND_LOSS


def test_loss_does_not_depend_on_the_order_of_responses() -> None:
    order = [4, 0, 5, 2, 3, 1]
    shuffled = _loss([REWARDS[i] for i in order], [CORRECT[i] for i in order], [0] * 6)
    assert shuffled.item() == pytest.approx(HAND_LOSS, abs=1e-5)


# ---- shaped reward ----

scores = st.floats(allow_nan=False, allow_infinity=True)


@given(
    labelled=st.lists(st.tuples(scores, st.booleans()), min_size=2, max_size=12),
    alpha=st.floats(min_value=1e-3, max_value=100.0),
)
def test_every_correct_response_outranks_every_wrong_one(
    labelled: list[tuple[float, bool]], alpha: float
) -> None:
    rewards = [(shaped_reward(score, correct, alpha), correct) for score, correct in labelled]
    right = [reward for reward, correct in rewards if correct]
    wrong = [reward for reward, correct in rewards if not correct]
    if right and wrong:
        assert min(right) > max(wrong)
    assert all(0.0 < reward < 1.0 for reward in right)
    assert all(-1.0 < reward < 0.0 for reward in wrong)


@given(a=scores, b=scores, correct=st.booleans(), alpha=st.floats(min_value=1e-3, max_value=100.0))
def test_within_a_class_the_rm_score_orders_the_reward(
    a: float, b: float, correct: bool, alpha: float
) -> None:
    low, high = sorted((a, b))
    assert shaped_reward(low, correct, alpha) <= shaped_reward(high, correct, alpha)


def test_shaped_reward_values() -> None:
    assert shaped_reward(0.0, True) == pytest.approx(0.5)
    assert shaped_reward(0.0, False) == pytest.approx(-0.5)
    assert shaped_reward(2.0, True, alpha=0.5) == pytest.approx(1 / (1 + math.exp(-1.0)))
    with pytest.raises(ValueError, match="NaN"):
        shaped_reward(float("nan"), True)


# ---- ranking metrics ----


def test_pairwise_accuracy_and_ties() -> None:
    assert pairwise_accuracy(REWARDS, CORRECT) == 6 / 8  # 2.0 beats all 4; 0.0 beats -1.0 and -0.5
    assert pairwise_accuracy([1.0, 1.0], [True, False]) == 0.5
    assert pairwise_accuracy([1.0, 2.0], [True, True]) is None


def test_top1_ties_go_to_the_first() -> None:
    assert top1_is_correct([1.0, 1.0, 0.0], [True, False, False])
    assert not top1_is_correct([1.0, 1.0, 0.0], [False, True, False])


def test_ranking_metrics_average_over_problems() -> None:
    metrics = ranking_metrics([REWARDS, [0.1, 0.2], [0.3, 0.2]], [CORRECT, [True, True], [True, False]])
    assert metrics["pairwise_accuracy"] == pytest.approx((6 / 8 + 1.0) / 2)  # the all-correct problem is out
    assert metrics["problems_with_pairs"] == 2
    assert metrics["top1_correct"] == pytest.approx(1.0)
    assert metrics["top1_random"] == pytest.approx((2 / 6 + 1.0 + 0.5) / 3)
