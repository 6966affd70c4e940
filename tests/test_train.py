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
