"""Loss values against direct loop implementations of the paper formulas (float64)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl_losses import (
    BarlowTwinsLoss,
    BYOLLoss,
    InfoNCELoss,
    NegativeCosineSimilarity,
    NTXEntLoss,
    VICRegLoss,
)

# ---------------------------------------------------------------- loop references (paper formulas)


def _rows(z):
    return z.double().tolist()


def _unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v, strict=True))


def ref_ntxent(z_i, z_j, t):
    """SimCLR (Chen et al. 2020), Algorithm 1: l(k, p) averaged over all 2N anchors."""
    u = [_unit(v) for v in _rows(z_i) + _rows(z_j)]
    n2 = len(u)
    total = 0.0
    for k in range(n2):
        p = (k + n2 // 2) % n2
        den = sum(math.exp(_dot(u[k], u[m]) / t) for m in range(n2) if m != k)
        total += -math.log(math.exp(_dot(u[k], u[p]) / t) / den)
    return total / n2


def ref_infonce(anchors, candidates, pos, t, mask=None):
    a = [_unit(v) for v in _rows(anchors)]
    c = [_unit(v) for v in _rows(candidates)]
    total = 0.0
    for i, ai in enumerate(a):
        keep = [j for j in range(len(c)) if mask is None or not bool(mask[i, j])]
        den = sum(math.exp(_dot(ai, c[j]) / t) for j in keep)
        total += -math.log(math.exp(_dot(ai, c[int(pos[i])]) / t) / den)
    return total / len(a)


def _mean_col(z, k):
    return sum(row[k] for row in z) / len(z)


def ref_vicreg(z_a, z_b, lam=25.0, mu=25.0, nu=1.0, eps=1e-4, official=True):
    """Bardes et al. 2022, eqs. (1)-(6); invariance as F.mse_loss in their Algorithm 1.

    ``official=True``: each view's std hinge halved, as facebookresearch/vicreg main_vicreg.py.
    """
    za, zb = _rows(z_a), _rows(z_b)
    n, d = len(za), len(za[0])
    s = sum((za[i][k] - zb[i][k]) ** 2 for i in range(n) for k in range(d)) / (n * d)

    def v(z):
        out = 0.0
        for k in range(d):
            m = _mean_col(z, k)
            var = sum((z[i][k] - m) ** 2 for i in range(n)) / (n - 1)
            out += max(0.0, 1.0 - math.sqrt(var + eps))
        return out / d

    def c(z):
        means = [_mean_col(z, k) for k in range(d)]
        out = 0.0
        for k in range(d):
            for m in range(d):
                if k != m:
                    cov = sum((z[i][k] - means[k]) * (z[i][m] - means[m]) for i in range(n))
                    out += (cov / (n - 1)) ** 2
        return out / d

    var_scale = 0.5 if official else 1.0
    return lam * s + mu * var_scale * (v(za) + v(zb)) + nu * (c(za) + c(zb))


def ref_barlow(z_a, z_b, lam=0.005, eps=1e-5):
    """Zbontar et al. 2021: C_ij = sum_b zhat_a[b,i] zhat_b[b,j] / n on batch-standardised views."""
    za, zb = _rows(z_a), _rows(z_b)
    n, d = len(za), len(za[0])

    def standardise(z):
        out = [[0.0] * d for _ in range(n)]
        for k in range(d):
            m = _mean_col(z, k)
            var = sum((z[i][k] - m) ** 2 for i in range(n)) / n
            for i in range(n):
                out[i][k] = (z[i][k] - m) / math.sqrt(var + eps)
        return out

    a, b = standardise(za), standardise(zb)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            cij = sum(a[r][i] * b[r][j] for r in range(n)) / n
            loss += (1 - cij) ** 2 if i == j else lam * cij**2
    return loss


def ref_byol(p, z):
    pairs = zip(_rows(p), _rows(z), strict=True)
    return sum(2 - 2 * _dot(_unit(a), _unit(b)) for a, b in pairs) / len(p)


# ---------------------------------------------------------------- values


def _randn(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 6),
    d=st.integers(1, 7),
    t=st.sampled_from([0.05, 0.1, 0.5, 1.0]),
)
def test_ntxent_matches_loop_formula(seed, n, d, t):
    z_i, z_j = _randn(seed, n, d), _randn(seed + 1, n, d)
    got = NTXEntLoss(temperature=t)(z_i, z_j)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_ntxent(z_i, z_j, t), rel=1e-10, abs=1e-12)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), a=st.integers(1, 5), c=st.integers(2, 7), d=st.integers(1, 6))
def test_infonce_matches_loop_formula_with_and_without_mask(seed, a, c, d):
    anchors, candidates = _randn(seed, a, d), _randn(seed + 1, c, d)
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, c, (a,), generator=g)
    mask = torch.rand(a, c, generator=g) < 0.4
    mask[torch.arange(a), pos] = False
    loss_fn = InfoNCELoss(temperature=0.2)
    assert loss_fn(anchors, candidates, pos).item() == pytest.approx(
        ref_infonce(anchors, candidates, pos, 0.2), rel=1e-10
    )
    assert loss_fn(anchors, candidates, pos, mask=mask).item() == pytest.approx(
        ref_infonce(anchors, candidates, pos, 0.2, mask), rel=1e-10
    )


def test_ntxent_is_infonce_with_self_pairs_masked():
    z_i, z_j = _randn(0, 5, 4), _randn(1, 5, 4)
    u = torch.cat([z_i, z_j])
    pos = (torch.arange(10) + 5) % 10
    got = InfoNCELoss(temperature=0.3)(u, u, pos, mask=torch.eye(10, dtype=torch.bool))
    assert got.item() == pytest.approx(NTXEntLoss(temperature=0.3)(z_i, z_j).item(), rel=1e-12)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 7), d=st.integers(1, 9))
def test_vicreg_matches_loop_formula(seed, n, d):
    # Scale 0.5 puts some dimensions below and some above the std hinge at 1.
    z_a, z_b = 0.5 * _randn(seed, n, d), _randn(seed + 1, n, d)
    got = VICRegLoss()(z_a, z_b)
    assert got.item() == pytest.approx(ref_vicreg(z_a, z_b), rel=1e-10)
    weights = dict(sim_weight=1.5, var_weight=0.0, cov_weight=3.0, eps=1e-3)
    ref = ref_vicreg(z_a, z_b, lam=1.5, mu=0.0, nu=3.0, eps=1e-3)
    assert VICRegLoss(**weights)(z_a, z_b).item() == pytest.approx(ref, rel=1e-10)
    paper = ref_vicreg(z_a, z_b, official=False)
    assert VICRegLoss(variance_form="paper")(z_a, z_b).item() == pytest.approx(paper, rel=1e-10)


def official_vicreg(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    """facebookresearch/vicreg main_vicreg.py VICReg.forward, one process (float64 tensors)."""
    n, d = x.shape
    repr_loss = ((x - y) ** 2).mean()
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(torch.relu(1 - std_x)) / 2 + torch.mean(torch.relu(1 - std_y)) / 2
    off = ~torch.eye(d, dtype=torch.bool)
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = cov_x[off].pow(2).sum() / d + cov_y[off].pow(2).sum() / d
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


@pytest.mark.parametrize("n,d", [(6, 4), (4, 9)])
def test_vicreg_default_equals_official_code_in_value_and_gradient(n, d):
    # Scale 0.5 puts some dimensions below the std hinge at 1 so the variance term is active.
    z_a = (0.5 * _randn(11, n, d)).requires_grad_()
    z_b = (0.7 * _randn(12, n, d)).requires_grad_()
    ours = VICRegLoss()(z_a, z_b)
    ours_grads = torch.autograd.grad(ours, (z_a, z_b))
    ref = official_vicreg(z_a, z_b)
    ref_grads = torch.autograd.grad(ref, (z_a, z_b))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # The variance term contributes (so the halving is tested, not a zero term).
    assert official_vicreg(z_a, z_b, 0.0, 25.0, 0.0).item() > 1e-3


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 9), d=st.integers(1, 9))
def test_barlow_twins_matches_loop_formula(seed, n, d):
    # n < d and n >= d both occur: the two code paths for sum_ij C_ij^2.
    z_a, z_b = _randn(seed, n, d), _randn(seed + 1, n, d) + 0.3 * _randn(seed, n, d)
    got = BarlowTwinsLoss(lambda_=0.02)(z_a, z_b)
    assert got.item() == pytest.approx(ref_barlow(z_a, z_b, lam=0.02), rel=1e-9)


@pytest.mark.parametrize("n,d", [(3, 12), (12, 3)])
def test_barlow_and_vicreg_both_matrix_paths(n, d):
    z_a, z_b = _randn(7, n, d), _randn(8, n, d)
    assert BarlowTwinsLoss()(z_a, z_b).item() == pytest.approx(ref_barlow(z_a, z_b), rel=1e-9)
    assert VICRegLoss()(z_a, z_b).item() == pytest.approx(ref_vicreg(z_a, z_b), rel=1e-10)


def test_byol_and_negative_cosine_match_formula():
    p, z = _randn(3, 6, 5), _randn(4, 6, 5)
    ref = ref_byol(p, z)
    assert BYOLLoss()(p, z).item() == pytest.approx(ref, rel=1e-12)
    assert NegativeCosineSimilarity()(p, z).item() == pytest.approx((ref - 2) / 2, rel=1e-12)


# ---------------------------------------------------------------- permutation invariance


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 8))
def test_losses_are_invariant_to_permuting_the_batch(seed, n):
    z_a, z_b = _randn(seed, n, 6), _randn(seed + 1, n, 6)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for loss_fn in (NTXEntLoss(), VICRegLoss(), BarlowTwinsLoss(), BYOLLoss()):
        assert loss_fn(z_a[perm], z_b[perm]).item() == pytest.approx(
            loss_fn(z_a, z_b).item(), rel=1e-10
        )


def test_infonce_is_invariant_to_permuting_anchors_and_candidates():
    anchors, candidates = _randn(0, 5, 4), _randn(1, 9, 4)
    pos = torch.tensor([3, 0, 8, 8, 2])
    pa, pc = torch.randperm(5), torch.randperm(9)
    inverse = torch.empty_like(pc)
    inverse[pc] = torch.arange(9)  # candidate j moves to position inverse[j]
    loss_fn = InfoNCELoss()
    base = loss_fn(anchors, candidates, pos).item()
    assert loss_fn(anchors[pa], candidates[pc], inverse[pos[pa]]).item() == pytest.approx(base)


# ---------------------------------------------------------------- limiting cases


def _hadamard8():
    h = torch.ones(1, 1, dtype=torch.float64)
    for _ in range(3):
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h  # columns 1..7 have zero mean and are mutually orthogonal


def test_ntxent_identical_orthonormal_views_closed_form():
    n, t = 4, 0.5
    z = torch.eye(n, dtype=torch.float64)
    # positive: cos = 1; negatives: the other view of itself is the positive, the 2n-2 others are
    # orthogonal (cos = 0).
    expected = -1 / t + math.log(math.exp(1 / t) + (2 * n - 2))
    assert NTXEntLoss(temperature=t)(z, z.clone()).item() == pytest.approx(expected, rel=1e-12)


def test_ntxent_orthogonal_views_closed_form():
    n, t = 3, 0.2
    e = torch.eye(2 * n, dtype=torch.float64)
    z_i, z_j = e[:n], e[n:]  # every pair of embeddings is orthogonal
    expected = math.log(2 * n - 1)  # all 2n-1 logits equal
    assert NTXEntLoss(temperature=t)(z_i, z_j).item() == pytest.approx(expected, rel=1e-12)


def test_vicreg_limits():
    h = _hadamard8()
    z = 2 * h[:, 1:4]  # std = 2*sqrt(8/7) > 1, uncorrelated
    assert VICRegLoss()(z, z.clone()).item() == pytest.approx(0.0, abs=1e-12)
    collapsed = torch.ones(8, 3, dtype=torch.float64)
    # invariance 0, covariance 0, each view's hinge = 1 - sqrt(eps), halved (official code)
    assert VICRegLoss()(collapsed, collapsed).item() == pytest.approx(
        25.0 * (1 - math.sqrt(1e-4)), rel=1e-12
    )
    assert VICRegLoss(variance_form="paper")(collapsed, collapsed).item() == pytest.approx(
        25.0 * 2 * (1 - math.sqrt(1e-4)), rel=1e-12
    )


def test_barlow_twins_limits():
    h = _hadamard8()
    z = h[:, 1:4]
    # identical decorrelated views: C_ii = var/(var+eps), C_ij = 0
    expected = 3 * (1 - 1 / (1 + 1e-5)) ** 2
    assert BarlowTwinsLoss()(z, z.clone()).item() == pytest.approx(expected, abs=1e-15)
    # orthogonal views: C = 0, so the loss is d
    assert BarlowTwinsLoss()(h[:, 1:4], h[:, 4:7]).item() == pytest.approx(3.0, abs=1e-12)


def test_cosine_losses_limits():
    p = _randn(0, 4, 3)
    for z, byol, neg in [(3 * p, 0.0, -1.0), (-p, 4.0, 1.0)]:
        assert BYOLLoss()(p, z).item() == pytest.approx(byol, abs=1e-12)
        assert NegativeCosineSimilarity()(p, z).item() == pytest.approx(neg, abs=1e-12)
    e = torch.eye(2, dtype=torch.float64)
    assert BYOLLoss()(e, e.flip(0)).item() == pytest.approx(2.0)
