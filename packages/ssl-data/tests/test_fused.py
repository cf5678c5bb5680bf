"""The fused CPU kernel gives the eager pipeline's images from the same random stream; the
kernels compiled at install time are the default, found and chosen by the CPU's level."""

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from ssl_data import presets
from ssl_data.augment import (
    ColorJitter,
    Compose,
    GaussianBlur,
    HorizontalFlip,
    Normalize,
    RandomGrayscale,
    RandomResizedCrop,
    Solarize,
)
from ssl_data.augment import fused as fused_module
from ssl_data.augment.fused import FusedKernelUnavailable, FusedViewPipeline

needs_cc = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None,
    reason="building the fused kernel needs a C compiler (the eager path does not)",
)
INSTALLED = fused_module._PREBUILT_MANIFEST
needs_installed = pytest.mark.skipif(
    fused_module.prebuilt_library() is None,
    reason="ssl-data was installed without a C compiler: no fused kernel was built",
)


@pytest.fixture
def no_installed_kernel(monkeypatch, tmp_path):
    """As an install without a C compiler: no prebuilt kernel."""
    monkeypatch.setattr(fused_module, "_PREBUILT_MANIFEST", tmp_path / "absent.json")
    fused_module.prebuilt_kernel.cache_clear()
    fused_module.load_kernel.cache_clear()
    yield
    fused_module.prebuilt_kernel.cache_clear()
    fused_module.load_kernel.cache_clear()


def images(n: int, c: int, h: int, w: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w or h), generator=g, dtype=torch.uint8)


def chain(size, c: int, blur: bool = True, solarize: bool = True) -> list:
    ops = [
        RandomResizedCrop(size, scale=(0.08, 1.0), hflip_p=0.5),
        ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8),
        RandomGrayscale(0.2),
    ]
    if blur:
        ops.append(GaussianBlur(5, (0.1, 2.0), p=0.5))
    if solarize:
        ops.append(Solarize(0.5, p=0.3))
    ops.append(Normalize((0.4,) * c, (0.3,) * c))
    return ops


def run_both(ops, batch, seed=1):
    g_eager, g_fused = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    eager = Compose(ops, fused=False)(batch, g_eager)["image"]
    fused = Compose(ops, fused=True)(batch, g_fused)["image"]
    return eager, fused, g_eager, g_fused


@needs_cc
@pytest.mark.parametrize(
    ("c", "in_size", "out_size"),
    [(3, 40, 24), (3, 24, 40), (1, 28, 28), (3, (30, 20), (16, 24))],
)
def test_fused_equals_eager_and_consumes_the_same_random_stream(c, in_size, out_size):
    h, w = (in_size, in_size) if isinstance(in_size, int) else in_size
    x = images(64, c, h, w)
    eager, fused, g_eager, g_fused = run_both(chain(out_size, c), {"image": x})
    assert fused.shape == eager.shape and fused.dtype == torch.float32
    # the same images up to float rounding (values are normalised by std 0.3)
    assert (fused - eager).abs().max() < 1e-4
    # both paths drew exactly the same parameters: the streams continue identically
    assert torch.equal(g_eager.get_state(), g_fused.get_state())


@needs_cc
def test_fused_float_input_and_jitter_only_chains():
    x = images(32, 3, 20).float() / 255
    for ops in (
        [RandomResizedCrop(16)],
        [RandomResizedCrop(16, hflip_p=1.0), ColorJitter(0, 0, 0, 0.5, p=1.0)],
        [RandomResizedCrop(16), ColorJitter(0.9, 0.9, 0.0, 0.0, p=1.0), Normalize((0.5,), (2,))],
        [RandomResizedCrop(16), GaussianBlur(7, (0.5, 3.0), p=1.0)],
    ):
        eager, fused, *_ = run_both(ops, {"image": x})
        assert (fused - eager).abs().max() < 2e-5, ops


