"""Worker script for test_distributed.py: runs each loss on 2 gloo ranks (CPU) and saves results.

Usage: python ddp_worker.py WORKDIR. Reads WORKDIR/data.pt (written by the test), spawns
2 processes with torch.multiprocessing.spawn (init via a file:// rendezvous in WORKDIR) and writes
WORKDIR/rank{r}.pt with, per case, the loss, the gradient w.r.t. this rank's inputs, and the
gradient w.r.t. the shared projection weight after DDP-style averaging (all-reduce sum / world).
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_losses import BarlowTwinsLoss, InfoNCELoss, NTXEntLoss, VICRegLoss

WORLD = 2


def _rows(t, sizes, rank):
    start = sum(sizes[:rank])
    return t[start : start + sizes[rank]]


def _run_case(case, rank):
    weight = case["weight"].clone().requires_grad_()
    sizes = case["sizes"]
    if case["loss"] == "infonce":
        anchors = _rows(case["x_a"], case["anchor_sizes"], rank).clone().requires_grad_()
        cands = _rows(case["x_b"], sizes, rank).clone().requires_grad_()
        pos = _rows(case["pos_local"], case["anchor_sizes"], rank)
        mask = _rows(case["mask"], case["anchor_sizes"], rank)
        loss = InfoNCELoss(0.2)(anchors @ weight.T, cands @ weight.T, pos, mask=mask)
    else:
        anchors = _rows(case["x_a"], sizes, rank).clone().requires_grad_()
        cands = _rows(case["x_b"], sizes, rank).clone().requires_grad_()
        loss_fn = {"ntxent": NTXEntLoss(0.3), "vicreg": VICRegLoss(), "barlow": BarlowTwinsLoss()}
        loss = loss_fn[case["loss"]](anchors @ weight.T, cands @ weight.T)
    loss.backward()
    weight_grad = weight.grad.clone()
    dist.all_reduce(weight_grad)  # what DDP does: average the parameter gradients over ranks
    weight_grad /= dist.get_world_size()
    return {
        "loss": loss.detach(),
        "grad_a": anchors.grad,
        "grad_b": cands.grad,
        "weight_grad": weight_grad,
    }


def _worker(rank, workdir):
    workdir = Path(workdir)
    init = f"file://{workdir / 'rendezvous'}"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        data = torch.load(workdir / "data.pt")
        results = {name: _run_case(case, rank) for name, case in data.items()}
        torch.save(results, workdir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    mp.spawn(_worker, args=(sys.argv[1],), nprocs=WORLD, join=True)
