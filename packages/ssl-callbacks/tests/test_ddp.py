import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

SCRIPT = Path(__file__).with_name("ddp_script.py")


def data(n, seed):  # same as ddp_script.data
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_gloo_gathers_queues_and_syncs_knn(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("MASTER_PORT", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world_size"] == 2 for r in ranks)

    # 16 rows per rank in 4 batches of 4. Each step gathers rank 0's batch, then rank 1's.
    seen = [rank["seen"] for rank in ranks]
    assert sorted(i for s in seen for b in s for i in b) == list(range(32))
    order = [i for b in range(4) for r in range(2) for i in seen[r][b]]
    for rank in ranks:
        assert rank["queue"] == order[-12:]
        assert rank["local_rows"] == 16  # the ungathered queue holds this rank's rows only

    xt, yt = data(32, 0)
    bank, bank_labels = xt[order[-16:]], yt[order[-16:]]
    for rank in ranks:
        torch.testing.assert_close(torch.tensor(rank["bank"]), bank)
        assert rank["bank_labels"] == bank_labels.tolist()

    # Every rank searched the same bank; the logged accuracy covers all 20 validation rows.
    xv, yv = data(20, 1)
    sim = F.normalize(xv, dim=1) @ F.normalize(bank, dim=1).T
    top, idx = sim.topk(3, dim=1)
    votes = torch.zeros(20, 4, dtype=torch.float64)
    votes.scatter_add_(1, bank_labels[idx], torch.exp(top.double() / 0.07))
    expected = (votes.argmax(1) == yv).double().mean().item()
    for rank in ranks:
        assert rank["top1"] == pytest.approx(expected)

    # The probe: every rank holds the probe a single process trains on the global batches (rank
    # 0's rows then rank 1's at each step), starting from rank 0's initial weights.
    torch.manual_seed(100)
    reference = nn.Linear(6, 4)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=0.05)
    for step in range(4):
        rows = seen[0][step] + seen[1][step]
        loss = F.cross_entropy(reference(xt[rows]), yt[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert ranks[0]["probe"] == ranks[1]["probe"]  # bit-identical across ranks
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(
            torch.tensor(ranks[0]["probe"][name]), value, rtol=1e-5, atol=1e-6
        )
    ref_top1 = (reference(xv).argmax(1) == yv).double().mean().item()
    for rank in ranks:
        assert rank["probe_top1"] == pytest.approx(ref_top1)
    saved = torch.load(tmp_path / "run.ckpt", weights_only=False)["callbacks"]
    assert [k for k in saved if k.startswith("OnlineProbe")] == ["OnlineProbe[probe]"]
    for name, value in saved["OnlineProbe[probe]"]["probe"].items():
        assert value.tolist() == ranks[0]["probe"][name]
