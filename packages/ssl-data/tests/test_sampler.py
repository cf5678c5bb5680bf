import pytest
import torch

from ssl_data import RepeatedRandomSampler


def groups(seq, v):
    assert len(seq) % v == 0
    out = []
    for i in range(0, len(seq), v):
        block = seq[i : i + v]
        assert len(set(block)) == 1, f"group {block} is not one index repeated"
        out.append(block[0])
    return out


def test_each_index_repeated_in_a_row_and_all_covered():
    s = RepeatedRandomSampler(range(10), n_views=3, seed=1)
    seq = list(s)
    assert len(seq) == len(s) == 30
    assert sorted(groups(seq, 3)) == list(range(10))


def test_no_shuffle_is_ordered():
    assert list(RepeatedRandomSampler(range(3), 2, shuffle=False)) == [0, 0, 1, 1, 2, 2]


def test_seed_and_epoch_reshuffle():
    a = RepeatedRandomSampler(range(50), 2, seed=0)
    b = RepeatedRandomSampler(range(50), 2, seed=0)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert first != second
    assert sorted(groups(second, 2)) == list(range(50))
    b.set_epoch(1)
    assert list(b) == second
    # the order is the torch permutation seeded with seed + epoch
    g = torch.Generator().manual_seed(1)
    assert groups(second, 2) == torch.randperm(50, generator=g).tolist()


def test_two_replicas_disjoint_whole_groups():
    ranks = [RepeatedRandomSampler(range(10), 2, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    seqs = [list(s) for s in ranks]
    assert len(seqs[0]) == len(seqs[1]) == 10
    g0, g1 = groups(seqs[0], 2), groups(seqs[1], 2)
    assert not set(g0) & set(g1)
    assert sorted(g0 + g1) == list(range(10))


def test_padding_on_uneven_split_and_drop_last():
    ranks = [RepeatedRandomSampler(range(5), 2, num_replicas=2, rank=r) for r in (0, 1)]
    g = [groups(list(s), 2) for s in ranks]
    assert len(g[0]) == len(g[1]) == 3
    assert set(g[0]) | set(g[1]) == set(range(5))  # one padding sample repeats a sample
    strict = [
        RepeatedRandomSampler(range(5), 2, num_replicas=2, rank=r, drop_last=True) for r in (0, 1)
    ]
    s = [groups(list(x), 2) for x in strict]
    assert len(s[0]) == len(s[1]) == 2 and not set(s[0]) & set(s[1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_views must be an integer >= 1"):
        RepeatedRandomSampler(range(3), 0)
    with pytest.raises(ValueError, match="empty"):
        RepeatedRandomSampler([], 2)
    with pytest.raises(ValueError, match="rank"):
        RepeatedRandomSampler(range(3), 2, num_replicas=2, rank=2)
