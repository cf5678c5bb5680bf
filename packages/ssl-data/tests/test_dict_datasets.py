import pytest
import torch
from torch.utils.data import DataLoader

from ssl_data import (
    DictDataset,
    RepeatedRandomSampler,
    TensorImageDataset,
    collate_batch,
    collate_views,
    fold_views,
)


def make_images(n=6, c=3, h=4, w=5):
    return (
        torch.arange(n * c * h * w, dtype=torch.int64)
        .remainder(256)
        .to(torch.uint8)
        .view(n, c, h, w)
    )


def test_dict_dataset_wraps_tuples_and_adds_sample_idx():
    base = [(torch.full((1, 2, 2), i), i % 3) for i in range(5)]
    seen = []

    def transform(sample):
        seen.append(sorted(sample))
        return {**sample, "image": sample["image"] * 2}

    ds = DictDataset(base, transform=transform)
    s = ds[3]
    assert s["sample_idx"] == 3 and s["label"] == 0
    assert torch.equal(s["image"], torch.full((1, 2, 2), 6))
    assert seen == [["image", "label", "sample_idx"]]
    batch = collate_batch([ds[i] for i in range(4)])
    assert batch["sample_idx"].tolist() == [0, 1, 2, 3]
    assert batch["image"].shape == (4, 1, 2, 2)


def test_dict_dataset_errors():
    with pytest.raises(ValueError, match="empty"):
        DictDataset([])
    ds = DictDataset([(1, 2, 3)])
    with pytest.raises(ValueError, match="3 fields but names"):
        ds[0]
    no_image = DictDataset([{"x": 1}])
    with pytest.raises(KeyError, match="no 'image' field"):
        no_image[0]


def test_tensor_dataset_items_and_getitems():
    images = make_images()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    ds = TensorImageDataset(images, labels, classes=["a", "b", "c"])
    assert len(ds) == 6 and ds.num_classes == 3
    s = ds[4]
    assert torch.equal(s["image"], images[4]) and int(s["label"]) == 1 and int(s["sample_idx"]) == 4
    b = ds.__getitems__([5, 0, 2])
    assert torch.equal(b["image"], images[[5, 0, 2]])
    assert b["label"].tolist() == [2, 0, 2] and b["sample_idx"].tolist() == [5, 0, 2]


def test_tensor_dataset_mean_std_match_formula():
    images = torch.randint(0, 256, (7, 3, 5, 5), dtype=torch.uint8)
    ds = TensorImageDataset(images)
    x = images.double() / 255
    ref_mean = x.mean(dim=(0, 2, 3))
    ref_std = x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(torch.tensor(ds.mean, dtype=torch.float64), ref_mean, atol=1e-9)
    assert torch.allclose(torch.tensor(ds.std, dtype=torch.float64), ref_std, atol=1e-9)
    assert ds.num_classes is None


def test_dataloader_batches_via_getitems_and_repeated_sampler():
    images = make_images(n=8)
    ds = TensorImageDataset(images, torch.arange(8) % 4)
    sampler = RepeatedRandomSampler(ds, n_views=2, seed=0)
    loader = DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=collate_batch)
    batches = list(loader)
    assert len(batches) == 4
    for b in batches:
        assert b["image"].shape == (4, 3, 4, 5)
        v0, v1 = fold_views(b["image"], b["sample_idx"])
        assert torch.equal(v0, v1)  # same sample, no augmentation
        assert torch.equal(v0, images[b["sample_idx"].unique()])


def test_collate_views_flat_view_major():
    samples = [
        {
            "image": [torch.full((1, 2, 2), 10 * i + v) for v in range(3)],
            "label": i,
            "sample_idx": i,
        }
        for i in range(2)
    ]
    b = collate_views(samples)
    assert b["image"][:, 0, 0, 0].tolist() == [0, 10, 1, 11, 2, 12]
    assert b["sample_idx"].tolist() == [0, 1, 0, 1, 0, 1]
    assert b["label"].tolist() == [0, 1, 0, 1, 0, 1]
    assert b["view_idx"].tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(TypeError, match="list of views"):
        collate_views([{"image": torch.zeros(1), "sample_idx": 0}])


@pytest.mark.parametrize(
    ("images", "err", "match"),
    [
        (torch.zeros(4, 8, 8, dtype=torch.uint8), ValueError, r"unsqueeze\(1\)"),
        (torch.zeros(4, 8, 8, 3, dtype=torch.uint8), ValueError, r"permute\(0, 3, 1, 2\)"),
        (torch.zeros(4, 3, 8, 8), TypeError, "uint8"),
        (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), ValueError, "empty"),
        ([[1]], TypeError, "torch.from_numpy"),
    ],
)
def test_tensor_dataset_bad_images(images, err, match):
    with pytest.raises(err, match=match):
        TensorImageDataset(images)


def test_tensor_dataset_bad_labels():
    images = make_images(n=3)
    with pytest.raises(ValueError, match="only 2 classes"):
        TensorImageDataset(images, torch.tensor([0, 1, 2]), classes=["a", "b"])
    with pytest.raises(ValueError, match="negative"):
        TensorImageDataset(images, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"shape \[N\] = \[3\]"):
        TensorImageDataset(images, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"labels\.long"):
        TensorImageDataset(images, torch.tensor([0.0, 1.0, 1.0]))
    ok = TensorImageDataset(images, torch.tensor([0, -1, 1]), ignore_index=-1)
    assert ok.num_classes == 2
