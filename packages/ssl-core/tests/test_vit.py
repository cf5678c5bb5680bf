"""ViTBackbone / from_timm: shapes, tokens, keep and mask semantics, pos-embed interpolation,
errors; DINOHead: weight norm and the last-layer freeze."""

import sys

import pytest
import torch
import torch.nn.functional as F

from ssl_core import TeacherStudentWrapper
from ssl_core.backbone import DINOHead, ViTBackbone, from_timm

TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def tiny_vit(img_size: int = 16, **kwargs) -> ViTBackbone:
    torch.manual_seed(0)
    net = from_timm(
        "vit_tiny_patch16_224", img_size=img_size, patch_size=4, in_channels=1, **TINY, **kwargs
    )
    return net.eval()


@pytest.fixture(scope="module")
def vit() -> ViTBackbone:
    return tiny_vit()


def test_shapes_and_attributes(vit: ViTBackbone) -> None:
    x = torch.randn(3, 1, 16, 16)
    assert (vit.out_features, vit.embed_dim, vit.patch_size, vit.num_prefix_tokens) == (
        32,
        32,
        4,
        1,
    )
    tokens = vit.forward_tokens(x)
    assert tokens["cls"].shape == (3, 32) and tokens["patches"].shape == (3, 16, 32)
    assert torch.equal(vit(x), tokens["cls"])
    assert vit.patch_grid(16, 28) == (4, 7)


def test_forward_matches_timm_own_path(vit: ViTBackbone) -> None:
    x = torch.randn(2, 1, 16, 16)
    features = vit.model.forward_features(x)
    reference = vit.model.forward_head(features, pre_logits=True)
    tokens = vit.forward_tokens(x)
    torch.testing.assert_close(vit(x), reference)
    torch.testing.assert_close(tokens["patches"], features[:, 1:])


def test_model_without_class_token_pools_the_mean_of_patches() -> None:
    net = tiny_vit(class_token=False, global_pool="avg")
    x = torch.randn(2, 1, 16, 16)
    tokens = net.forward_tokens(x)
    assert tokens["cls"] is None and net.num_prefix_tokens == 0
    torch.testing.assert_close(net(x), net.model.fc_norm(tokens["patches"].mean(1)))


def test_keep_runs_only_the_kept_patches(vit: ViTBackbone) -> None:
    x = torch.randn(2, 1, 16, 16)
    full = vit.forward_tokens(x)["patches"]
    everything = torch.arange(16).expand(2, 16)
    torch.testing.assert_close(vit.forward_tokens(x, keep=everything)["patches"], full)
    keep = torch.stack([torch.tensor([0, 5, 10, 15]), torch.tensor([3, 2, 1, 0])])
    kept = vit.forward_tokens(x, keep=keep)
    assert kept["patches"].shape == (2, 4, 32)
    # dropped patches do not influence the kept ones: repaint every patch outside keep
    grid = torch.zeros(2, 16, dtype=torch.bool)
    grid[torch.arange(2)[:, None], keep] = True
    pixels = grid.view(2, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    repainted = torch.where(pixels, x, torch.randn_like(x) * 5)
    torch.testing.assert_close(vit.forward_tokens(repainted, keep=keep)["patches"], kept["patches"])
    # position embeddings are added before the selection: a permuted keep permutes the output
    perm = vit.forward_tokens(x, keep=keep.flip(1))["patches"]
    torch.testing.assert_close(perm, kept["patches"].flip(1))
    # ...and the output differs from running the same patches without their positions' context
    assert not torch.allclose(kept["patches"], full[torch.arange(2)[:, None], keep])


def test_mask_replaces_patches_by_the_mask_token(vit: ViTBackbone) -> None:
    x = torch.randn(2, 1, 16, 16)
    none = torch.zeros(2, 16, dtype=torch.bool)
    torch.testing.assert_close(
        vit.forward_tokens(x, mask=none)["patches"], vit.forward_tokens(x)["patches"]
    )
    mask = torch.rand(2, 16) < 0.5
    mask[:, 0] = True
    pixels = mask.view(2, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    repainted = torch.where(pixels, torch.randn_like(x) * 5, x)
    out = vit.forward_tokens(x, mask=mask)["patches"]
    torch.testing.assert_close(vit.forward_tokens(repainted, mask=mask)["patches"], out)
    assert not torch.allclose(
        vit.forward_tokens(repainted)["patches"], vit.forward_tokens(x)["patches"]
    )
    net = tiny_vit()
    net.forward_tokens(x, mask=mask)["patches"].sum().backward()
    assert net.mask_token.grad is not None and net.mask_token.grad.abs().sum() > 0


def test_every_parameter_gets_a_gradient_without_a_mask() -> None:
    # DDP without find_unused_parameters needs every trainable parameter in the graph
    net = tiny_vit().train()
    net(torch.randn(2, 1, 16, 16)).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert torch.count_nonzero(net.mask_token.grad) == 0


def test_position_embedding_is_interpolated_for_another_size(vit: ViTBackbone) -> None:
    """A 28 px input through the 16 px ViT equals a 28 px timm ViT whose position embedding is
    the bicubic (antialiased) resampling of the 4x4 grid to 7x7, computed here."""
    import timm

    x = torch.randn(2, 1, 28, 28)
    ours = vit.forward_tokens(x)
    reference = timm.create_model(
        "vit_tiny_patch16_224", img_size=28, patch_size=4, in_chans=1, num_classes=0, **TINY
    ).eval()
    state = {k: v.clone() for k, v in vit.model.state_dict().items()}
    pos = state["pos_embed"]
    grid = pos[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(7, 7), mode="bicubic", antialias=True)
    state["pos_embed"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 49, 32)], 1)
    reference.load_state_dict(state)
    features = reference.forward_features(x)
    torch.testing.assert_close(ours["patches"], features[:, 1:])
    torch.testing.assert_close(ours["cls"], features[:, 0])
    assert vit(torch.randn(2, 1, 8, 12)).shape == (2, 32)  # non-square local crops work too


