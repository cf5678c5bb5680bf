"""Mask generators and patchify: shapes, ratios, seeds, statistics over 10k draws, errors."""

import math
import random

import pytest
import torch

from ssl_data import masks


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- patchify ---------------------------------------------------------------------------------


def test_patchify_matches_per_patch_reference_and_round_trips():
    x = torch.randn(2, 3, 8, 12)
    p = 4
    out = masks.patchify(x, p)
    ref = torch.stack(
        [
            x[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p].permute(0, 2, 3, 1).reshape(2, -1)
            for i in range(2)
            for j in range(3)
        ],
        dim=1,
    )
    assert out.shape == (2, 6, 48)
    assert torch.equal(out, ref)
    assert torch.equal(masks.unpatchify(out, p, grid=(2, 3)), x)
    square = torch.randn(1, 1, 28, 28)
    assert torch.equal(masks.unpatchify(masks.patchify(square, 4), 4), square)


@pytest.mark.parametrize("size", [(30, 28), (28, 26), (2, 2)])
def test_patch_size_must_divide_image(size):
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        masks.patchify(torch.zeros(1, 1, *size), 4)


def test_patch_grid_without_patch_size_names_a_vit():
    with pytest.raises(ValueError, match="backbone=vit_tiny"):
        masks.patch_grid(28, None)


def test_unpatchify_rejects_bad_grid():
    with pytest.raises(ValueError, match="square grid"):
        masks.unpatchify(torch.zeros(1, 6, 16), 4)
    with pytest.raises(ValueError, match="do not fit grid"):
        masks.unpatchify(torch.zeros(1, 6, 16), 4, grid=(2, 2))


# --- random masking (MAE) ---------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_mask_ratio_outside_open_interval(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\)"):
        masks.RandomMasking(ratio)


def test_mask_ratio_that_leaves_nothing_visible():
    with pytest.raises(ValueError, match="at least one patch must stay visible"):
        masks.RandomMasking(0.9)(2, 4)


def test_random_masking_shapes_counts_and_indices():
    m = masks.RandomMasking(0.75)(5, 49, generator=_gen())
    keep = int(49 * 0.25)
    assert m.keep.shape == (5, keep) and m.restore.shape == (5, 49) and m.mask.shape == (5, 49)
    assert m.mask.dtype == torch.bool and m.keep.dtype == torch.int64
    assert (m.mask.sum(1) == 49 - keep).all()
    assert not m.mask.gather(1, m.keep).any()
    # [visible, masked] in shuffled order, gathered with restore, is the mask in patch order
    shuffled = torch.cat([torch.zeros(5, keep), torch.ones(5, 49 - keep)], dim=1)
    assert torch.equal(shuffled.gather(1, m.restore).bool(), m.mask)


def test_random_masking_seeded():
    a = masks.RandomMasking(0.75)(4, 49, generator=_gen(1))
    b = masks.RandomMasking(0.75)(4, 49, generator=_gen(1))
    c = masks.RandomMasking(0.75)(4, 49, generator=_gen(2))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.keep, b.keep)
    assert not torch.equal(a.mask, c.mask)


def test_random_masking_uniform_over_positions_10k():
    m = masks.RandomMasking(0.75)(10_000, 49, generator=_gen())
    ratio = 1 - int(49 * 0.25) / 49
    freq = m.mask.float().mean(0)
    # binomial std at p=0.76, n=10k is 0.0043: every position within 5 std of the ratio
    assert (freq - ratio).abs().max() < 0.022


# --- block masking (iBOT) ---------------------------------------------------------------------


