"""FP8AdamW: precision-decoupled AdamW (FP8-LM §2.2, Table 6 / Fig. 8)."""

from __future__ import annotations

import types

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from repro.fp8.optim import FP8AdamW, flatten_state_dict, unflatten_state_dict

torch.set_num_threads(1)

ALL_FP32 = dict(master_format="fp32", exp_avg_format="fp32", exp_avg_sq_format="fp32")
PAPER = dict(master_format="fp16", exp_avg_format="e4m3", exp_avg_sq_format="fp16")


def make_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))


def regression_data(seed: int = 1, n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, 1, generator=g))
    return x, y


def train(model, opt, x, y, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("betas,weight_decay", [((0.9, 0.999), 0.01), ((0.9, 0.95), 0.1)])
def test_all_fp32_states_match_torch_adamw_over_50_steps(betas, weight_decay):
    reference, ours = make_mlp(), make_mlp()
    x, y = regression_data()
    # two groups, the second without weight decay, as LLM recipes do for biases
    ref_groups = [{"params": [reference[0].weight, reference[2].weight]},
                  {"params": [reference[0].bias, reference[2].bias], "weight_decay": 0.0}]
    our_groups = [{"params": [ours[0].weight, ours[2].weight]},
                  {"params": [ours[0].bias, ours[2].bias], "weight_decay": 0.0}]
    ref_opt = torch.optim.AdamW(ref_groups, lr=1e-2, betas=betas, weight_decay=weight_decay,
                                foreach=False)
    our_opt = FP8AdamW(our_groups, lr=1e-2, betas=betas, weight_decay=weight_decay, **ALL_FP32)
    for _ in range(50):
        train(reference, ref_opt, x, y, 1)
        train(ours, our_opt, x, y, 1)
        for a, b in zip(reference.parameters(), ours.parameters(), strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_paper_formats_track_fp32_on_toy_regression_while_e4m3_master_stalls():
    # noisy linear least squares: the loss floor is the noise variance 0.25
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    y = x @ torch.randn(16, 1, generator=g) + 0.5 * torch.randn(256, 1, generator=g)
    final = {}
    for name, formats in {"fp32": ALL_FP32, "paper": PAPER,
                          "e4m3_master": dict(PAPER, master_format="e4m3")}.items():
        torch.manual_seed(0)
        model = torch.nn.Linear(16, 1)
        final[name] = train(model, FP8AdamW(model.parameters(), lr=3e-2, **formats), x, y,
                            300)[-1]
    assert final["fp32"] < 0.3
    assert abs(final["paper"] - final["fp32"]) < 0.01 * final["fp32"]
    assert final["e4m3_master"] > 5 * final["fp32"]  # Table 6 #3: FP8 master degrades


def test_e4m3_second_moment_flushes_to_zero_where_first_moment_survives():
    # gradients spanning 3 decades: v = (1-β2)·g² spans 6, beyond E4M3's 17.8 binades
    # (2^17.8 ≈ 2.3e5 < 1e6), while m spans 3 and fits
    grad = torch.logspace(0, -3, 64)
    flushed = {}
    for v_format in ("e4m3", "fp16"):
        p = torch.nn.Parameter(torch.zeros(64))
        opt = FP8AdamW([p], lr=1e-3, master_format="fp16", exp_avg_format="e4m3",
                       exp_avg_sq_format=v_format)
        p.grad = grad.clone()
        opt.step()
        m = opt.state[p]["exp_avg"].float()
        v = opt.state[p]["exp_avg_sq"].float()
        flushed[v_format] = int(((v == 0) & (m != 0)).sum())
    assert flushed["e4m3"] > 0
    assert flushed["fp16"] == 0


def test_e4m3_master_rounds_away_updates_that_fp16_master_keeps():
    torch.manual_seed(0)
    changed = {}
    for master in ("e4m3", "fp16"):
        p = torch.nn.Parameter(torch.randn(4096) * 0.02)  # a typical init std
        opt = FP8AdamW([p], lr=1e-4, weight_decay=0.0, master_format=master)
        before = p.detach().clone()
        p.grad = torch.randn(4096)
        opt.step()  # Adam's first step moves every entry by lr = 1e-4
        changed[master] = float((p != before).float().mean())
    assert changed["fp16"] > 0.95
    assert changed["e4m3"] < 0.25


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_nonfinite_gradient_skips_the_whole_step(bad):
    model = make_mlp()
    x, y = regression_data()
    opt = FP8AdamW(model.parameters(), lr=1e-2, **PAPER)
    train(model, opt, x, y, 3)
    before = [p.detach().clone() for p in model.parameters()]
    steps_before = [opt.state[p]["step"] for p in model.parameters()]
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    model[0].weight.grad[0, 0] = bad  # one bad entry in one parameter
    opt.step()
    assert opt.skipped_steps == 1
    for b, p in zip(before, model.parameters(), strict=True):
        assert torch.equal(b, p.detach())
        assert torch.isfinite(p).all()
    assert [opt.state[p]["step"] for p in model.parameters()] == steps_before
    train(model, opt, x, y, 1)  # the next clean step proceeds
    assert opt.skipped_steps == 1
    after = [opt.state[p]["step"] for p in model.parameters()]
    assert after == [s + 1 for s in steps_before]


@pytest.mark.parametrize("formats", [PAPER, dict(master_format="bf16", exp_avg_format="e5m2",
                                                 exp_avg_sq_format="e4m3", grad_format="e4m3")])
def test_state_dict_round_trip_through_safetensors_resumes_bit_identically(tmp_path, formats):
    x, y = regression_data()
    model = make_mlp()
    opt = FP8AdamW(model.parameters(), lr=1e-2, **formats)
    train(model, opt, x, y, 5)
    tensors, metadata = flatten_state_dict(opt.state_dict())
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert not any(t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) for t in tensors.values())
    save_file(tensors, tmp_path / "optim.safetensors", metadata=metadata)
    save_file(dict(model.state_dict()), tmp_path / "model.safetensors")
    continued = train(model, opt, x, y, 5)

    resumed_model = make_mlp(seed=123)  # different init: everything must come from the files
    resumed_model.load_state_dict(load_file(tmp_path / "model.safetensors"))
    resumed_opt = FP8AdamW(resumed_model.parameters(), lr=0.5, **ALL_FP32)
    with safe_open(str(tmp_path / "optim.safetensors"), "pt") as f:
        loaded_meta = f.metadata()
    resumed_opt.load_state_dict(unflatten_state_dict(load_file(tmp_path / "optim.safetensors"),
                                                     loaded_meta))
    resumed = train(resumed_model, resumed_opt, x, y, 5)
    assert resumed == continued
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed_opt.param_groups[0]["master_format"] == formats["master_format"]


def test_state_dict_holds_plain_tensors_and_step_counts():
    model = make_mlp()
    opt = FP8AdamW(model.parameters(), **PAPER)
    sd = opt.state_dict()
    entry = sd["state"][0]
    # no master entry: the master weight is the parameter itself (in the model's state_dict)
    assert set(entry) == {"step", "exp_avg.payload", "exp_avg.scale", "exp_avg_sq.payload",
                          "exp_avg_sq.scale"}
    assert entry["exp_avg.payload"].dtype == torch.uint8  # E4M3 viewed as bytes
    assert entry["exp_avg_sq.payload"].dtype == torch.float16


@pytest.mark.parametrize("key", ["master_format", "exp_avg_format", "exp_avg_sq_format",
                                 "grad_format"])
def test_unknown_format_name_raises_value_error_listing_valid_names(key):
    with pytest.raises(ValueError, match=r"'fp8'.*'e4m3', 'e5m2', 'fp16', 'bf16', 'fp32'"):
        FP8AdamW(make_mlp().parameters(), **{key: "fp8"})


def test_state_bytes_counts_live_tensors_the_fp32_parameter_included():
    model = torch.nn.Linear(16, 4)  # weight 64 + bias 4 = 68 params, 2 tensors
    opt = FP8AdamW(model.parameters(), **PAPER)
    # a plain fp32 parameter is its own master: 4 B (the FP16 numerics, fp32 storage);
    # e4m3 m 1 + fp16 v 2, each of the 2 × 2 scaled moments with a 4-byte scale; no grad yet
    assert opt.state_bytes_by_component() == {"master": 68 * 4, "weight": 0, "grad": 0,
                                              "exp_avg": 68 + 8, "exp_avg_sq": 68 * 2 + 8}
    model(torch.randn(2, 16)).sum().backward()
    assert opt.state_bytes_by_component()["grad"] == 68 * 4  # the fp32 .grad
    fp32 = FP8AdamW(model.parameters(), **ALL_FP32)  # no scales
    assert fp32.state_bytes() == 68 * 16


def test_from_level_reads_the_level_fields():
    level = types.SimpleNamespace(master_format="fp16", exp_avg_format="e4m3",
                                  exp_avg_sq_format="fp16", grad_format="e4m3", zero=False)
    opt = FP8AdamW.from_level(make_mlp().parameters(), level, lr=5e-4)
    group = opt.param_groups[0]
    assert (group["master_format"], group["exp_avg_format"], group["exp_avg_sq_format"],
            group["grad_format"], group["lr"]) == ("fp16", "e4m3", "fp16", "e4m3", 5e-4)


def test_from_level_by_name_uses_repro_levels():
    levels = pytest.importorskip("repro.fp8.levels")
    opt = FP8AdamW.from_level(make_mlp().parameters(), "O2")
    level = levels.get_level("O2")
    assert opt.param_groups[0]["exp_avg_format"] == level.exp_avg_format
