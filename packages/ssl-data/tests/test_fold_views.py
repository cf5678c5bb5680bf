import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl_data import fold_views


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    v=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    feat=st.integers(0, 3),
)
def test_round_trip_any_row_order(n, v, seed, feat):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randperm(1000, generator=g)[:n]  # arbitrary distinct sample ids
    # build a flat batch where row (v, n) carries the value 100 * rank(id) + v in every feature
    rank = torch.argsort(torch.argsort(ids))
    sample_idx = ids.repeat(v)
    view = torch.arange(v).repeat_interleave(n)
    value = (100 * rank.repeat(v) + view).float()
    shape = (n * v,) + (2,) * feat
    x = value.view(-1, *([1] * feat)).expand(shape).clone()
    perm = torch.randperm(n * v, generator=g)
    xs, ss = x[perm], sample_idx[perm]
    folded = fold_views(xs, ss)
    assert len(folded) == v
    sorted_ids = ids.sort().values
    for k, part in enumerate(folded):
        assert part.shape == (n, *shape[1:])
        # row j is the sample with the j-th smallest id in every view
        flat = part.reshape(n, -1)[:, 0] if feat else part
        assert torch.equal((flat // 100).long(), torch.arange(n))
        # views keep their order of appearance in the permuted batch
        for j in range(n):
            rows = (ss == sorted_ids[j]).nonzero().squeeze(1)
            assert torch.equal(part[j], xs[rows[k]])


def test_view_major_layout_gives_original_views():
    n, v = 4, 3
    x = torch.arange(n * v * 2).view(n * v, 2)
    out = fold_views(x, torch.arange(n).repeat(v))
    for k in range(v):
        assert torch.equal(out[k], x[k * n : (k + 1) * n])


def test_unequal_view_counts_raise():
    with pytest.raises(ValueError, match="unequal numbers of views"):
        fold_views(torch.zeros(5, 2), torch.tensor([0, 0, 1, 1, 1]))


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="4 rows but sample_idx has 3"):
        fold_views(torch.zeros(4, 2), torch.tensor([0, 1, 0]))


def test_bad_sample_idx_raises():
    with pytest.raises(ValueError, match="integer"):
        fold_views(torch.zeros(2), torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match="1-D"):
        fold_views(torch.zeros(2), torch.zeros(2, 1, dtype=torch.long))
