"""Global-batch density across workers (spec.md section 11), on real processes: 2 and 3 gloo
ranks over loopback for torch (unequal shards, an empty one, both dialects, momentum, several
steps; and a real DistributedDataParallel model), MirroredStrategy over 2 logical CPUs for tf."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference
from tolerances import TOLERANCE

TESTS = Path(__file__).parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]), OMP_NUM_THREADS="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world: int, scenario: str, out_dir: Path, timeout: float = 300) -> None:
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(TESTS / "dist_worker.py"), str(rank), str(world), str(port), str(out_dir), scenario],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:  # never leave a rank behind
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]


@pytest.mark.parametrize("world", [2, 3])
def test_synced_density_matches_the_reference_on_the_global_batch(world, tmp_path):
    pytest.importorskip("torch")
    import dist_worker as dw

    _launch(world, "values", tmp_path)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(world)]
    for kind in ("c", "r"):
        fn = reference.ghm_c if kind == "c" else reference.ghm_r
        for dialect in ("paper", "mmdet"):
            for reduction in ("mean", "sum"):
                state = None
                for step in range(dw.STEPS):
                    x, t, w = dw.global_batch(kind, step, sum(dw.shard_rows(world, step)))
                    ref = fn(x, t, w, bins=5, momentum=0.75, state=state, dialect=dialect, reduction=reduction)
                    state = ref.state
                    key = f"{kind}-{dialect}-{reduction}-{step}"
                    losses = [float(r[key + "-loss"]) for r in ranks]
                    # DDP averages: the mean of the ranks' values is the global batch's loss ...
                    np.testing.assert_allclose(np.mean(losses), ref.loss, **TOLERANCE["float32"], err_msg=key)
                    # ... and each rank's gradient / world size is the global gradient on its slice
                    grad = np.concatenate([r[key + "-grad"] for r in ranks]) / world
                    np.testing.assert_allclose(grad, ref.grad, **TOLERANCE["float32"], err_msg=key)
                    for r in ranks:  # one EMA state, the global batch's, on every rank
                        np.testing.assert_allclose(r[key + "-ema"], ref.state, **TOLERANCE["ema_state"], err_msg=key)
                    if reduction == "mean":
                        _assert_synced_diagnostics(
                            ranks, key, ref.diagnostics, kind, [dw.shard((t, w), world, r, step) for r in range(world)]
                        )


def _assert_synced_diagnostics(ranks, key, want, kind, shards):
    """spec.md 13 under sync_density: counts, N, non-empty regions, density and beta are the global
    batch's on every rank; the masses are local, and sum over the ranks to the global ones; the
    positive fraction is each rank's own."""
    got = [{name: r[f"{key}-diagnostics-{name}"] for name in want.__dataclass_fields__} for r in ranks]
    for g in got:
        for name in ("counts", "valid", "nonempty"):
            np.testing.assert_array_equal(g[name], getattr(want, name), err_msg=f"{key}: {name}")
        for name in ("density", "beta"):
            np.testing.assert_allclose(g[name], getattr(want, name), **TOLERANCE["float32"], err_msg=f"{key}: {name}")
    for name in ("grad_mass", "plain_mass"):
        np.testing.assert_allclose(
            sum(g[name] for g in got),
            getattr(want, name),
            **TOLERANCE["float32"],
            err_msg=f"{key}: {name} summed over the ranks",
        )
    for g, (t, w) in zip(got, shards):
        valid = w > 0
        local = np.count_nonzero(valid & (t == 1)) / max(np.count_nonzero(valid), 1)
        if kind == "c":
            np.testing.assert_allclose(g["positive_fraction"], local, **TOLERANCE["float32"], err_msg=key)
        else:
            assert np.isnan(g["positive_fraction"]), key


def test_ddp_model_trains_exactly_as_one_process_on_the_whole_batch(tmp_path):
    torch = pytest.importorskip("torch")
    import dist_worker as dw
    from impl_torch import GHMCLoss

    world = 3
    _launch(world, "ddp", tmp_path)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, dw.COLS)
    crit = GHMCLoss(bins=5, momentum=0.75)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(dw.STEPS):
        rng = np.random.default_rng(step)
        rows = sum(dw.shard_rows(world, step))
        feats = torch.tensor(rng.normal(size=(rows, 3)).astype(np.float32))
        target = torch.tensor((rng.random((rows, dw.COLS)) < 0.3).astype(np.float32))
        opt.zero_grad()
        crit(model(feats), target).backward()
        opt.step()
    for r in range(world):
        got = np.load(tmp_path / f"ddp{r}.npz")
        np.testing.assert_allclose(got["weight"], model.weight.detach().numpy(), **TOLERANCE["trained_parameters"])
        np.testing.assert_allclose(got["bias"], model.bias.detach().numpy(), **TOLERANCE["trained_parameters"])
        np.testing.assert_allclose(got["ema"], crit.ema.numpy(), **TOLERANCE["ema_state"])


def test_synced_loss_compiles_with_fullgraph(tmp_path):
    pytest.importorskip("torch")
    _launch(2, "compiled", tmp_path, timeout=600)
    for r in range(2):
        got = np.load(tmp_path / f"compiled{r}.npz")
        for step in range(2):
            np.testing.assert_allclose(got[f"compiled-{step}"], got[f"eager-{step}"], **TOLERANCE["compiled_vs_eager"])


def test_sync_density_without_a_process_group_is_a_clear_error():
    torch = pytest.importorskip("torch")
    from impl_torch import GHMCLoss

    with pytest.raises(ValueError, match="init_process_group"):
        GHMCLoss(sync_density=True)(torch.zeros(2, 3), torch.zeros(2, 3))


def test_sync_density_on_a_process_outside_the_group_is_a_clear_error(tmp_path):
    # Found by fuzzing (issue 19): get_world_size returns -1 there, the all_reduce does nothing, and
    # the loss and gradient came back negated (training ascends) while the EMA moved.
    pytest.importorskip("torch")
    _launch(2, "non_member", tmp_path)
    member, outsider = ((tmp_path / f"non_member{r}.txt").read_text() for r in range(2))
    assert member.startswith("loss "), member
    assert outsider.startswith("ValueError") and "not a member of process_group" in outsider, outsider


def test_tf_mirrored_strategy_synced_density_matches_the_reference(tmp_path):
    pytest.importorskip("tensorflow")
    proc = subprocess.run(
        [sys.executable, str(TESTS / "tf_distributed_check.py"), "sync"],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, (got, want) in out["compare"].items():
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), **TOLERANCE["float32"], err_msg=key)
