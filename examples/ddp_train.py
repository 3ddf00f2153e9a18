"""Train a tiny classifier with GHM-C over 2 CPU processes (gloo), the density summed over both
(sync_density=True), under DistributedDataParallel; every rank prints the same loss.

    python examples/ddp_train.py [--world 2] [--steps 5] [--dump DIR]

With sync_density=True each rank's loss is W / N_global * (its share of the global sum), so
the mean over ranks (what each rank prints after an all_reduce) is the loss of the whole global
batch, and DDP's averaged gradient is that loss's gradient.
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from impl_torch import GHMCLoss


def train(rank: int, world: int, port: int, steps: int, dump: str | None = None) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DDP(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)))
    crit = GHMCLoss(bins=10, momentum=0.75, dialect="mmdet", sync_density=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = {}
    for step in range(steps):
        gen = torch.Generator().manual_seed(1000 * step + rank)  # each rank draws its own shard
        x = torch.randn(32 + 8 * rank, 8, generator=gen)  # unequal shard sizes
        y = ((x[:, :3] + 0.5 * torch.randn(x.shape[0], 3, generator=gen)) > 1.0).float()
        opt.zero_grad()
        logits = model(x)
        loss = crit(logits, y)
        loss.backward()
        seen.update(
            {
                f"logits{step}": logits.detach().numpy(),
                f"target{step}": y.numpy(),
                f"share{step}": loss.detach().numpy(),
            }
        )
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        mean /= world  # the global batch's loss, the same number on every rank
        for r in range(world):  # one rank after the other, so the lines do not interleave
            if r == rank:
                print(
                    f"rank {rank} step {step}: global GHM-C loss {mean.item():.6f} "
                    f"(this rank's share {loss.item():.6f})",
                    flush=True,
                )
            dist.barrier()
    if dump:  # what this rank saw and returned, for a check against the reference on the global batch
        import numpy as np

        np.savez(os.path.join(dump, f"rank{rank}.npz"), **seen)
    # Drop DDP (its reducer holds gloo work objects) and meet before tearing the group down: a
    # rank that exits while the other still has gloo work in flight can abort at interpreter exit.
    del model, opt, loss, mean
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dump", metavar="DIR", help="save each rank's logits, targets and loss per step here")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(train, args=(args.world, port, args.steps, args.dump), nprocs=args.world, join=True)


if __name__ == "__main__":
    main()
