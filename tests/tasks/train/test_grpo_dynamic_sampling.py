"""DAPO dynamic sampling pieces on tensors: which groups have no variance, which local rows
they own, and splicing fresh completions into a generated batch."""

import math

import torch

from tasks.train.trainer import local_rows_of_groups, splice_rows, zero_variance_groups


def test_zero_variance_groups_use_the_weighted_sum_and_skip_unscorable():
    nan = math.nan
    rewards = torch.tensor([[1.0, 0.0], [1.0, 0.0],    # identical -> zero variance
                            [1.0, 0.0], [0.0, 1.0],    # differ per verifier, equal weighted sum -> zero
                            [1.0, 1.0], [0.0, 1.0],    # differ -> has variance
                            [nan, nan], [1.0, 0.0]])   # one unscorable row, one left -> zero
    zero = zero_variance_groups(rewards, torch.tensor([1.0, 1.0]), group=2)
    assert zero.tolist() == [True, True, False, True]
    assert zero_variance_groups(rewards, torch.tensor([1.0, 0.5]), group=2).tolist() == [True, False, False, True]


def test_local_rows_follow_groups_across_process_boundaries():
    groups = torch.tensor([False, True, False])  # 3 groups of 4 over 2 processes of 6 rows
    assert local_rows_of_groups(groups, 4, rank=0, local_size=6) == [4, 5]
    assert local_rows_of_groups(groups, 4, rank=1, local_size=6) == [0, 1]


def _batch(n, prompt_w, comp_w, fill):
    return {"prompt_ids": torch.full((n, prompt_w), fill), "prompt_mask": torch.ones(n, prompt_w, dtype=torch.long),
            "completion_ids": torch.full((n, comp_w), fill), "completion_mask": torch.ones(n, comp_w, dtype=torch.long),
            "advantages": torch.full((n,), float(fill)), "num_items_in_batch": torch.tensor(n * comp_w)}


def test_splice_rows_repads_and_replaces_only_the_given_rows():
    base, fresh = _batch(4, 3, 5, fill=1), _batch(4, 4, 2, fill=7)
    out = splice_rows(base, fresh, [2, 3], pad_token_id=0)
    assert out["prompt_ids"].shape == (4, 4) and out["completion_ids"].shape == (4, 5)
    assert out["prompt_ids"][0].tolist() == [0, 1, 1, 1]        # old rows padded on the left
    assert out["prompt_mask"][0].tolist() == [0, 1, 1, 1]
    assert out["prompt_ids"][2].tolist() == [7, 7, 7, 7]
    assert out["completion_ids"][3].tolist() == [7, 7, 0, 0, 0]  # new rows padded on the right
    assert out["completion_mask"][3].tolist() == [1, 1, 0, 0, 0]
    assert out["advantages"].tolist() == [1, 1, 7, 7]
    assert splice_rows(base, fresh, [], 0) is base
