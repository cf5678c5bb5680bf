"""MAE decoder, I-JEPA predictor and the 2-D sine-cosine position embedding."""

import math

import pytest
import torch

from ssl_core.backbone import IJEPAPredictor, MAEDecoder, sincos_pos_embed_2d


def _reference_sincos(dim, gh, gw):
    """Float64 loops over the official MAE get_2d_sincos_pos_embed formula."""
    out = torch.zeros(gh * gw, dim, dtype=torch.float64)
    quarter = dim // 4
    for i in range(gh):
        for j in range(gw):
            row = out[i * gw + j]
            for k in range(quarter):
                w = 1.0 / 10000 ** (k / quarter)
                row[k], row[quarter + k] = math.sin(j * w), math.cos(j * w)
                row[2 * quarter + k], row[3 * quarter + k] = math.sin(i * w), math.cos(i * w)
    return out


def test_sincos_matches_official_formula():
    emb = sincos_pos_embed_2d(16, (3, 5))
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb.double(), _reference_sincos(16, 3, 5), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(10, (2, 2))


def test_mae_decoder_unshuffles_visible_and_mask_tokens():
    torch.manual_seed(0)
    dec = MAEDecoder(8, (2, 3), 1, 5, decoder_dim=12, depth=1, num_heads=2)
    dec.blocks = torch.nn.ModuleList()  # no mixing: each output row is its own input token
    n, length, k = 2, 6, 2
    shuffle = torch.stack([torch.randperm(length) for _ in range(n)])
    restore = torch.argsort(shuffle, dim=1)
    visible = torch.randn(n, k, 8)
    out = dec(visible, restore)
    assert out.shape == (n, length, 5)
    pos = dec.pos_embed[0]
    for b in range(n):
        for slot in range(length):
            patch = shuffle[b, slot]
            token = dec.embed(visible[b, slot]) if slot < k else dec.mask_token[0, 0]
            expected = dec.head(dec.norm(token + pos[patch]))
            torch.testing.assert_close(out[b, patch], expected)


def test_mae_decoder_prefix_tokens_are_dropped_and_attend():
    torch.manual_seed(0)
    dec = MAEDecoder(8, (2, 2), 2, 1, decoder_dim=8, depth=2, num_heads=2)
    restore = torch.arange(4).expand(3, 4)
    visible = torch.randn(3, 1, 8)
    a = dec(visible, restore, prefix=torch.zeros(3, 1, 8))
    b = dec(visible, restore, prefix=torch.ones(3, 1, 8))
    assert a.shape == (3, 4, 4) and not torch.allclose(a, b)
    learned = MAEDecoder(8, (2, 2), 2, 1, decoder_dim=8, depth=1, num_heads=2, pos_embed="learned")
    assert learned.pos_embed.requires_grad and "pos_embed" not in dict(dec.named_parameters())


def test_mae_decoder_errors():
    with pytest.raises(ValueError, match="depth must be >= 1"):
        MAEDecoder(8, (2, 2), 2, 1, decoder_dim=8, depth=0, num_heads=2)
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        MAEDecoder(8, (2, 2), 2, 1, decoder_dim=8, depth=1, num_heads=3)
    with pytest.raises(ValueError, match="'sincos' or 'learned'"):
        MAEDecoder(8, (2, 2), 2, 1, decoder_dim=8, depth=1, num_heads=2, pos_embed="rope")
    dec = MAEDecoder(8, (2, 2), 2, 1, decoder_dim=8, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="built for 4 patches"):
        dec(torch.randn(1, 2, 8), torch.arange(9)[None])


def test_ijepa_predictor_is_conditioned_on_positions_only():
    torch.manual_seed(0)
    pred = IJEPAPredictor(16, (4, 4), predictor_dim=8, depth=2, num_heads=2).eval()
    ctx = torch.randn(2, 5, 16)
    ctx_idx = torch.tensor([[0, 1, 2, 3, 4], [11, 12, 13, 14, 15]])
    tgt = torch.tensor([[8, 9, 10], [0, 1, 2]])
    out = pred(ctx, ctx_idx, tgt)
    assert out.shape == (2, 3, 16)
    perm = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(pred(ctx[:, perm], ctx_idx[:, perm], tgt), out)
    # the same query at another position predicts something else
    moved = pred(ctx, ctx_idx, tgt + 1)
    assert not torch.allclose(moved, out)
    assert pred(ctx, ctx_idx, tgt[:, :1]).shape == (2, 1, 16)


def test_ijepa_predictor_gradients_reach_context_and_mask_token():
    pred = IJEPAPredictor(16, (4, 4), predictor_dim=8, depth=1, num_heads=2)
    ctx = torch.randn(1, 3, 16, requires_grad=True)
    pred(ctx, torch.tensor([[0, 1, 2]]), torch.tensor([[5, 6]])).square().sum().backward()
    assert ctx.grad.abs().sum() > 0 and pred.mask_token.grad.abs().sum() > 0


def test_ijepa_predictor_errors_name_the_fix():
    with pytest.raises(ValueError, match="set predictor depth to 1 or more"):
        IJEPAPredictor(16, (4, 4), predictor_dim=8, depth=0, num_heads=2)
    pred = IJEPAPredictor(16, (4, 4), predictor_dim=8, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="do not match"):
        pred(torch.randn(2, 3, 16), torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 1).long())
