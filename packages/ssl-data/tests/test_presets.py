import pytest
import torch
from torch.utils.data import DataLoader

from ssl_data import DictDataset, TensorImageDataset, collate_views, fold_views, presets
from ssl_data.augment import GaussianBlur, Solarize


def test_simclr_small_has_no_blur_large_has_blur():
    small = presets.simclr_views(32)
    large = presets.simclr_views(96)
    assert not any(isinstance(t, GaussianBlur) for t in small.views[0].transforms)
    blur = [t for t in large.views[0].transforms if isinstance(t, GaussianBlur)]
    assert len(blur) == 1 and blur[0].kernel_size == 9 and blur[0].p == 0.5
    assert presets.blur_kernel_size(224) == 23


def test_byol_asymmetric_probabilities():
    aug = presets.byol_views(96)
    assert aug.n_views == 2
    blur = [[t.p for t in v.transforms if isinstance(t, GaussianBlur)] for v in aug.views]
    sol = [[t.p for t in v.transforms if isinstance(t, Solarize)] for v in aug.views]
    assert blur == [[1.0], [0.1]] and sol == [[], [0.2]]
    assert presets.vicreg_views(32).n_views == 2


def test_simclr_on_grayscale_dataset_and_eval():
    ds = TensorImageDataset(torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8))
    batch = ds.__getitems__(list(range(8)))
    aug = presets.simclr_views(28, n_views=3, mean=ds.mean, std=ds.std)
    out = aug(batch)
    assert out["image"].shape == (24, 1, 28, 28) and out["image"].dtype == torch.float32
    views = fold_views(out["image"], out["sample_idx"])
    assert len(views) == 3 and not torch.equal(views[0], views[1])
    ev = presets.eval_transform(28, ds.mean, ds.std)(batch)["image"]
    ref = (batch["image"].float() / 255 - ds.mean[0]) / ds.std[0]
    assert torch.allclose(ev, ref, atol=1e-5)
    with pytest.raises(ValueError, match="one value per channel"):
        presets.simclr_views(28)(batch)  # ImageNet statistics on a 1-channel image


def test_torchvision_per_sample_path_same_layout():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    base = [(images[i], i % 2) for i in range(6)]
    ds = DictDataset(base, transform=presets.torchvision_simclr(32, n_views=2))
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_views)))
    assert batch["image"].shape == (6, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["sample_idx"].tolist() == [0, 1, 2, 0, 1, 2]
    assert batch["view_idx"].tolist() == [0, 0, 0, 1, 1, 1]
    tvb = presets.torchvision_views(32, "byol")
    assert len(tvb({"image": images[0]})["image"]) == 2
