import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import RandomResizedCrop as TVRandomResizedCrop

from ssl_data.augment import (
    ColorJitter,
    Compose,
    GaussianBlur,
    HorizontalFlip,
    MultiViewAugment,
    Normalize,
    RandomGrayscale,
    RandomResizedCrop,
    Resize,
    Solarize,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    crop_resize,
    gaussian_blur,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand_images(n=6, c=3, h=12, w=12, seed=0):
    return torch.randint(0, 256, (n, c, h, w), generator=gen(seed), dtype=torch.uint8)


def full_pipeline(size=12, c=3):
    return Compose(
        [
            RandomResizedCrop(size, hflip_p=0.5),
            ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8),
            RandomGrayscale(0.2),
            GaussianBlur(3, p=0.5),
            Solarize(p=0.2),
            Normalize((0.5,) * c, (0.25,) * c),
        ]
    )


# --- functional ops against torchvision's per-image functions -------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs", "low", "high"),
    [
        (adjust_brightness, TF.adjust_brightness, 0.2, 1.8),
        (adjust_contrast, TF.adjust_contrast, 0.2, 1.8),
        (adjust_saturation, TF.adjust_saturation, 0.2, 1.8),
        (adjust_hue, TF.adjust_hue, -0.5, 0.5),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_adjust_matches_torchvision(ours, theirs, low, high, channels):
    x = torch.rand(5, channels, 7, 6, generator=gen(1))
    x[0, :, :2] = 0.5  # grey pixels (max == min) for the hue path
    f = torch.linspace(low, high, 5)
    got = ours(x.clone(), f)
    ref = torch.stack([theirs(x[i], float(f[i])) for i in range(5)])
    assert torch.allclose(got, ref, atol=2e-5), (got - ref).abs().max()


def test_gaussian_blur_matches_torchvision():
    x = torch.rand(4, 3, 16, 16, generator=gen(2))
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    got = gaussian_blur(x, 5, sigma)
    ref = torch.stack(
        [TF.gaussian_blur(x[i], [5, 5], [float(s), float(s)]) for i, s in enumerate(sigma)]
    )
    assert torch.allclose(got, ref, atol=1e-5)


def test_crop_resize_is_exact_pixel_crop_at_unit_scale_and_flips():
    x = torch.rand(3, 2, 10, 9, generator=gen(3))
    top, left = torch.tensor([0.0, 2.0, 5.0]), torch.tensor([1.0, 0.0, 3.0])
    out = crop_resize(
        x,
        top,
        left,
        torch.full((3,), 5.0),
        torch.full((3,), 6.0),
        (5, 6),
        flip=torch.tensor([False, True, False]),
    )
    for i in range(3):
        t, le = int(top[i]), int(left[i])
        ref = x[i, :, t : t + 5, le : le + 6]
        assert torch.allclose(out[i], ref.flip(-1) if i == 1 else ref, atol=1e-6)


def test_crop_resize_whole_image_matches_bilinear_resize():
    x = torch.rand(2, 3, 8, 8, generator=gen(4))
    full = torch.full((2,), 8.0)
    out = crop_resize(x, torch.zeros(2), torch.zeros(2), full, full, (20, 20))
    ref = TF.resize(x, [20, 20], antialias=True)
    assert torch.allclose(out, ref, atol=1e-5)


# --- parameter distributions ------------------------------------------------------------------


def test_random_resized_crop_params_ranges_and_torchvision_distribution():
    rrc = RandomResizedCrop(32, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    n, h, w = 4000, 30, 40
    p = rrc.sample_params(n, h, w, torch.device("cpu"), gen(5))
    assert ((p["top"] >= 0) & (p["top"] + p["height"] <= h)).all()
    assert ((p["left"] >= 0) & (p["left"] + p["width"] <= w)).all()
    area = p["height"] * p["width"] / (h * w)
    # rounding of w and h moves the area/ratio slightly outside the nominal ranges
    assert area.min() >= 0.08 * 0.75 and area.max() <= 1.0
    ratio = p["width"] / p["height"]
    assert ratio.min() > 3 / 4 * 0.8 and ratio.max() < 4 / 3 * 1.25
    assert torch.equal(p["top"], p["top"].floor()) and torch.equal(p["width"], p["width"].round())
    torch.manual_seed(0)
    img = torch.zeros(1, h, w)
    ref = torch.tensor(
        [TVRandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)],
        dtype=torch.float32,
    )
    ref_area = ref[:, 2] * ref[:, 3] / (h * w)
    # same distribution: means and quartiles agree within sampling error
    assert abs(area.mean() - ref_area.mean()) < 0.02
    q = torch.tensor([0.25, 0.5, 0.75])
    assert torch.allclose(area.quantile(q), ref_area.quantile(q), atol=0.03)
    assert abs(p["top"].mean() - ref[:, 0].mean()) < 0.5
    assert abs(p["left"].mean() - ref[:, 1].mean()) < 0.6


def test_random_resized_crop_fallback_is_torchvision_central_crop():
    # an impossible scale forces the fallback: central crop clamped to the ratio range
    rrc = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    p = rrc.sample_params(3, 10, 30, torch.device("cpu"), gen(0))
    assert p["width"].tolist() == [10.0] * 3 and p["height"].tolist() == [10.0] * 3
    assert p["left"].tolist() == [10.0] * 3 and p["top"].tolist() == [0.0] * 3


def test_color_jitter_params_ranges_and_uniform_order():
    cj = ColorJitter(0.4, 0.3, 1.5, 0.1, p=0.8)
    p = cj.sample_params(6000, torch.device("cpu"), gen(6))
    assert p["brightness"].min() >= 0.6 and p["brightness"].max() <= 1.4
    assert p["contrast"].min() >= 0.7 and p["contrast"].max() <= 1.3
    assert p["saturation"].min() >= 0.0 and p["saturation"].max() <= 2.5  # clipped at 0 like tv
    assert p["hue"].abs().max() <= 0.1
    assert abs(p["apply"].float().mean() - 0.8) < 0.02
    assert torch.equal(p["order"].sort(dim=1).values, torch.arange(4).expand(6000, 4))
    # first position is uniform over the four ops
    counts = torch.bincount(p["order"][:, 0], minlength=4).float() / 6000
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.025)


