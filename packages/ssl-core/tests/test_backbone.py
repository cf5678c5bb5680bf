import pytest
import torch
from torch import nn

from ssl_core.backbone import MLP, SmallResNet, from_torchvision


def test_from_torchvision_resnet_features():
    net = from_torchvision("resnet18")
    assert net.out_features == 512 and isinstance(net.fc, nn.Identity)
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 512)


def test_from_torchvision_low_resolution_stem():
    net = from_torchvision("resnet18", low_resolution=True)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    feats = {}

    def hook(module, inputs, output):
        feats["layer1"] = output.shape

    net.layer1.register_forward_hook(hook)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    assert feats["layer1"][-2:] == (32, 32)  # no downsampling before layer1


def test_from_torchvision_in_channels():
    net = from_torchvision("resnet18", in_channels=1, low_resolution=True)
    assert net.conv1.in_channels == 1
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 512)


def test_from_torchvision_in_channels_averages_filters():
    torch.manual_seed(0)
    ref = from_torchvision("resnet18")
    torch.manual_seed(0)
    net = from_torchvision("resnet18", in_channels=2)
    torch.testing.assert_close(net.conv1.weight[:, 0], ref.conv1.weight.mean(1) * 1.5)


def test_from_torchvision_other_families():
    net = from_torchvision("mobilenet_v3_small")
    assert net.out_features == 576 and net(torch.randn(2, 3, 32, 32)).shape == (2, 576)


def test_from_torchvision_errors():
    with pytest.raises(ValueError, match=r"Unknown torchvision model 'resnet19'.*resnet18"):
        from_torchvision("resnet19")
    with pytest.raises(ValueError, match="low_resolution=True is supported for ResNet-family"):
        from_torchvision("mobilenet_v3_small", low_resolution=True)


def test_mlp_structure_and_output():
    mlp = MLP(8, [16, 16], 4, norm="batch", activation="gelu")
    kinds = [type(m) for m in mlp]
    assert kinds == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.GELU,
        nn.Linear,
        nn.BatchNorm1d,
        nn.GELU,
        nn.Linear,
    ]
    assert mlp[0].bias is None and mlp[-1].bias is not None
    assert mlp(torch.randn(5, 8)).shape == (5, 4) and mlp.out_features == 4


def test_mlp_int_hidden_layer_norm_and_last_norm():
    mlp = MLP(8, 16, 4, norm="layer", last_norm="batch", last_norm_affine=False)
    assert [type(m) for m in mlp] == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert mlp[-1].weight is None and mlp[-2].bias is None


def test_mlp_no_hidden_is_linear():
    mlp = MLP(8, [], 3, norm=None)
    assert len(mlp) == 1 and isinstance(mlp[0], nn.Linear)


def test_mlp_errors_name_choices():
    with pytest.raises(ValueError, match="Unknown activation 'swish'; use one of relu"):
        MLP(2, 2, 2, activation="swish")
    with pytest.raises(ValueError, match="Unknown norm 'group'"):
        MLP(2, 2, 2, norm="group")


def test_small_resnet_default_size_and_shapes():
    net = SmallResNet()
    n = sum(p.numel() for p in net.parameters())
    assert 0.5e6 <= n <= 1.5e6
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, net.out_features) == (2, 256)
    gray = SmallResNet(in_channels=1, widths=(8, 16, 32), blocks=(1, 2, 1))
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 32)
    assert len(gray.stages[1]) == 2


def test_small_resnet_pool_size_keeps_the_last_map_layout():
    torch.manual_seed(0)
    net = SmallResNet(in_channels=1, widths=(8, 16, 32, 64), pool_size=2).eval()
    x = torch.randn(3, 1, 28, 28)
    features = net(x)
    assert features.shape == (3, net.out_features) == (3, 64 * 4)
    last_map = net.stages(net.stem(x))  # 28 px -> a 2x2 map: pool_size=2 is a plain flatten
    assert last_map.shape[-2:] == (2, 2)
    torch.testing.assert_close(features, last_map.flatten(1))
    # the global average is the mean of the four kept positions
    averaged = SmallResNet(in_channels=1, widths=(8, 16, 32, 64)).eval()
    averaged.load_state_dict(net.state_dict())
    torch.testing.assert_close(averaged(x), features.view(3, 64, 4).mean(-1))


def test_small_resnet_trains_gradients_flow():
    net = SmallResNet(widths=(8, 16))
    net(torch.randn(4, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_small_resnet_errors():
    with pytest.raises(ValueError, match="pool_size must be a positive int"):
        SmallResNet(pool_size=0)
    with pytest.raises(ValueError, match="one positive int per stage"):
        SmallResNet(widths=(8, 16), blocks=(1, 1, 1))