def test_builds_on_the_meta_device() -> None:
    # the app reads out_features from a backbone built on "meta"
    with torch.device("meta"):
        net = from_timm("vit_tiny_patch16_224", img_size=28, patch_size=4, in_channels=1)
    assert net.out_features == 192


def test_errors_name_the_problem(vit: ViTBackbone) -> None:
    with pytest.raises(ValueError, match=r"multiples of 4; got 14x16"):
        vit(torch.randn(1, 1, 14, 16))
    with pytest.raises(ValueError, match=r"multiples of 4; got 30x30"):
        from_timm("vit_tiny_patch16_224", img_size=30, patch_size=4, **TINY)
    with pytest.raises(
        ValueError, match=r"Unknown timm model 'vit_tiny_patch16'.*vit_tiny_patch16_224"
    ):
        from_timm("vit_tiny_patch16")
    with pytest.raises(ValueError, match="not a timm VisionTransformer"):
        from_timm("resnet10t")
    with pytest.raises(ValueError, match="dynamic_img_size"):
        from_timm("vit_tiny_patch16_224", dynamic_img_size=False)
    with pytest.raises(ValueError, match="sets num_classes itself"):
        from_timm("vit_tiny_patch16_224", num_classes=10)
    x = torch.randn(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"mask must be a BoolTensor \[B, L\] = \[2, 16\]"):
        vit.forward_tokens(x, mask=torch.zeros(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"keep must be an integer tensor \[B, K\]"):
        vit.forward_tokens(x, keep=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"K <= 16"):
        vit.forward_tokens(x, keep=torch.zeros(2, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"images \[B, C, H, W\]"):
        vit(torch.randn(1, 16, 16))


def test_missing_timm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"pip install 'ssl-core\[timm\]'"):
        from_timm("vit_tiny_patch16_224")


def _head_reference(head: DINOHead, x: torch.Tensor) -> torch.Tensor:
    """The official DINOHead in float64: MLP (GELU), L2-normalise, w = g * v / ||v|| rows."""
    h = x.double()
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linears):
        h = h @ lin.weight.double().T + lin.bias.double()
        if i < len(linears) - 1:
            h = F.gelu(h)
    h = h / h.norm(dim=1, keepdim=True)
    g = head.last_layer.parametrizations.weight.original0.double()
    v = head.last_layer.parametrizations.weight.original1.double()
    return h @ (g * v / v.norm(dim=1, keepdim=True)).T