@pytest.mark.parametrize(
    ("op", "p"),
    [(HorizontalFlip(0.3), 0.3), (GaussianBlur(3, p=0.6), 0.6)],
)
def test_probabilities(op, p):
    params = op.sample_params(6000, torch.device("cpu"), gen(7))
    key = "flip" if "flip" in params else "apply"
    assert abs(params[key].float().mean() - p) < 0.025
    if "sigma" in params:
        assert params["sigma"].min() >= 0.1 and params["sigma"].max() <= 2.0


# --- ops applied per image --------------------------------------------------------------------


def test_color_jitter_applies_sampled_params_in_sampled_order():
    x = torch.rand(40, 3, 5, 5, generator=gen(8))
    cj = ColorJitter(0.5, 0.5, 0.5, 0.2, p=0.7)
    p = cj.sample_params(40, torch.device("cpu"), gen(9))
    got = cj.transform(x.clone(), gen(9))
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    names = ["brightness", "contrast", "saturation", "hue"]
    for i in range(40):
        ref = x[i]
        if p["apply"][i]:
            for op in p["order"][i].tolist():
                ref = fns[op](ref, float(p[names[op]][i]))
        assert torch.allclose(got[i], ref, atol=3e-5), i


def test_grayscale_and_solarize_selected_images():
    x = torch.rand(30, 3, 4, 4, generator=gen(10))
    g = RandomGrayscale(0.5)
    mask = torch.rand(30, generator=gen(11)) < 0.5
    out = g.transform(x.clone(), gen(11))
    ref_gray = TF.rgb_to_grayscale(x, num_output_channels=3)
    assert torch.allclose(out[mask], ref_gray[mask], atol=1e-6)
    assert torch.equal(out[~mask], x[~mask])
    s = Solarize(0.5, p=0.5)
    out = s.transform(x.clone(), gen(11))
    assert torch.allclose(out[mask], TF.solarize(x[mask], 0.5))
    assert torch.equal(out[~mask], x[~mask])


