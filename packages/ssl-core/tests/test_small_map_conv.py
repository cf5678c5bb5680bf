"""SmallMapConv2d: the dense matmul path against F.conv2d, values and gradients."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ssl_core.backbone import SmallMapConv2d, SmallResNet
from ssl_core.backbone.small_map_conv import tap_index


def _pair(conv: SmallMapConv2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    reference = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    return conv(x), reference


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "bias"),
    [
        ((2, 2), 3, 1, 1, False),
        ((2, 2), 3, 2, 1, True),
        ((1, 3), 3, 1, 1, True),
        ((2, 1), (3, 1), 1, (1, 0), False),
        ((2, 2), 1, 1, 0, True),
        ((2, 2), 2, 1, 0, False),
        ((4, 4), 3, 2, 1, True),  # the strided first conv of a last stage: 4x4 -> 2x2
        ((3, 4), 3, 2, 1, False),
    ],
)
def test_dense_path_matches_conv2d_values_and_gradients(size, kernel, stride, padding, bias):
    torch.manual_seed(0)
    conv = SmallMapConv2d(5, 7, kernel, stride, padding, bias=bias, max_input_pixels=16).double()
    assert conv._dense_applies(torch.zeros(1, 5, *size))
    x = torch.randn(3, 5, *size, dtype=torch.double, requires_grad=True)
    out, reference = _pair(conv, x)
    assert out.shape == reference.shape
    torch.testing.assert_close(out, reference)
    grad = torch.randn_like(reference)
    got = torch.autograd.grad(out, [x, *conv.parameters()], grad)
    want = torch.autograd.grad(reference, [x, *conv.parameters()], grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_channels_last_input_and_bf16_autocast():
    torch.manual_seed(0)
    conv = SmallMapConv2d(16, 8, 3, 1, 1, bias=False)
    x = torch.randn(4, 16, 2, 2).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, reference = _pair(conv, x)
    assert out.dtype == reference.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference.float(), atol=0.05, rtol=0.02)


def test_larger_maps_and_unsupported_options_use_conv2d(monkeypatch):
    calls = []
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        calls.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    torch.manual_seed(0)
    x = torch.randn(2, 4, 2, 2)
    for conv, inp in [
        (SmallMapConv2d(4, 4, 3, padding=1), torch.randn(2, 4, 3, 3)),  # 9 pixels > 4
        (SmallMapConv2d(4, 4, 3, padding=1, groups=2), x),
        (SmallMapConv2d(4, 4, 3, padding=2, dilation=2), x),
        (SmallMapConv2d(4, 4, 3, padding="same"), x),
        (SmallMapConv2d(4, 4, 3, padding=1, padding_mode="reflect"), x),
    ]:
        calls.clear()
        out = conv(inp)
        assert calls == [tuple(inp.shape)]
        torch.testing.assert_close(out, original(conv, inp))
    calls.clear()
    SmallMapConv2d(4, 4, 3, padding=1)(x)
    assert calls == []  # the 2x2 map took the dense path


def test_max_input_pixels_widens_the_dense_path():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4)
    assert not SmallMapConv2d(3, 5, 3, 2, 1)._dense_applies(x)  # 16 pixels > 4 (default)
    conv = SmallMapConv2d(3, 5, 3, 2, 1, max_input_pixels=16)
    assert conv._dense_applies(x)
    out, reference = _pair(conv, x)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_gradients_match_conv2d():
    torch.manual_seed(0)
    conv = SmallMapConv2d(64, 32, 3, 1, 1, bias=True)
    x = torch.randn(16, 64, 2, 2, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, reference = _pair(conv, x)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, conv.weight, conv.bias], grad)
    want = torch.autograd.grad(reference, [x, conv.weight, conv.bias], grad)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype == torch.float32  # parameters' gradients stay float32
        torch.testing.assert_close(g, w, atol=0.05, rtol=0.02)


def test_tap_index_marks_unseen_pixels_and_rejects_misfits():
    index = tap_index(2, 2, (3, 3), (1, 1), (1, 1))
    # output (0, 0) sees input (0, 0) through the centre tap 4, input (1, 1) through tap 8
    assert index.shape == (2, 2, 4)
    assert index[0, 0, 0] == 4 and index[0, 0, 3] == 8 and index[1, 1, 0] == 0
    strided = tap_index(4, 4, (3, 3), (2, 2), (1, 1)).view(4, 16)
    # stride 2 on 4x4: the outputs see 2x2, 2x3, 3x2 and 3x3 input pixels (25 of 64 pairs)
    assert (strided != 9).sum(dim=1).tolist() == [4, 6, 6, 9]
    with pytest.raises(ValueError, match="does not fit a 1x1 input"):
        tap_index(1, 1, (3, 3), (1, 1), (0, 0))


def test_state_dict_is_conv2d_and_copies_keep_working():
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(4, 6, 3, 1, 1)
    conv = SmallMapConv2d(4, 6, 3, 1, 1)
    conv.load_state_dict(plain.state_dict())
    assert set(conv.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 4, 2, 2)
    torch.testing.assert_close(conv(x), plain(x), atol=1e-6, rtol=1e-5)
    teacher = copy.deepcopy(conv)
    torch.testing.assert_close(teacher(x), plain(x), atol=1e-6, rtol=1e-5)


def test_small_resnet_uses_it_and_matches_plain_convolutions():
    torch.manual_seed(0)
    net = SmallResNet(in_channels=1, widths=(8, 16, 32, 64)).eval()
    plain = copy.deepcopy(net)
    for module in plain.modules():
        if isinstance(module, SmallMapConv2d):
            module.max_input_pixels = 0  # always nn.Conv2d's path
    x = torch.randn(3, 1, 28, 28)
    assert isinstance(net.stages[-1][0].conv2, SmallMapConv2d)
    torch.testing.assert_close(net(x), plain(x), atol=1e-5, rtol=1e-4)