def test_dino_head_matches_the_official_formula() -> None:
    torch.manual_seed(0)
    head = DINOHead(12, out_dim=40, hidden=24, bottleneck=8)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 24), (24, 24), (24, 8)]
    assert sum(isinstance(m, torch.nn.GELU) for m in head.mlp) == 2
    assert head.last_layer.bias is None and head.out_features == 40
    x = torch.randn(5, 12)
    torch.testing.assert_close(head(x).double(), _head_reference(head, x))
    # norm_last_layer: g is fixed at 1 so every output weight row has unit norm
    assert not head.last_layer.parametrizations.weight.original0.requires_grad
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(40))
    free = DINOHead(12, out_dim=40, hidden=24, bottleneck=8, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad
    assert len([m for m in DINOHead(12, 40, n_layers=1).mlp.modules()]) == 2  # Sequential + Linear
    with pytest.raises(ValueError, match="n_layers must be >= 1"):
        DINOHead(12, 40, n_layers=0)


def test_last_layer_freeze_zeroes_its_gradients_in_the_first_epochs() -> None:
    torch.manual_seed(0)
    head = DINOHead(
        6, out_dim=10, hidden=16, bottleneck=4, norm_last_layer=False, freeze_last_layer_epochs=2
    )
    last = list(head.last_layer.parameters())
    x = torch.randn(8, 6)
    for epoch, frozen in ((0, True), (1, True), (2, False)):
        head.zero_grad(set_to_none=True)
        (head(x, epoch=epoch) * torch.randn(8, 10)).sum().backward()
        assert all(p.grad is not None for p in last)  # in the graph: DDP-safe
        assert all(bool((p.grad == 0).all()) == frozen for p in last), epoch
        assert head.mlp[0].weight.grad.abs().sum() > 0
    # a frozen epoch's AdamW step (no weight decay) leaves the last layer as it was
    head.zero_grad(set_to_none=True)
    before = head.last_layer.weight.detach().clone()
    opt = torch.optim.AdamW(head.parameters(), lr=0.1, weight_decay=0.0)
    (head(x, epoch=0) ** 2).sum().backward()
    opt.step()
    torch.testing.assert_close(head.last_layer.weight.detach(), before)
    with pytest.raises(ValueError, match=r"needs the current epoch: call head\(x, epoch=e\)"):
        head(x)
    with torch.no_grad():
        assert head(x).shape == (8, 10)  # the teacher's no-grad forward needs no epoch


def test_dino_head_has_an_ema_teacher() -> None:
    wrapper = TeacherStudentWrapper(DINOHead(6, out_dim=10, hidden=16, bottleneck=4))
    with torch.no_grad():
        for p in wrapper.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in wrapper.teacher.parameters()]
    wrapper.update_teacher(0.0)  # coefficient 0.996
    for t, s, b in zip(
        wrapper.teacher.parameters(), wrapper.student.parameters(), before, strict=True
    ):
        torch.testing.assert_close(t, 0.996 * b + 0.004 * s)


def _fused_flags(net: ViTBackbone) -> set[bool]:
    return {m.fused_attn for m in net.model.modules() if hasattr(m, "fused_attn")}


def test_attention_kernel_auto_is_explicit_on_cpu_and_equals_the_fused_one() -> None:
    auto, fused = tiny_vit(), tiny_vit(attention="fused")
    math = tiny_vit(attention="math")
    fused.load_state_dict(auto.state_dict())
    math.load_state_dict(auto.state_dict())
    x = torch.randn(4, 1, 16, 16)
    out = auto(x)
    assert _fused_flags(auto) == {False}  # CPU input: timm's explicit softmax(q k^T) v
    torch.testing.assert_close(out, fused(x))
    torch.testing.assert_close(out, math(x))
    assert _fused_flags(fused) == {True} and _fused_flags(math) == {False}
    auto.attention.apply(auto.model, "cuda")  # what a CUDA batch selects, without a GPU
    assert _fused_flags(auto) == {True}
    with pytest.raises(ValueError, match="attention must be one of auto, fused, math"):
        tiny_vit(attention="flash")
