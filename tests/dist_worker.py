"""One rank of the torch.distributed tests (launched as separate processes by
test_distributed.py, gloo over loopback): runs the loss with sync_density=True on its shard of
a global batch for several steps and saves what it got, for the test to compare with the
reference on the concatenated batch.

    python dist_worker.py RANK WORLD PORT OUT_DIR SCENARIO
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

STEPS = 3
COLS = 4


def shard_rows(world: int, step: int) -> list[int]:
    """Unequal shards, one of them empty (which rank changes with the step)."""
    base = {2: [[5, 2], [0, 6], [3, 3]], 3: [[7, 3, 0], [2, 0, 5], [1, 4, 2]]}[world]
    return base[step % len(base)]


def global_batch(kind: str, step: int, rows: int, seed: int = 0):
    rng = np.random.default_rng(1000 * seed + step)
    x = rng.normal(size=(rows, COLS)).astype(np.float32) * 2
    t = (
        (rng.random((rows, COLS)) < 0.3).astype(np.float32)
        if kind == "c"
        else (x + rng.normal(size=(rows, COLS)).astype(np.float32) * 0.05)
    )
    w = (rng.random((rows, COLS)) < 0.85).astype(np.float32)
    return x, t, w


def shard(arrays, world: int, rank: int, step: int):
    rows = shard_rows(world, step)
    start = sum(rows[:rank])
    return [a[start : start + rows[rank]] for a in arrays]


def losses(kind: str, dialect: str, momentum: float, reduction: str = "mean", diagnostics: bool = False):
    from impl_torch import GHMCLoss, GHMRLoss

    cls = GHMCLoss if kind == "c" else GHMRLoss
    return cls(
        bins=5, momentum=momentum, dialect=dialect, reduction=reduction, sync_density=True, diagnostics=diagnostics
    )


def loss_values(rank: int, world: int, out_dir: str) -> None:
    """For each kind x dialect x reduction, several steps with momentum: loss, input gradient,
    EMA state of this rank; for "mean", with diagnostics on, this rank's diagnostics (spec.md 13)."""
    saved = {}
    for kind in ("c", "r"):
        for dialect in ("paper", "mmdet"):
            for reduction in ("mean", "sum"):
                crit = losses(kind, dialect, 0.75, reduction, diagnostics=reduction == "mean")
                for step in range(STEPS):
                    arrays = global_batch(kind, step, sum(shard_rows(world, step)))
                    x, t, w = (torch.tensor(a) for a in shard(arrays, world, rank, step))
                    x.requires_grad_(True)
                    loss = crit(x, t, w)
                    loss.backward()
                    key = f"{kind}-{dialect}-{reduction}-{step}"
                    saved[key + "-loss"] = loss.detach().numpy()
                    saved[key + "-grad"] = x.grad.numpy()
                    saved[key + "-ema"] = crit.ema.numpy().copy()
                    if crit.diagnostics:
                        d = crit.last_diagnostics()
                        saved.update({f"{key}-diagnostics-{name}": v.numpy() for name, v in zip(d._fields, d)})
    np.savez(f"{out_dir}/rank{rank}.npz", **saved)


def ddp_training(rank: int, world: int, out_dir: str) -> None:
    """A small model under real DistributedDataParallel with a synced GHMCLoss (momentum): its
    parameters after a few SGD steps, for comparison with one process on the whole batch."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from impl_torch import GHMCLoss

    torch.manual_seed(0)
    model = torch.nn.Linear(3, COLS)
    ddp = DDP(model)
    crit = GHMCLoss(bins=5, momentum=0.75, sync_density=True)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    for step in range(STEPS):
        rng = np.random.default_rng(step)
        rows = sum(shard_rows(world, step))
        feats = rng.normal(size=(rows, 3)).astype(np.float32)
        target = (rng.random((rows, COLS)) < 0.3).astype(np.float32)
        f, t = (torch.tensor(a) for a in shard([feats, target], world, rank, step))
        opt.zero_grad()
        crit(ddp(f), t).backward()
        opt.step()
    np.savez(
        f"{out_dir}/ddp{rank}.npz",
        weight=model.weight.detach().numpy(),
        bias=model.bias.detach().numpy(),
        ema=crit.ema.numpy(),
    )
    del ddp, opt  # DDP's reducer holds gloo work: drop it before the group is torn down


def compiled(rank: int, world: int, out_dir: str) -> None:
    """torch.compile(fullgraph=True) of a synced loss: the collective traces (functional
    all_reduce); its values must equal the eager loss's."""
    from impl_torch import GHMCLoss

    eager = GHMCLoss(bins=5, momentum=0.75, sync_density=True)
    graph = torch.compile(GHMCLoss(bins=5, momentum=0.75, sync_density=True), fullgraph=True)
    saved = {}
    for step in range(2):
        arrays = global_batch("c", step, sum(shard_rows(world, step)))
        x, t, w = (torch.tensor(a) for a in shard(arrays, world, rank, step))
        saved[f"eager-{step}"] = eager(x, t, w).detach().numpy()
        saved[f"compiled-{step}"] = graph(x, t, w).detach().numpy()
    np.savez(f"{out_dir}/compiled{rank}.npz", **saved)


def non_member(rank: int, world: int, out_dir: str) -> None:
    """A process group that holds only rank 0: rank 1 is not a member (its world size there is -1,
    the all_reduce a no-op, and the scaled loss would come back negated); rank 0 is."""
    from impl_torch import GHMCLoss

    group = dist.new_group([0])  # every rank takes part in creating it
    x, t = torch.randn(4, 3, requires_grad=True), (torch.rand(4, 3) < 0.3).float()
    try:
        loss = GHMCLoss(bins=5, momentum=0.75, sync_density=True, process_group=group)(x, t)
        outcome = f"loss {loss.item()!r}"
    except ValueError as e:
        outcome = f"ValueError: {e}"
    with open(f"{out_dir}/non_member{rank}.txt", "w") as f:
        f.write(outcome)


def main() -> None:
    rank, world, port, out_dir, scenario = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    {"values": loss_values, "ddp": ddp_training, "compiled": compiled, "non_member": non_member}[scenario](
        rank, world, out_dir
    )
    dist.barrier()  # every rank has saved its results and left its collectives
    dist.destroy_process_group()
    # This torch build's gloo threads can abort the process in C++ static destructors at
    # interpreter exit ("terminate called without an active exception", about 1 run in 12 with
    # a DDP model): the results are saved and the group is gone, so skip those destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