def test_identity_when_every_probability_is_zero():
    x = rand_images(n=5, h=12, w=12)
    pipe = Compose(
        [
            RandomResizedCrop(12, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=0.0),
            HorizontalFlip(0.0),
            ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.0),
            RandomGrayscale(0.0),
            GaussianBlur(3, p=0.0),
            Solarize(p=0.0),
            Normalize((0.0,), (1.0,)),
        ]
    )
    out = pipe({"image": x}, gen(0))["image"]
    assert out.dtype == torch.float32
    assert torch.allclose(out, x.float() / 255, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_output_dtype_range_and_normalisation(channels):
    x = rand_images(n=8, c=channels)
    pipe = full_pipeline(c=channels)
    pipe.transforms = pipe.transforms[:-1]
    raw = pipe({"image": x}, gen(1))["image"]
    assert raw.dtype == torch.float32 and raw.shape == (8, channels, 12, 12)
    assert raw.min() >= 0.0 and raw.max() <= 1.0
    normed = Normalize((0.5,) * channels, (0.25,) * channels)({"image": raw})["image"]
    assert torch.allclose(normed, (raw - 0.5) / 0.25, atol=1e-6)


def test_uint8_and_float_inputs_agree_and_input_is_untouched():
    x = rand_images()
    xf = x.float() / 255
    keep = xf.clone()
    a = full_pipeline()({"image": x}, gen(3))["image"]
    b = full_pipeline()({"image": xf}, gen(3))["image"]
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(xf, keep)


def test_resize_eval():
    x = rand_images(n=2, h=8, w=8)
    out = Resize(16)({"image": x})["image"]
    assert torch.allclose(out, TF.resize(x.float() / 255, [16, 16], antialias=True), atol=1e-5)
    assert torch.allclose(Resize(8)({"image": x})["image"], x.float() / 255)


# --- multi-view -------------------------------------------------------------------------------


def test_multiview_layout_and_fields():
    x = rand_images(n=4)
    batch = {
        "image": x,
        "label": torch.tensor([3, 1, 2, 0]),
        "sample_idx": torch.tensor([10, 11, 12, 13]),
        "names": ["a", "b", "c", "d"],
        "epoch": 5,
    }
    out = MultiViewAugment((full_pipeline(), 3), seed=0)(batch)
    assert out["image"].shape == (12, 3, 12, 12)
    assert out["sample_idx"].tolist() == [10, 11, 12, 13] * 3
    assert out["label"].tolist() == [3, 1, 2, 0] * 3
    assert out["view_idx"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert out["names"] == ["a", "b", "c", "d"] * 3 and out["epoch"] == 5
    assert torch.equal(batch["image"], x)  # input untouched
    no_idx = MultiViewAugment((full_pipeline(), 2))({"image": x})
    assert no_idx["sample_idx"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_multiview_asymmetric_views_use_their_pipeline():
    x = rand_images(n=4)
    plain = Compose([Normalize((0.0,), (1.0,))])
    solar = Compose([Solarize(0.5, p=1.0), Normalize((0.0,), (1.0,))])
    out = MultiViewAugment([plain, solar])({"image": x})["image"]
    xf = x.float() / 255
    assert torch.allclose(out[:4], xf)
    assert torch.allclose(out[4:], torch.where(xf >= 0.5, 1 - xf, xf))


def test_multiview_seeded_reproducible_and_per_image_independent():
    x = rand_images(n=1).expand(16, -1, -1, -1).contiguous()  # the same image 16 times
    a = MultiViewAugment((full_pipeline(), 2), seed=7)({"image": x})["image"]
    b = MultiViewAugment((full_pipeline(), 2), seed=7)({"image": x})["image"]
    c = MultiViewAugment((full_pipeline(), 2), seed=8)({"image": x})["image"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    flat = a.flatten(1)
    dist = torch.cdist(flat, flat) + torch.eye(32) * 1e9
    assert dist.min() > 1e-3  # every row got its own random parameters


def test_multiview_state_dict_resumes_stream():
    x = rand_images(n=4)
    aug = MultiViewAugment((full_pipeline(), 2), seed=1)
    aug({"image": x})
    state = aug.state_dict()
    expected = aug({"image": x})["image"]
    resumed = MultiViewAugment((full_pipeline(), 2), seed=99)
    resumed.load_state_dict(state)
    assert resumed.seed == 1
    assert torch.equal(resumed({"image": x})["image"], expected)
    fresh = MultiViewAugment((full_pipeline(), 2), seed=3)
    assert fresh.state_dict()["rng_state"] is None


def test_grayscale_input_through_full_recipe():
    x = rand_images(n=5, c=1)
    out = MultiViewAugment((full_pipeline(c=1), 2))({"image": x})
    assert out["image"].shape == (10, 1, 12, 12) and torch.isfinite(out["image"]).all()


@pytest.mark.parametrize(
    ("batch", "err", "match"),
    [
        ({"img": torch.zeros(2, 3, 4, 4, dtype=torch.uint8)}, KeyError, "no 'image' field"),
        ({"image": torch.zeros(2, 8, 8, 3, dtype=torch.uint8)}, ValueError, "permute"),
        ({"image": torch.zeros(2, 3, 8, 8, dtype=torch.int32)}, TypeError, "uint8"),
        ({"image": torch.zeros(3, 8, 8, dtype=torch.uint8)}, ValueError, "unsqueeze"),
    ],
)
def test_bad_batches(batch, err, match):
    with pytest.raises(err, match=match):
        MultiViewAugment((full_pipeline(), 2))(batch)
    with pytest.raises(err, match=match):
        full_pipeline()(batch)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_views must be >= 1"):
        MultiViewAugment((full_pipeline(), 0))
    with pytest.raises(ValueError, match="at least one view"):
        MultiViewAugment([])
    with pytest.raises(ValueError, match="one value per channel"):
        Normalize((0.1, 0.2, 0.3), (1, 1, 1))({"image": torch.zeros(1, 1, 2, 2)})
    with pytest.raises(ValueError, match="odd"):
        GaussianBlur(4)
    with pytest.raises(ValueError, match="probability"):
        RandomGrayscale(1.5)
    assert math.isclose(ColorJitter(hue=0.5).hue[1], 0.5)
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.6)
