"""Image folders and file lists on real PNG/JPEG files: scanning, decoding in 2 worker processes,
crops of the whole image, multi-crop groups, and the bad-input errors."""

import logging
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image, encode_jpeg, write_file, write_png

import ssl_data
from ssl_data import DatasetUnavailableError, fold_views, presets
from ssl_data.crops import CropSpec, random_view, sample_generator


def _photo(seed: int, channels: int = 3, size: tuple[int, int] = (20, 24)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(channels, 1, 1, generator=g) * 200
    ramp = torch.linspace(0, 50, size[1]).view(1, 1, -1)
    return (base + ramp + torch.rand(channels, *size, generator=g) * 5).to(torch.uint8)


def _folder(root: Path, per_class: int = 4, gray_one: bool = False) -> Path:
    for split in ("train", "val"):
        for c in range(2):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = _photo(100 * c + i)
                if i % 2:
                    write_file(str(folder / f"{i}.jpg"), encode_jpeg(img, quality=95))
                else:
                    write_png(img, str(folder / f"{i}.png"))
    if gray_one:
        write_png(_photo(7, channels=1), str(root / "train" / "class0" / "gray.png"))
    return root


def test_folder_scan_labels_and_splits(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    train = ssl_data.get_dataset("imagefolder", "train", root=root)
    val = ssl_data.get_dataset("imagefolder", "test", root=root)  # test falls back to val/
    assert len(train) == 8 and len(val) == 8
    assert train.classes == ["class0", "class1"] and train.files.labels == (0,) * 4 + (1,) * 4
    sample = train[1]
    expected = decode_image(str(root / "train" / "class0" / "1.jpg"))
    assert torch.equal(sample["image"], expected) and sample["label"] == 0


def test_two_workers_give_the_same_views_as_in_process(tmp_path: Path) -> None:
    """Crops are seeded per (seed, epoch, sample): the worker count does not change them."""
    root = _folder(tmp_path)
    recipe = presets.simclr_views(16, n_views=2)
    batches = {}
    for workers in (0, 2):
        ds = ssl_data.get_dataset("imagefolder", "train", root=root)
        dm = ssl_data.DataModule(
            train={"dataset": ds, "batch_size": 4, "num_workers": workers},
            views=recipe,
            image_size=16,
            in_channels=3,
        )
        loader = dm.train_dataloader()
        loader.batch_sampler.sampler.set_epoch(1)
        batches[workers] = list(loader)
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["sample_idx"], b["sample_idx"])
    first = batches[2][0]
    assert first["image"].shape == (8, 3, 16, 16) and first["image"].dtype == torch.uint8
    assert first["view_idx"].tolist() == [0] * 4 + [1] * 4
    assert torch.equal(first["sample_idx"][:4], first["sample_idx"][4:])


def test_worker_crop_is_a_resized_crop_of_the_whole_image() -> None:
    """The view of a scale=(1, 1), ratio=(1, 1) crop of a square image is the whole image."""
    image = _photo(3, size=(32, 32))
    spec = CropSpec(16, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=0.0)
    view = random_view(image, spec, sample_generator(0, 0, 0))
    from torchvision.transforms.v2 import functional as tvf

    assert torch.equal(view, tvf.resize(image, [16, 16], antialias=True))


def test_multicrop_groups_have_their_own_sample_idx(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    recipe = ssl_data.multicrop_views(16, 8, n_local=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    ds = ssl_data.get_dataset("imagefolder", "train", root=root)
    dm = ssl_data.DataModule(
        train={"dataset": ds, "batch_size": 4, "num_workers": 2}, views=recipe, image_size=16
    )
    batch = dm.transform_batch(next(iter(dm.train_dataloader())), "train")
    assert batch["image"].shape == (8, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["local_image"].shape == (12, 3, 8, 8)
    assert batch["local_sample_idx"].shape == (12,)
    globals_, locals_ = (
        fold_views(batch["image"], batch["sample_idx"]),
        fold_views(batch["local_image"], batch["local_sample_idx"]),
    )
    assert len(globals_) == 2 and len(locals_) == 3
    ids = batch["sample_idx"][:4].sort().values
    assert torch.equal(batch["local_sample_idx"][:4].sort().values, ids)
    # in-memory: the same recipe, run batched on whole images
    mem = recipe({"image": torch.zeros(4, 3, 20, 20, dtype=torch.uint8)})
    assert mem["local_image"].shape == (12, 3, 8, 8) and mem["image"].shape == (8, 3, 16, 16)
    assert mem["local_sample_idx"].tolist() == [0, 1, 2, 3] * 3


def test_corrupt_image_names_the_file_and_the_skip_option(tmp_path: Path, caplog) -> None:
    root = _folder(tmp_path)
    bad = root / "train" / "class1" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    whole = (root / "train" / "class1" / "1.jpg").read_bytes()
    (root / "train" / "class1" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    ds = ssl_data.get_dataset("imagefolder", "train", root=root)
    dm = ssl_data.DataModule(
        train={"dataset": ds, "batch_size": 10, "shuffle": False, "num_workers": 0},
        views=presets.simclr_views(16),
        image_size=16,
    )
    with pytest.raises(ssl_data.CorruptImageError, match=r"broken\.jpg.*skip_bad_files=True"):
        next(iter(dm.train_dataloader()))
    ds = ssl_data.get_dataset("imagefolder", "train", root=root)
    dm = ssl_data.DataModule(
        train={"dataset": ds, "batch_size": 10, "shuffle": False, "num_workers": 2},
        views=presets.simclr_views(16),
        image_size=16,
        skip_bad_files=True,
    )
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        batch = dm.transform_batch(next(iter(dm.train_dataloader())), "train")
    assert batch["image"].shape == (20, 3, 16, 16)  # the slot is filled by the next file
    assert dm.report() == {"skipped_files": 2}
    assert "broken.jpg" in dm.skipped_files[0] and "truncated" in dm.skipped_files[1]
    logged = [r.getMessage() for r in caplog.records if "skipped unreadable" in r.getMessage()]
    assert len(logged) == 2 and "truncated.jpg" in logged[1]


def test_gray_and_rgb_are_converted_and_said_once(tmp_path: Path, caplog) -> None:
    root = _folder(tmp_path, gray_one=True)
    for channels in (3, 1):
        ds = ssl_data.get_dataset("imagefolder", "train", root=root)
        dm = ssl_data.DataModule(
            train={"dataset": ds, "batch_size": 9, "num_workers": 0},
            views=presets.simclr_views(16, mean=(0.5,) * channels, std=(0.5,) * channels),
            image_size=16,
            in_channels=channels,
        )
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ssl_data"):
            for _ in range(2):
                batch = dm.transform_batch(next(iter(dm.train_dataloader())), "train")
        assert batch["image"].shape[1] == channels
        said = [r for r in caplog.records if "mixes grayscale and colour" in r.getMessage()]
        assert len(said) == 1


def test_small_images_are_upscaled_and_said(tmp_path: Path, caplog) -> None:
    root = _folder(tmp_path)  # 20x24 images, 32 px views
    ds = ssl_data.get_dataset("imagefolder", "train", root=root)
    dm = ssl_data.DataModule(
        train={"dataset": ds, "batch_size": 4, "num_workers": 0},
        views=presets.simclr_views(32),
        image_size=32,
    )
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        batch = dm.transform_batch(next(iter(dm.train_dataloader())), "train")
    assert batch["image"].shape == (8, 3, 32, 32)
    assert any("smallest side 20 px" in r.getMessage() for r in caplog.records)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        ssl_data.get_dataset("imagefolder", "train", root=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetUnavailableError, match="no images"):
        ssl_data.get_dataset("imagefolder", "train", root=tmp_path / "empty", labeled=False)
    (tmp_path / "cls" / "a").mkdir(parents=True)
    (tmp_path / "cls" / "b").mkdir(parents=True)
    write_png(_photo(0), str(tmp_path / "cls" / "a" / "x.png"))
    with pytest.raises(DatasetUnavailableError, match=r"class folder .*b holds no images"):
        ssl_data.get_dataset("imagefolder", "train", root=tmp_path / "cls")


def test_file_list_with_labels_and_missing_files(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    lines = ["path,label", "train/class0/0.png,cat", "train/class1/1.jpg,dog"]
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    ds = ssl_data.get_dataset("imagefolder", root=root, file_list=root / "list.csv")
    assert len(ds) == 2 and ds.classes == ["cat", "dog"] and ds.files.labels == (0, 1)
    (root / "flat.txt").write_text("train/class0/0.png\n")
    assert (
        ssl_data.get_dataset("imagefolder", root=root, file_list=root / "flat.txt").files.labels
        is None
    )
    (root / "bad.txt").write_text("train/class0/0.png 0\ntrain/nope.png 1\n")
    with pytest.raises(DatasetUnavailableError, match=r"1 missing file\(s\): .*nope\.png"):
        ssl_data.get_dataset("imagefolder", root=root, file_list=root / "bad.txt")


def test_torchvision_sets_name_the_missing_files(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetUnavailableError, match=r"cifar-10-batches-py/data_batch_1.*data.root"
    ):
        ssl_data.get_dataset("cifar10", root=tmp_path)
    with pytest.raises(DatasetUnavailableError, match=r"stl10_binary/unlabeled_X\.bin"):
        ssl_data.get_dataset("stl10", split="unlabeled", root=tmp_path)
    with pytest.raises(DatasetUnavailableError, match=r"MNIST/raw/train-images-idx3-ubyte"):
        ssl_data.get_dataset("mnist", root=tmp_path)


def test_hf_source_needs_the_extra_or_loads_lazily() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"ssl-data\[hf\]"):
            ssl_data.get_dataset("hf", root="some/name")
        return
    pytest.skip("datasets is installed; the error path cannot be exercised")
