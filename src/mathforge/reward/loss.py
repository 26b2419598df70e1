"""The listwise ranking loss of the Qwen2.5-Math reward model.

For a problem with k correct and n - k wrong responses the loss is
``-1/(k(n-k)) * sum over (pos, neg) pairs of log sigmoid(r_pos - r_neg)``, averaged over the
problems that have at least one pair. Every pair of a problem enters the same loss term, so a
problem's n scores must come from the same forward pass (the collator keeps them together).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def listwise_loss(rewards: torch.Tensor, correct: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Mean over problems of the normalised pairwise log-sigmoid loss.

    ``rewards``: scores of all responses in the batch, shape ``[N]``; ``correct``: bool ``[N]``;
    ``group_ids``: ``[N]`` integers naming each response's problem. Problems with only correct or
    only wrong responses form no pair and are skipped; a batch with no pair at all gives a zero
    loss that still depends on ``rewards`` (so every process in a distributed step calls backward).
    """
    correct = correct.bool()
    same_problem = group_ids[:, None] == group_ids[None, :]
    pairs = same_problem & correct[:, None] & ~correct[None, :]  # pairs[i, j]: i correct, j wrong
    if not bool(pairs.any()):
        return rewards.sum() * 0.0
    margins = rewards[:, None].float() - rewards[None, :].float()
    pair_losses = -F.logsigmoid(margins)
    # k(n-k) of each pair's problem, broadcast to the pair: the pairs whose correct member is i
    # plus those of every other correct member of i's problem.
    pairs_per_row = pairs.sum(dim=1)
    problem_pairs = (same_problem * pairs_per_row[None, :]).sum(dim=1)  # [N]: k(n-k) of row i's problem
    weights = pairs / problem_pairs.clamp(min=1)[:, None]
    n_problems = torch.unique(group_ids[pairs.any(dim=1)]).numel()
    return (pair_losses * weights).sum() / n_problems