def _ibot_reference(rng, gh, gw, ratio, log_aspect):
    """Pure-Python port of the official iBOT loader's block loop (one sample)."""
    mask = [[False] * gw for _ in range(gh)]
    count, high = 0, ratio * gh * gw
    while count < high:
        max_mask = high - count
        delta = 0
        for _ in range(10):
            low = (min(gh, gw) // 3) ** 2
            area = rng.uniform(low, max_mask)
            aspect = math.exp(rng.uniform(*log_aspect))
            h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if w < gw and h < gh:
                top, left = rng.randint(0, gh - h), rng.randint(0, gw - w)
                cells = [(i, j) for i in range(top, top + h) for j in range(left, left + w)]
                new = sum(not mask[i][j] for i, j in cells)
                if 0 < new <= max_mask:
                    for i, j in cells:
                        mask[i][j] = True
                    delta = new
            if delta > 0:
                break
        if delta == 0:
            break
        count += delta
    return torch.tensor(mask)


def _log_bbox_aspect(m):
    rows, cols = m.any(1).sum().item(), m.any(0).sum().item()
    return math.log(rows / cols)


@pytest.mark.slow
def test_block_masking_statistics_match_official_loop():
    gen = masks.BlockMasking(0.3)
    ours = gen(10_000, (14, 14), generator=_gen()).view(-1, 14, 14)
    rng = random.Random(0)
    log_aspect = gen.log_aspect_ratio
    ref = torch.stack([_ibot_reference(rng, 14, 14, 0.3, log_aspect) for _ in range(2000)])
    assert (ours.sum((1, 2)) <= 0.3 * 196).all()
    ours_ratio, ref_ratio = ours.float().mean().item(), ref.float().mean().item()
    assert abs(ours_ratio - ref_ratio) < 0.006, (ours_ratio, ref_ratio)
    assert 0.27 < ours_ratio <= 0.3
    # symmetric aspect range (0.3, 1/0.3): masks are as tall as wide on average
    ours_aspect = sum(_log_bbox_aspect(m) for m in ours[:2000]) / 2000
    ref_aspect = sum(_log_bbox_aspect(m) for m in ref) / 2000
    assert abs(ours_aspect) < 0.03 and abs(ours_aspect - ref_aspect) < 0.05
    ours_rows = ours.any(2).sum(1).float().mean().item()
    assert abs(ours_rows - ref.any(2).sum(1).float().mean().item()) < 0.3


@pytest.mark.slow
def test_block_masking_ratio_ranges_per_sample():
    gen = masks.BlockMasking(pred_ratio=(0.0, 0.3), pred_ratio_var=(0.0, 0.2))
    ratios = gen.sample_ratios(10_000, _gen(), torch.device("cpu"))
    zero = ratios == 0
    assert abs(zero.float().mean().item() - 0.5) < 0.02
    assert ratios[~zero].min() >= 0.1 and ratios[~zero].max() <= 0.5
    assert abs(ratios[~zero].mean().item() - 0.3) < 0.005
    m = gen(2000, (14, 14), generator=_gen())
    assert m.shape == (2000, 196)
    assert m.sum(1).max() <= 0.5 * 196
    unmasked = (m.sum(1) == 0).float().mean().item()
    assert 0.45 < unmasked < 0.55


def test_block_masking_seeded_and_bad_ratio():
    a = masks.BlockMasking(0.3)(8, (7, 7), generator=_gen(3))
    assert torch.equal(a, masks.BlockMasking(0.3)(8, (7, 7), generator=_gen(3)))
    assert not torch.equal(a, masks.BlockMasking(0.3)(8, (7, 7), generator=_gen(4)))
    with pytest.raises(ValueError, match=r"must stay inside \[0, 1\)"):
        masks.BlockMasking(0.3, 0.4)
    with pytest.raises(ValueError, match="one per pred_ratio"):
        masks.BlockMasking((0.1, 0.3), (0.0, 0.1, 0.2))


# --- multi-block masking (I-JEPA) -------------------------------------------------------------


def test_block_sizes_follow_paper_ranges_10k():
    rng = torch.Generator().manual_seed(0)
    draws = torch.rand(10_000, generator=rng).tolist()
    sizes = [masks.block_size(u, (0.15, 0.2), (0.75, 1.5), (14, 14)) for u in draws]
    scale = torch.tensor([h * w / 196 for h, w in sizes])
    aspect = torch.tensor([h / w for h, w in sizes])
    # integer sides round the area by up to half a row: within 0.02 of the paper's (0.15, 0.2)
    assert scale.min() > 0.13 and scale.max() < 0.22
    assert abs(scale.mean().item() - 0.175) < 0.01
    assert aspect.min() >= 0.75 - 0.1 and aspect.max() <= 1.5 + 0.15
    assert abs(aspect.mean().item() - 1.125) < 0.08
    ctx = [masks.block_size(u, (0.85, 1.0), (1.0, 1.0), (14, 14)) for u in draws[:100]]
    assert {c for c in ctx} == {(13, 13)}  # sides stay below the grid: 169/196 = 0.86


@pytest.mark.slow
def test_multiblock_masks_batch_of_10k():
    gen = masks.MultiBlockMasking()
    out = gen(10_000, (14, 14), generator=_gen())
    assert len(out.targets) == 4 and len(out.context) == 1
    t_len = out.targets[0].shape[1]
    assert all(t.shape == (10_000, t_len) for t in out.targets)
    ctx = out.context[0]
    assert ctx.shape[1] > gen.min_keep
    assert (ctx.diff(dim=1) > 0).all() and ctx.max() < 196  # ascending, unique, in range
    assert not (out.context_mask() & out.target_mask()).any()
    # target top-left corners uniform over [0, G - h) as the official randint
    first = out.targets[0][:, 0]
    tops, lefts = first // 14, first % 14
    h = (out.targets[0][0, -1] // 14 - tops[0] + 1).item()
    w = t_len // h
    assert tops.max() == 14 - h - 1 and lefts.max() == 14 - w - 1 and tops.min() == 0
    counts = torch.bincount(tops, minlength=14 - h)[: 14 - h].float()
    assert (counts / counts.mean() - 1).abs().max() < 0.15


def test_multiblock_seeded_and_target_scale_mean():
    a = masks.MultiBlockMasking()(4, (14, 14), generator=_gen(5))
    b = masks.MultiBlockMasking()(4, (14, 14), generator=_gen(5))
    assert all(
        torch.equal(x, y) for x, y in zip(a.targets + a.context, b.targets + b.context, strict=True)
    )
    g = _gen(0)
    gen = masks.MultiBlockMasking()
    lengths = [gen(1, (14, 14), generator=g).targets[0].shape[1] for _ in range(300)]
    assert abs(sum(lengths) / 300 / 196 - 0.175) < 0.012


def test_multiblock_relaxes_when_targets_cover_the_context():
    gen = masks.MultiBlockMasking(target_scale=(0.3, 0.3), context_scale=(0.4, 0.4), min_keep=8)
    out = gen(64, (10, 10), generator=_gen())
    assert out.context[0].shape[1] > 8
    assert out.targets[0].shape[1] > 8


def test_multiblock_errors_name_the_fix():
    with pytest.raises(ValueError, match="lower min_keep"):
        masks.MultiBlockMasking(min_keep=10)(2, (7, 7))
    with pytest.raises(ValueError, match="target_scale must be an interval"):
        masks.MultiBlockMasking(target_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="num_targets"):
        masks.MultiBlockMasking(num_targets=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_masks_on_cuda_match_cpu_seed():
    cpu = masks.MultiBlockMasking()(4, (14, 14), generator=_gen(7))
    gpu = masks.MultiBlockMasking()(4, (14, 14), generator=_gen(7), device="cuda")
    assert gpu.targets[0].is_cuda and torch.equal(gpu.targets[0].cpu(), cpu.targets[0])
    b = masks.BlockMasking(0.3)(4, (14, 14), generator=_gen(7), device="cuda")
    assert b.is_cuda
    assert torch.equal(b.cpu(), masks.BlockMasking(0.3)(4, (14, 14), generator=_gen(7)))
    r = masks.RandomMasking()(4, 49, generator=_gen(7), device="cuda")
    assert torch.equal(r.mask.cpu(), masks.RandomMasking()(4, 49, generator=_gen(7)).mask)


def test_own_seeded_stream_differs_per_rank(monkeypatch):
    from ssl_data.masks import _common

    a = masks.RandomMasking(0.75, seed=3)(4, 49).mask
    assert torch.equal(a, masks.RandomMasking(0.75, seed=3)(4, 49).mask)
    gen = masks.BlockMasking(0.3, seed=3)
    assert not torch.equal(gen(4, (7, 7)), gen(4, (7, 7)))  # one stream, advancing
    explicit = masks.RandomMasking(0.75, seed=3)(4, 49, generator=_gen(9)).mask
    assert torch.equal(explicit, masks.RandomMasking(0.75)(4, 49, generator=_gen(9)).mask)
    monkeypatch.setattr(_common.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(_common.dist, "get_rank", lambda: 1)
    rank1 = masks.RandomMasking(0.75, seed=3)(4, 49).mask
    assert not torch.equal(a, rank1)
    # rank 1 with seed 3 draws what seed 4 draws on rank 0
    monkeypatch.setattr(_common.dist, "get_rank", lambda: 0)
    assert torch.equal(rank1, masks.RandomMasking(0.75, seed=4)(4, 49).mask)
    ctx = masks.MultiBlockMasking(seed=3)(2, (14, 14)).context[0]
    assert torch.equal(ctx, masks.MultiBlockMasking(seed=3)(2, (14, 14)).context[0])
