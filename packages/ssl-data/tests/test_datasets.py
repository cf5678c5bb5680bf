import gzip
import struct

import numpy as np
import pytest
import torch

from ssl_data import DatasetUnavailableError, get_dataset, load_embedded_fashion_mnist
from ssl_data.datasets import (
    load_cifar10,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
    write_idx,
)
from ssl_data.datasets.fashion_mnist import SYSTEM_FASHION_MNIST


def write_raw_idx(path, code, shape, payload, compress):
    header = bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + payload)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_tiny_files(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    suffix = ".gz" if compress else ""
    write_raw_idx(tmp_path / f"img{suffix}", 0x08, (2, 3, 4), images.tobytes(), compress)
    got = read_idx(tmp_path / f"img{suffix}")
    assert got.shape == (2, 3, 4) and got.dtype == np.uint8
    assert np.array_equal(got, images)
    # big-endian int32 payload
    values = [1, -2, 70000]
    write_raw_idx(tmp_path / "i32", 0x0C, (3,), struct.pack(">3i", *values), False)
    assert read_idx(tmp_path / "i32").tolist() == values


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    write_raw_idx(tmp_path / "short", 0x08, (5,), b"\x00\x01", False)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "short")


def test_write_idx_round_trip(tmp_path):
    a = np.random.default_rng(0).integers(-5, 5, size=(3, 2)).astype(np.int16)
    write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)


def test_load_fashion_mnist_from_root_tiny(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1, 2], dtype=np.uint8)
    write_raw_idx(
        tmp_path / "t10k-images-idx3-ubyte.gz", 0x08, images.shape, images.tobytes(), True
    )
    write_raw_idx(
        tmp_path / "t10k-labels-idx1-ubyte.gz", 0x08, labels.shape, labels.tobytes(), True
    )
    ds = load_fashion_mnist(tmp_path, split="test")
    assert ds.images.shape == (6, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert ds.labels.tolist() == labels.tolist() and ds.num_classes == 10
    with pytest.raises(DatasetUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path, split="train")


def test_embedded_subset_shapes_and_balance():
    for split, n in (("train", 10000), ("test", 2000)):
        ds = load_embedded_fashion_mnist(split)
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert torch.equal(torch.bincount(ds.labels), torch.full((10,), n // 10))
        assert ds.classes[0] == "T-shirt/top" and ds.num_classes == 10
        assert 0.2 < ds.mean[0] < 0.4 and 0.25 < ds.std[0] < 0.45  # Fashion-MNIST statistics
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_embedded_fashion_mnist("val")


@pytest.mark.skipif(
    not SYSTEM_FASHION_MNIST.is_dir(), reason="needs apt-get install dataset-fashion-mnist"
)
def test_embedded_subset_is_the_documented_official_selection():
    official = load_fashion_mnist(split="test")  # Debian package dataset-fashion-mnist
    emb = load_embedded_fashion_mnist("test")
    labels = official.labels
    index = torch.cat([torch.nonzero(labels == c).squeeze(1)[:200] for c in range(10)]).sort()
    assert torch.equal(emb.images, official.images[index.values])
    assert torch.equal(emb.labels, labels[index.values])


def test_missing_torchvision_dataset_message(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="download=True"):
        load_cifar10(tmp_path, split="train")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_cifar10(tmp_path, split="val")


def test_image_folder_tiny(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            arr = np.full((20, 30, 3), 40 * i + (100 if cls == "dog" else 0), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "train" / cls / f"{i}.png")
    ds = load_image_folder(tmp_path, image_size=16, split="train")
    s = ds[3]  # decoded whole: the crop to the view size happens later, in the workers
    assert s["image"].shape == (3, 20, 30) and s["image"].dtype == torch.uint8
    assert s["label"] == 1 and s["sample_idx"] == 3 and int(s["image"][0, 8, 8]) == 140
    evaluation = ds.__getitems__([3])["image"]  # no crops set: resized, centre-cropped
    assert evaluation.shape == (1, 3, 16, 16) and int(evaluation[0, 0, 8, 8]) == 140
    with pytest.raises(DatasetUnavailableError, match="root="):
        load_image_folder(tmp_path / "nope", image_size=16)


def test_registry():
    ds = get_dataset("fashion_mnist_embedded", "test")
    assert len(ds) == 2000
    with pytest.raises(ValueError, match="valid names: fashion_mnist_embedded, fashion_mnist"):
        get_dataset("mnist_typo")
    with pytest.raises(ValueError, match="root=/folder/of/images"):
        get_dataset("imagefolder")
