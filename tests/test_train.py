from __future__ import annotations

import math

import pytest
import torch

from repro.data import batch_indices
from repro.errors import CheckpointError
from repro.train import TrainConfig, fit, load_checkpoint, lr_factor


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen) + 0.1 * torch.randn(256, 1, generator=gen)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.1),
                                torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def batch_fn(step):
        idx = batch_indices(len(x), 32, step, seed=seed)
        return x[idx], y[idx]

    def loss_fn(m, batch):
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    return model, batch_fn, loss_fn


def test_training_reduces_the_loss():
    model, batch_fn, loss_fn = _problem()
    hist = fit(model, loss_fn, batch_fn, TrainConfig(steps=60, lr=1e-2, progress=False))
    assert hist.last(10) < 0.5 * sum(hist.loss[:10]) / 10


def test_resume_gives_the_numbers_of_an_uninterrupted_run(tmp_path):
    model, batch_fn, loss_fn = _problem()
    full = fit(model, loss_fn, batch_fn, TrainConfig(steps=20, lr=1e-2, progress=False))
    ref = [p.detach().clone() for p in model.parameters()]

    cfg = TrainConfig(steps=20, lr=1e-2, progress=False, checkpoint_dir=str(tmp_path),
                      checkpoint_every=10)
    model, batch_fn, loss_fn = _problem()

    def crashing_batch_fn(step):
        if step == 13:
            raise KeyboardInterrupt  # the job dies after the step-10 checkpoint
        return batch_fn(step)

    with pytest.raises(KeyboardInterrupt):
        fit(model, loss_fn, crashing_batch_fn, cfg)
    model, batch_fn, loss_fn = _problem(seed=0)
    torch.manual_seed(123)  # the resumed process starts from another RNG state
    resumed = fit(model, loss_fn, batch_fn, cfg)
    assert resumed.loss == full.loss  # history carried over, same losses bit for bit
    for a, b in zip(ref, model.parameters()):
        assert torch.equal(a, b)


def test_truncated_checkpoint_is_a_clear_error_and_stays_untouched(tmp_path):
    model, batch_fn, loss_fn = _problem()
    fit(model, loss_fn, batch_fn, TrainConfig(steps=2, progress=False, lr=1e-3,
                                              checkpoint_dir=str(tmp_path)))
    ckpt = tmp_path / "last.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 3])
    before = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(ckpt, model)
    assert ckpt.read_bytes() == before


def test_non_finite_loss_skips_the_step_and_keeps_weights():
    model, batch_fn, _ = _problem()
    before = [p.detach().clone() for p in model.parameters()]
    hist = fit(model, lambda m, b: m(b[0]).sum() * float("nan"), batch_fn,
               TrainConfig(steps=3, progress=False))
    assert hist.skipped_steps == 3
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_lr_schedule_warms_up_linearly_then_decays_to_the_floor():
    cfg = TrainConfig(steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(110, cfg) == pytest.approx(0.1)


def test_batches_cover_each_epoch_once_and_depend_only_on_step_and_seed():
    seen = torch.cat([batch_indices(100, 10, s, seed=3) for s in range(10)])
    assert sorted(seen.tolist()) == list(range(100))
    assert torch.equal(batch_indices(100, 10, 7, 3), batch_indices(100, 10, 7, 3))
    assert not torch.equal(batch_indices(100, 10, 0, 3), batch_indices(100, 10, 10, 3))


def test_checkpoint_stores_tied_weights_once_and_restores_the_tie(tmp_path):
    from repro.train import save_checkpoint

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

    model = Tied()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, 3)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert [k for k in f.keys() if k.startswith("model.")] == ["model.emb.weight"]
    fresh = Tied()
    step, _ = load_checkpoint(path, fresh)
    assert step == 3 and torch.equal(fresh.head.weight, model.emb.weight)
    assert fresh.head.weight is fresh.emb.weight


def test_diverged_flags_nan_and_a_rising_tail_but_not_a_plateau():
    from repro.train import History

    falling = History(loss=[5 - 0.01 * i for i in range(200)])
    assert not falling.diverged(window=20)
    rising = History(loss=[5 - 0.01 * i for i in range(100)] + [4 + 0.02 * i for i in range(100)])
    assert rising.diverged(window=20, margin=0.05)
    assert History(loss=[1.0, float("nan"), 0.5]).diverged(window=2)
    plateau = History(loss=[1.0 + 0.01 * (i % 2) for i in range(100)])
    assert not plateau.diverged(window=10, margin=0.05)


# ----------------------------------------------------------------------------- integrity
def _checkpoint(tmp_path):
    model, batch_fn, loss_fn = _problem()
    fit(model, loss_fn, batch_fn, TrainConfig(steps=2, progress=False, lr=1e-3,
                                              checkpoint_dir=str(tmp_path)))
    return tmp_path / "last.safetensors"