@needs_cc
def test_fused_result_does_not_depend_on_thread_count():
    x = images(96, 3, 96)
    ops = chain(96, 3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = Compose(ops, fused=True)({"image": x}, torch.Generator().manual_seed(3))["image"]
        torch.set_num_threads(2)
        two = Compose(ops, fused=True)({"image": x}, torch.Generator().manual_seed(3))["image"]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


@needs_cc
def test_preset_pipelines_opted_into_the_fused_kernel_give_the_same_images():
    x = {"image": images(16, 3, 32), "label": torch.arange(16)}
    eager_views = presets.simclr_views(32, mean=(0.5,) * 3, std=(0.2,) * 3, seed=5, fused=False)
    assert not eager_views.views[0].uses_fused_kernel
    fused_views = presets.simclr_views(32, mean=(0.5,) * 3, std=(0.2,) * 3, seed=5, fused=True)
    assert fused_views.views[0].uses_fused_kernel
    a, b = fused_views(x), eager_views(x)
    assert torch.equal(a["sample_idx"], b["sample_idx"]) and torch.equal(a["label"], b["label"])
    assert (a["image"] - b["image"]).abs().max() < 1e-4


def test_chains_the_kernel_does_not_implement_run_eagerly_or_raise_when_required():
    assert not FusedViewPipeline.matches([ColorJitter(0.4), RandomResizedCrop(8)])
    assert not FusedViewPipeline.matches([RandomResizedCrop(8), HorizontalFlip()])
    assert not FusedViewPipeline.matches(
        [RandomResizedCrop(8), Normalize((0.5,), (0.5,)), ColorJitter(0.4)]
    )
    ops = [RandomResizedCrop(8), HorizontalFlip(0.5)]
    assert Compose(ops)._fused_pipeline is None  # default: eager
    with pytest.raises(ValueError, match="RandomResizedCrop followed by ColorJitter"):
        Compose(ops, fused=True)


def test_without_a_compiler_the_default_runs_with_no_warning_and_opt_in_raises(
    monkeypatch, tmp_path, no_installed_kernel
):
    import warnings

    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    monkeypatch.setenv("SSL_DATA_CACHE_DIR", str(tmp_path))
    fused_module.load_kernel.cache_clear()
    try:
        with pytest.raises(FusedKernelUnavailable, match=r"apt-get install gcc.*fused=False"):
            fused_module.load_kernel()
        x = {"image": images(8, 3, 16)}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            views = presets.simclr_views(12, mean=(0.5,) * 3, std=(0.2,) * 3)
            out = views(x)["image"]
        assert out.shape == (16, 3, 12, 12)
        assert not views.views[0].uses_fused_kernel  # nothing installed, nothing compiled
        with pytest.raises(FusedKernelUnavailable):
            Compose(chain(12, 3), fused=True)  # built (and failing) when the pipeline is built
    finally:
        fused_module.load_kernel.cache_clear()


@needs_cc
def test_kernel_is_compiled_into_the_cache_dir_once(monkeypatch, tmp_path, no_installed_kernel):
    monkeypatch.setenv("SSL_DATA_CACHE_DIR", str(tmp_path))
    fused_module.load_kernel.cache_clear()
    try:
        fused_module.load_kernel()
        built = list(tmp_path.glob("ssl_data_fused_*.so"))
        assert len(built) == 1
        mtime = built[0].stat().st_mtime_ns
        fused_module.load_kernel.cache_clear()
        fused_module.load_kernel()
        assert built[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    finally:
        fused_module.load_kernel.cache_clear()


@needs_cc
@pytest.mark.parametrize("fused", [False, True])
def test_colour_ops_on_two_channel_images_are_a_clear_error(fused):
    ops = [RandomResizedCrop(8), ColorJitter(0, 0, 0.5, 0, p=1.0)]
    with pytest.raises(ValueError, match=r"need 1-channel .* or 3-channel .* got 2 channels"):
        Compose(ops, fused=fused)({"image": images(4, 2, 10)})
    ops = [RandomResizedCrop(8), ColorJitter(0.5, 0.5, 0, 0, p=1.0), Normalize((0.5,), (0.5,))]
    eager, fused_out, *_ = run_both(ops, {"image": images(4, 2, 10)})
    assert (fused_out - eager).abs().max() < 1e-4  # brightness/contrast: per-channel means


@needs_cc
def test_blur_kernel_too_large_is_a_clear_error_in_the_fused_path():
    ops = [RandomResizedCrop(6), GaussianBlur(13, p=1.0)]
    with pytest.raises(ValueError, match="kernel_size=13 is too large"):
        Compose(ops, fused=True)({"image": images(2, 3, 8)})


@needs_cc
def test_empty_batch():
    out = Compose(chain(8, 3), fused=True)({"image": images(0, 3, 10)})["image"]
    assert out.shape == (0, 3, 8, 8)


def load_build_hook():
    path = Path(__file__).parents[1] / "hatch_build.py"
    spec = importlib.util.spec_from_file_location("ssl_data_hatch_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_installed
def test_the_default_runs_the_installed_kernel_and_false_the_eager_ops():
    ops = chain(16, 3)
    assert Compose(ops).uses_fused_kernel
    assert Compose(ops)._kernel is fused_module.prebuilt_kernel()  # nothing compiled now
    assert not Compose(ops, fused=False).uses_fused_kernel
    assert presets.byol_views(16, mean=(0.5,) * 3, std=(0.2,) * 3).views[1].uses_fused_kernel


def kernel_error(library: Path, x: torch.Tensor, size: int, seed: int) -> float:
    """Largest difference between ``library``'s images and the eager ops' for one seed."""
    kernel = fused_module._bind(library)
    fused = FusedViewPipeline(chain(size, 3))(x, torch.Generator().manual_seed(seed), kernel)
    eager = Compose(chain(size, 3), fused=False)({"image": x}, torch.Generator().manual_seed(seed))
    return (fused - eager["image"]).abs().max().item()


@needs_installed
def test_every_installed_variant_the_cpu_runs_equals_the_eager_ops():
    manifest = json.loads(INSTALLED.read_text())
    runnable = fused_module.runnable_levels()
    assert set(runnable) & set(manifest["variants"])
    x = images(12, 3, 40)
    for level in runnable:
        assert kernel_error(INSTALLED.parent / manifest["variants"][level], x, 24, 4) < 1e-4, level


def fake_install(directory: Path, source_sha: str, variants: dict[str, str]) -> Path:
    for name in variants.values():
        (directory / name).write_bytes(b"")
    manifest = {"source_sha256": source_sha, "machine": fused_module.platform.machine()}
    (directory / "m.json").write_text(json.dumps({**manifest, "variants": variants}))
    return directory / "m.json"


def test_the_best_installed_level_the_cpu_runs_is_chosen(monkeypatch, tmp_path):
    sha = fused_module.source_sha256()
    variants = {"AVX512": "a512.so", "AVX2": "a2.so", "DEFAULT": "d.so"}
    monkeypatch.setattr(fused_module, "_PREBUILT_MANIFEST", fake_install(tmp_path, sha, variants))
    for capability, chosen in [("AVX512", "a512.so"), ("AVX2", "a2.so"), ("DEFAULT", "d.so")]:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert fused_module.prebuilt_library() == tmp_path / chosen
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "SVE256")
    assert fused_module.prebuilt_library() == tmp_path / "d.so"  # unknown level: the baseline
    (tmp_path / "d.so").unlink()
    assert fused_module.prebuilt_library() is None


def test_a_kernel_installed_from_an_older_source_is_not_used(monkeypatch, tmp_path):
    manifest = fake_install(tmp_path, "0" * 64, {"DEFAULT": "d.so"})
    monkeypatch.setattr(fused_module, "_PREBUILT_MANIFEST", manifest)
    assert fused_module.prebuilt_library() is None


@needs_cc
def test_the_build_hook_compiles_every_level_and_records_the_source(tmp_path):
    hook = load_build_hook()
    shutil.copy(fused_module._SOURCE, tmp_path / hook.SOURCE)
    manifest = hook.build_kernels(tmp_path, shutil.which(os.environ.get("CC", "cc")))
    assert json.loads((tmp_path / hook.MANIFEST).read_text()) == manifest
    assert manifest["source_sha256"] == fused_module.source_sha256()
    assert set(manifest["variants"]) == set(hook.variants())
    for name in manifest["variants"].values():
        assert (tmp_path / name).stat().st_size > 0
    # the baseline level runs on any CPU of the architecture: it is loadable and correct here
    baseline = tmp_path / manifest["variants"]["DEFAULT"]
    assert kernel_error(baseline, images(6, 3, 20), 12, 2) < 1e-4


@needs_installed
def test_editing_the_transform_list_chooses_the_path_again():
    pipe = Compose(chain(12, 3))
    assert pipe.uses_fused_kernel
    pipe.transforms.append(HorizontalFlip())  # a chain the kernel does not implement
    assert not pipe.uses_fused_kernel
    x = images(4, 3, 16)
    out = pipe({"image": x}, torch.Generator().manual_seed(0))["image"]
    eager = Compose(pipe.transforms, fused=False)({"image": x}, torch.Generator().manual_seed(0))
    assert torch.equal(out, eager["image"])


@needs_installed
def test_a_pipeline_on_the_installed_kernel_pickles_and_copies():
    import copy
    import pickle

    def fresh():
        return presets.simclr_views(16, mean=(0.5,) * 3, std=(0.2,) * 3, seed=1)

    assert fresh().views[0].uses_fused_kernel
    x = {"image": images(4, 3, 20)}
    for clone in (pickle.loads(pickle.dumps(fresh())), copy.deepcopy(fresh())):
        assert clone.views[0].uses_fused_kernel  # chosen again after loading
        assert torch.equal(clone(x)["image"], fresh()(x)["image"])  # same seed, same images
