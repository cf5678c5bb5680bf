"""Two gloo ranks on CPU: loss and gradients equal the single-process result on the global batch.

Convention under test (see ssl_losses.distributed): every rank returns the global loss; the
gradient on a rank's own inputs is world_size * (single-process gradient of those rows); after
DDP-style averaging of parameter gradients, the parameter gradient equals the single-process one.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssl_losses import BarlowTwinsLoss, InfoNCELoss, NTXEntLoss, VICRegLoss

WORLD = 2
WORKER = Path(__file__).with_name("ddp_worker.py")


def _load_worker():
    spec = importlib.util.spec_from_file_location("ssl_losses_ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cases():
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    d_in, d = 5, 6
    # Uneven per-rank batches (the last batch of an epoch often is) and even ones.
    cases = {
        f"{name}_{'uneven' if sizes[0] != sizes[1] else 'even'}": {
            "loss": name,
            "x_a": randn(8, d_in),
            "x_b": randn(8, d_in),
            "weight": randn(d, d_in),
            "sizes": sizes,
        }
        for name in ("ntxent", "vicreg", "barlow")
        for sizes in ([3, 5], [4, 4])
    }
    anchor_sizes = [2, 4]
    pos_local = torch.cat([torch.tensor([2, 0]), torch.tensor([4, 1, 1, 3])])
    mask = torch.rand(6, 8, generator=g) < 0.3
    pos_global = pos_local + torch.tensor([0, 0, 3, 3, 3, 3])  # rank 1's candidates start at 3
    mask[torch.arange(6), pos_global] = False
    cases["infonce"] = {
        "loss": "infonce",
        "x_a": randn(6, d_in),
        "x_b": randn(8, d_in),
        "weight": randn(d, d_in),
        "sizes": [3, 5],  # candidates per rank
        "anchor_sizes": anchor_sizes,
        "pos_local": pos_local,
        "pos_global": pos_global,
        "mask": mask,
    }
    return cases


def _single_process(case):
    weight = case["weight"].clone().requires_grad_()
    x_a = case["x_a"].clone().requires_grad_()
    x_b = case["x_b"].clone().requires_grad_()
    z_a, z_b = x_a @ weight.T, x_b @ weight.T
    if case["loss"] == "infonce":
        loss = InfoNCELoss(0.2)(z_a, z_b, case["pos_global"], mask=case["mask"])
    else:
        loss_fn = {"ntxent": NTXEntLoss(0.3), "vicreg": VICRegLoss(), "barlow": BarlowTwinsLoss()}
        loss = loss_fn[case["loss"]](z_a, z_b)
    loss.backward()
    return loss.detach(), x_a.grad, x_b.grad, weight.grad


def _view_cases():
    g = torch.Generator().manual_seed(1)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    d_in, d, n = 5, 6, 8
    cases = {}
    for sizes in ([3, 5], [4, 4]):
        tag = "uneven" if sizes[0] != sizes[1] else "even"
        base = {"weight": randn(d, d_in), "sizes": sizes}
        # DINO: 2 global + 3 local student views, 2 teacher views.
        cases[f"dino_{tag}"] = base | {
            "loss": "dino",
            "x": randn(5, n, d_in),
            "y": randn(2, n, d_in),
        }
        cases[f"ibot_{tag}"] = base | {
            "loss": "ibot",
            "x": randn(2, n, 4, d_in),
            "y": randn(2, n, 4, d_in),
            "masks": torch.rand(2, n, 4, generator=g) < 0.5,
        }
        cases[f"swav_{tag}"] = base | {
            "loss": "swav",
            "x": randn(5, n, d_in),
            "y": randn(1, n, d_in),
        }
        cases[f"mocov3_{tag}"] = base | {
            "loss": "mocov3",
            "x": randn(2, n, d_in),
            "y": randn(2, n, d_in),
        }
    # Each rank keeps its own queue (as the official SwAV code): one process sees both queues.
    cases["swav_queue_uneven"] = {
        "loss": "swav_queue",
        "weight": randn(d, d_in),
        "sizes": [3, 5],
        "x": randn(4, n, d_in),
        "y": randn(1, n, d_in),
        "queue": randn(2, 6, d_in),
        "queue_sizes": [3, 3],
    }
    return cases


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """Run the 2-process worker once for all cases; the ranks' results and the cases."""
    workdir = tmp_path_factory.mktemp("ddp")
    cases, views = _cases(), _view_cases()
    torch.save(cases, workdir / "data.pt")
    torch.save(views, workdir / "views.pt")
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(workdir)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(workdir / f"rank{r}.pt") for r in range(WORLD)]
    return ranks, cases, views


@pytest.mark.ddp
@pytest.mark.slow
def test_two_gloo_ranks_match_single_process_on_global_batch(ddp_results):
    ranks, cases, _ = ddp_results
    for name, case in cases.items():
        loss, grad_a, grad_b, weight_grad = _single_process(case)
        size_a = case.get("anchor_sizes", case["sizes"])
        start_a = [0, size_a[0]]
        start_b = [0, case["sizes"][0]]
        for r, res in enumerate(ranks):
            got = res[name]
            torch.testing.assert_close(got["loss"], loss, atol=1e-6, rtol=0, msg=f"{name} loss")
            torch.testing.assert_close(
                got["weight_grad"], weight_grad, atol=1e-6, rtol=0, msg=f"{name} DDP weight grad"
            )
            own_a = grad_a[start_a[r] : start_a[r] + size_a[r]]
            own_b = grad_b[start_b[r] : start_b[r] + case["sizes"][r]]
            # Per-rank input gradient before any averaging: world_size times the global gradient.
            torch.testing.assert_close(got["grad_a"], WORLD * own_a, atol=1e-6, rtol=0)
            torch.testing.assert_close(got["grad_b"], WORLD * own_b, atol=1e-6, rtol=0)
            assert own_a.abs().max() > 1e-3  # the comparison is not vacuous


@pytest.mark.ddp
@pytest.mark.slow
def test_multi_view_losses_two_gloo_ranks_match_single_process(ddp_results):
    """DINO/iBOT centres, SwAV's Sinkhorn (with and without queue) and MoCo v3's key gather."""
    ranks, _, views = ddp_results
    worker = _load_worker()
    for name, case in views.items():
        loss, grad_x, weight_grad, state = worker.run_view_case(case, lambda t, sizes: t)
        start = [0, case["sizes"][0]]
        for r, res in enumerate(ranks):
            got = res[name]
            torch.testing.assert_close(got["loss"], loss, atol=1e-10, rtol=0, msg=f"{name} loss")
            torch.testing.assert_close(
                got["weight_grad"], weight_grad, atol=1e-10, rtol=0, msg=f"{name} weight grad"
            )
            own = grad_x[:, start[r] : start[r] + case["sizes"][r]]
            torch.testing.assert_close(got["grad_x"], WORLD * own, atol=1e-10, rtol=0, msg=name)
            torch.testing.assert_close(got["state"], state, atol=1e-12, rtol=0, msg=f"{name} state")
        assert grad_x.abs().max() > 1e-3  # the comparison is not vacuous
