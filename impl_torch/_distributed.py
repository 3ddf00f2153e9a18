"""Global-batch density across data-parallel workers (spec.md section 11): the region counts of
every worker are summed by one all_reduce of bins + 1 int64 values per call, before beta is
formed, so that every worker weights its entries by the density of the whole global batch, as
SyncBatchNorm does for batch statistics. Nothing else is communicated and no gradient flows
through the collective."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


def world_size(process_group=None) -> int:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "sync_density=True needs torch.distributed initialised (init_process_group) before the "
            "loss is called; without it, use sync_density=False (each process harmonizes its own batch)"
        )
    size = dist.get_world_size(process_group)
    if size < 1:  # -1: this process is not in the group; its all_reduce would do nothing
        raise ValueError(
            f"sync_density=True: this process (global rank {dist.get_rank()}) is not a member of "
            f"process_group, so there is no global batch to sum over; call the loss with the group "
            f"this process trains in (or sync_density=False)"
        )
    return size


def sum_counts(
    counts: torch.Tensor, ok: torch.Tensor, bins: int, process_group=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The counts of the global batch and whether every worker's batch is ok. The spare slot
    ``bins`` (the local masked count, not needed globally) carries "this worker is not ok", so
    that a poisoned batch anywhere poisons every worker and no EMA state moves."""
    packed = torch.cat([counts[:bins], (~ok).reshape(1).to(torch.int64)])
    if torch.compiler.is_compiling():
        import torch.distributed._functional_collectives as funcol

        # WORLD is None only before init_process_group, which world_size() has required
        group = cast("ProcessGroup", process_group if process_group is not None else torch.distributed.group.WORLD)
        summed = funcol.all_reduce(packed, "sum", group)
    else:
        torch.distributed.all_reduce(packed, group=process_group)
        summed = packed
    return summed, summed[bins] == 0
