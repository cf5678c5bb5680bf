"""Worker script for test_distributed.py: runs each loss on 2 gloo ranks (CPU) and saves results.

Usage: python ddp_worker.py WORKDIR. Reads WORKDIR/data.pt and WORKDIR/views.pt (written by the
test), spawns 2 processes with torch.multiprocessing.spawn (init via a file:// rendezvous in
WORKDIR) and writes WORKDIR/rank{r}.pt with, per case, the loss, the gradient w.r.t. this rank's
inputs, the gradient w.r.t. the shared projection weight after DDP-style averaging (all-reduce
sum / world) and, for the losses with a state, that state (DINO's and iBOT's centre).
The multi-view cases run through ``run_view_case``, which the test also calls in one process.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_losses import (
    BarlowTwinsLoss,
    DINOLoss,
    InfoNCELoss,
    MoCoV3Loss,
    NTXEntLoss,
    SwAVLoss,
    VICRegLoss,
    iBOTPatchLoss,
)

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


def run_view_case(case, take):
    """Run one multi-view case on the rows ``take(tensor, sizes)`` selects (dim 1 of the views).

    Returns the loss, the gradient w.r.t. the selected inputs ``x``, the weight gradient (before
    any averaging) and the loss's state after the call (or an empty tensor).
    """
    weight = case["weight"].clone().requires_grad_()
    x = take(case["x"], case["sizes"]).clone().requires_grad_()
    y = take(case["y"], case["sizes"])
    views = [v @ weight.T for v in x.unbind(0)]
    targets = [v @ weight.T for v in y.unbind(0)]
    kind, d = case["loss"], weight.shape[0]
    state = torch.empty(0)
    if kind == "dino":
        loss_fn = DINOLoss(d, teacher_temp=0.2, center_momentum=0.8).double()
        loss = loss_fn(views, targets)
        loss = loss + loss_fn(views, targets)  # the second call uses the all-reduced centre
        state = loss_fn.center
    elif kind == "ibot":
        loss_fn = iBOTPatchLoss(d, teacher_temp=0.2, center_momentum=0.8).double()
        masks = list(take(case["masks"], case["sizes"]).unbind(0))
        loss = loss_fn(views, targets, masks)
        loss = loss + loss_fn(views, targets, masks)
        state = loss_fn.center
    elif kind in ("swav", "swav_queue"):
        queue = None
        if kind == "swav_queue":
            queue = [q @ weight.T for q in take(case["queue"], case["queue_sizes"]).unbind(0)]
        loss = SwAVLoss(temperature=0.2)(views[:2], views[2:], queue)
    elif kind == "mocov3":
        loss = MoCoV3Loss(temperature=0.3)(views[0], views[1], targets[0], targets[1])
    else:
        raise ValueError(f"unknown case {kind}")
    loss.backward()
    return loss.detach(), x.grad, weight.grad, state.detach().clone()


def _rank_rows(rank):
    def take(t, sizes):
        start = sum(sizes[:rank])
        return t[:, start : start + sizes[rank]]

    return take


def _run_view_case_on_rank(case, rank):
    loss, grad_x, weight_grad, state = run_view_case(case, _rank_rows(rank))
    weight_grad = weight_grad.clone()
    dist.all_reduce(weight_grad)  # what DDP does: average the parameter gradients over ranks
    weight_grad /= dist.get_world_size()
    return {"loss": loss, "grad_x": grad_x, "weight_grad": weight_grad, "state": state}


def _worker(rank, workdir):
    workdir = Path(workdir)
    init = f"file://{workdir / 'rendezvous'}"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        data = torch.load(workdir / "data.pt")
        results = {name: _run_case(case, rank) for name, case in data.items()}
        views = torch.load(workdir / "views.pt")
        results |= {name: _run_view_case_on_rank(case, rank) for name, case in views.items()}
        torch.save(results, workdir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    mp.spawn(_worker, args=(sys.argv[1],), nprocs=WORLD, join=True)