def _rewrite(path, edit):
    """Rewrite a checkpoint with ``edit(tensors, meta)`` applied, as a tamperer would."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    edit(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


def _fresh_weights():
    model, _, _ = _problem(seed=5)
    return model, [p.detach().clone() for p in model.parameters()]


def test_a_checkpoint_with_altered_tensor_bytes_is_refused_before_anything_loads(tmp_path):
    ckpt = _checkpoint(tmp_path)
    data = bytearray(ckpt.read_bytes())
    data[-3] ^= 0x01  # one bit of one tensor
    ckpt.write_bytes(bytes(data))
    model, before = _fresh_weights()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ckpt, model)
    assert str(err.value).startswith(f"checkpoint {ckpt} fails its content check (sha256 ")
    assert "changed after it was written" in str(err.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # untouched


def test_a_checkpoint_with_edited_metadata_is_refused(tmp_path):
    ckpt = _checkpoint(tmp_path)
    _rewrite(ckpt, lambda tensors, meta: meta.update(step="9"))
    with pytest.raises(CheckpointError, match="fails its content check"):
        load_checkpoint(ckpt, _fresh_weights()[0])


def test_a_missing_metadata_key_is_a_checkpoint_error_not_a_key_error(tmp_path):
    ckpt = _checkpoint(tmp_path)
    _rewrite(ckpt, lambda tensors, meta: meta.pop("history"))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ckpt, _fresh_weights()[0])
    assert str(err.value) == (f"checkpoint {ckpt} lacks history: it was altered or not written "
                              "by repro.train.save_checkpoint. Delete it to start over.")


def test_a_checkpoint_without_the_rng_tensor_names_it(tmp_path):
    ckpt = _checkpoint(tmp_path)
    _rewrite(ckpt, lambda tensors, meta: tensors.pop("rng.torch"))
    with pytest.raises(CheckpointError, match=r"lacks rng\.torch \(tensor\)"):
        load_checkpoint(ckpt, _fresh_weights()[0])


def test_the_content_hash_matches_an_independent_recomputation(tmp_path):
    """sha256 over (sorted-JSON metadata, then per tensor in sorted key order: name, dtype,
    shape, bytes), each part length-prefixed, recomputed here with hashlib and numpy."""
    import hashlib
    import json

    from safetensors import safe_open

    ckpt = _checkpoint(tmp_path)
    with safe_open(str(ckpt), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    h = hashlib.sha256()
    for part in [json.dumps({k: v for k, v in meta.items() if k != "sha256"},
                            sort_keys=True).encode()] + [
            b for k in sorted(tensors) for b in (
                json.dumps([k, str(tensors[k].dtype), list(tensors[k].shape)]).encode(),
                tensors[k].contiguous().view(-1).view(torch.uint8).numpy().tobytes())]:
        h.update(len(part).to_bytes(8, "little") + part)
    assert meta["sha256"] == h.hexdigest() and meta["format"] == "repro-ckpt-2"


def test_a_save_that_fails_half_way_keeps_the_previous_checkpoint_and_no_temporary(
        tmp_path, monkeypatch):
    import safetensors.torch

    from repro.train import save_checkpoint

    ckpt = _checkpoint(tmp_path)
    before = ckpt.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    model, _ = _fresh_weights()
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(ckpt, model, torch.optim.SGD(model.parameters(), lr=0.1), 7)
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


# ----------------------------------------------------------------------------- distributed
def _fit_worker(rank: int, world_size: int, folder: str) -> None:
    import json
    import os

    import torch.distributed as dist

    import repro.train as rt
    from repro import distributed as rd

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    rd.init_from_env(device="cpu", init_method=f"file://{folder}/store")
    saves = []
    real_save = rt.save_checkpoint

    def recording_save(path, model, optimizer, step, history=None):
        saves.append(step)
        return real_save(path, model, optimizer, step, history)

    rt.save_checkpoint = recording_save
    try:
        model, batch_fn, loss_fn = _problem()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        cfg = TrainConfig(steps=4, lr=1e-2, progress=False, checkpoint_dir=f"{folder}/ckpt",
                          checkpoint_every=2)
        fit(ddp, loss_fn, batch_fn, cfg)
        # every rank returns only once rank 0's final checkpoint is complete (the barrier)
        with open(f"{folder}/ckpt/last.safetensors", "rb") as f:
            size = len(f.read())
        step, _ = load_checkpoint(f"{folder}/ckpt/last.safetensors",
                                  torch.nn.parallel.DistributedDataParallel(_problem()[0]))
        with open(f"{folder}/rank{rank}.json", "w") as f:
            json.dump({"saves": saves, "step_seen": step, "size": size}, f)
        dist.barrier()
    finally:
        rt.save_checkpoint = real_save
        rd.shutdown()


@pytest.mark.distributed
def test_fit_under_two_gloo_processes_writes_checkpoints_from_rank_0_only(tmp_path):
    import json

    import torch.multiprocessing as mp

    mp.spawn(_fit_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["saves"] == [2, 4] and r1["saves"] == []  # one writer
    assert r0["step_seen"] == r1["step_seen"] == 4  # rank 1 waited for the final save
    assert r0["size"] == r1["size"] > 0
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.safetensors"]
