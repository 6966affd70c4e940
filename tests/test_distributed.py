"""repro.distributed: the single-process no-op, torchrun's variables checked with messages that
say what to do, and a real 2-process gloo group (spawned, file:// rendezvous) whose DDP result
is checked against one process training on both ranks' data (the independent reference)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from repro import distributed as rd
from repro.errors import ReproError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_init_from_env_is_a_single_process_no_op_without_torchrun(no_torchrun):
    info = rd.init_from_env(device="cpu")
    assert info == rd.DistInfo(0, 1, 0, torch.device("cpu"))
    assert info.is_main and not info.distributed
    assert not dist.is_initialized()
    model = torch.nn.Linear(2, 2)
    assert rd.wrap_ddp(model, info) is model and rd.unwrap(model) is model
    x = torch.tensor([1.0, 3.0])
    mean = rd.all_reduce_mean(x)
    assert torch.equal(mean, x) and mean is not x
    assert rd.is_main()
    rd.barrier()
    rd.shutdown()


@pytest.mark.parametrize("env, needle", [
    ({"WORLD_SIZE": "2"}, "RANK, LOCAL_RANK missing"),
    ({"RANK": "0", "LOCAL_RANK": "0"}, "WORLD_SIZE missing"),
    ({"RANK": "two", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "must be integers"),
    ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "0 <= RANK < WORLD_SIZE"),
])
def test_partial_or_bad_torchrun_variables_say_to_launch_with_torchrun(no_torchrun, env, needle):
    for k, v in env.items():
        no_torchrun.setenv(k, v)
    with pytest.raises(ReproError, match="torchrun") as err:
        rd.init_from_env(device="cpu")
    assert needle in str(err.value)
    assert not dist.is_initialized()


def test_missing_master_address_is_refused_before_any_rendezvous(no_torchrun):
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        no_torchrun.setenv(k, v)
    with pytest.raises(ReproError, match="MASTER_ADDR, MASTER_PORT not set: launch with torchrun"):
        rd.init_from_env(device="cpu")
    assert not dist.is_initialized()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_device_without_cuda_names_the_cpu_alternative(no_torchrun):
    with pytest.raises(ReproError, match="CUDA is not available; use --device cpu"):
        rd.init_from_env(device="cuda")
    with pytest.raises(ReproError, match="NCCL backend needs CUDA"):
        for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
            no_torchrun.setenv(k, v)
        rd.init_from_env("nccl", device="cpu", init_method="file:///nonexistent")


# ----------------------------------------------------------------------------- two processes
STEPS, BATCH, LR = 4, 6, 0.1


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _rank_batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(BATCH, 5, generator=gen), torch.randn(BATCH, 1, generator=gen)


def _worker(rank: int, world_size: int, folder: str) -> None:
    import os

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    info = rd.init_from_env(device="cpu", init_method=f"file://{folder}/store")
    try:
        assert dist.get_backend() == "gloo" and info.world_size == world_size
        mean = rd.all_reduce_mean(torch.tensor([float(rank + 1), 10.0 * rank]))
        total = rd.all_reduce_sum(torch.tensor([float(rank + 1)]))
        model = rd.wrap_ddp(_tiny_model(), info)
        assert isinstance(model, torch.nn.parallel.DistributedDataParallel)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for step in range(STEPS):
            x, y = _rank_batch(rank, step)
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        rd.barrier()
        torch.save({"is_main": rd.is_main(), "mean": mean, "total": total,
                    "weights": rd.unwrap(model).state_dict()}, f"{folder}/rank{rank}.pt")
    finally:
        rd.shutdown()


@pytest.mark.distributed
def test_two_gloo_processes_average_tensors_and_keep_ddp_weights_identical(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert (r0["is_main"], r1["is_main"]) == (True, False)
    assert r0["mean"].tolist() == r1["mean"].tolist() == [1.5, 5.0]
    assert r0["total"].tolist() == r1["total"].tolist() == [3.0]
    w0, w1 = r0["weights"], r1["weights"]
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k  # DDP keeps the replicas bit-identical
    # Reference: one process, the mean loss over both ranks' batches (DDP's averaged gradient).
    ref = _tiny_model()
    opt = torch.optim.SGD(ref.parameters(), lr=LR)
    for step in range(STEPS):
        xs, ys = zip(*(_rank_batch(r, step) for r in range(2)), strict=True)
        opt.zero_grad()
        torch.nn.functional.mse_loss(ref(torch.cat(xs)), torch.cat(ys)).backward()
        opt.step()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(w0[k], v, rtol=1e-5, atol=1e-6)
