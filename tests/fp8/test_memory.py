"""Training-state bytes per parameter from real tensors (FP8-LM §2.2, §3; MS-AMP levels)."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from repro.fp8.memory import (
    StateLayout,
    bytes_per_param_table,
    fp8_linear_weights,
    training_state_bytes,
)
from repro.fp8.optim import FP8AdamW

torch.set_num_threads(1)


def two_linears() -> nn.Module:
    """48 parameters in 2 bias-free Linear weights (4·8 + 8·2)."""
    return nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False))


def mixed_model() -> nn.Module:
    """Embedding 10·4 = 40, LayerNorm 4 + 4, Linear 4·6 + 6 bias = 30: 78 params, 5 tensors."""
    return nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 6))


@pytest.mark.parametrize("model_fn", [two_linears, mixed_model])
def test_fp32_adamw_is_exactly_16_bytes_per_param(model_fn):
    r = training_state_bytes(model_fn(), "fp32")
    assert r.bytes_per_param == 16.0
    assert r.scale_bytes == 0


def test_megatron_bf16_is_exactly_18_bytes_per_param():
    assert training_state_bytes(mixed_model(), "bf16").bytes_per_param == 18.0


def test_o2_all_fp8_states_is_6_bytes_per_param_plus_scales():
    # fp16 master 2 + e4m3 grad 1 + e4m3 m 1 + fp16 v 2 = 6 B/param; every one of the
    # 4 states of each of the 2 tensors carries a 4-byte fp32 scale
    r = training_state_bytes(two_linears(), "O2")
    assert r.num_params == 48
    assert r.total_bytes == 48 * 6 + 2 * 4 * 4
    assert r.bytes_per_param == pytest.approx((48 * 6 + 32) / 48)
    assert r.components == {"weight": 0, "master": 96, "grad": 48, "exp_avg": 48,
                            "exp_avg_sq": 96}


def test_o1_is_11_bytes_per_param_plus_scales():
    # fp16 master 2 (scaled) + e4m3 grad 1 (scaled) + fp32 m 4 + fp32 v 4
    r = training_state_bytes(two_linears(), "O1")
    assert r.total_bytes == 48 * 11 + 2 * 2 * 4


def test_hybrid_keeps_non_linear_params_in_fp32_adam():
    # Linear weight 24 params at 6 B + 4 scales; embedding, norm and bias 54 params at 16 B
    r = training_state_bytes(mixed_model(), "O2", scope="hybrid")
    assert r.total_bytes == 24 * 6 + 4 * 4 + 54 * 16
    assert training_state_bytes(mixed_model(), "O2", scope="all").total_bytes == (
        78 * 6 + 5 * 4 * 4)


@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_o3_with_zero_over_n_ranks_is_about_1_plus_6_over_n(world_size):
    model = nn.Sequential(*[nn.Linear(32, 32, bias=False) for _ in range(8)])  # 8 × 1024
    r = training_state_bytes(model, "O3", world_size)
    # every rank: replicated E4M3 weights (1 B + scale); the states (6 B + 4 scales) of
    # 8/N whole tensors
    per_rank = 8 * (1024 + 4) + (8 // world_size) * (1024 * 6 + 4 * 4)
    assert r.per_rank_bytes == [per_rank] * world_size
    assert r.bytes_per_param == pytest.approx(1 + 6 / world_size, abs=0.03)


def test_fp8_weight_copy_adds_one_byte_when_asked():
    base = training_state_bytes(two_linears(), "O2")
    with_copy = training_state_bytes(two_linears(), "O2", include_fp8_weight_copy=True)
    assert with_copy.total_bytes - base.total_bytes == 48 + 2 * 4


def test_o2_hybrid_layout_matches_what_a_stored_master_model_holds():
    from repro.fp8 import convert
    from repro.fp8.memory import held_bytes
    from repro.fp8.optim import param_groups

    model = mixed_model()
    layout = training_state_bytes(model, "O2", scope="hybrid")
    convert(model, "O2", store_master=True)
    opt = FP8AdamW.from_level(param_groups(model, 0.0, fp8=True), "O2")
    model(torch.tensor([[1, 2, 3]])).square().mean().backward()
    opt.step()
    held = held_bytes(model, opt)
    # the layout's bytes + torch-style step counters: none (FP8AdamW counts steps in Python)
    # + the fp32 scale of the FP16 master, which the layout counts too
    assert held.total_bytes == layout.total_bytes


def test_meta_device_gives_the_same_bytes():
    model = mixed_model()
    assert (training_state_bytes(model, "O3", 4, device="meta").per_rank_bytes
            == training_state_bytes(model, "O3", 4).per_rank_bytes)


def test_accepts_level_like_objects_and_layouts():
    level = types.SimpleNamespace(name="O2", master_format="fp16", exp_avg_format="e4m3",
                                  exp_avg_sq_format="fp16", grad_format="e4m3", zero=False)
    layout = StateLayout("mine", "fp16", "e4m3", "e4m3", "fp16")
    a = training_state_bytes(two_linears(), level).total_bytes
    assert a == training_state_bytes(two_linears(), layout).total_bytes
    assert a == training_state_bytes(two_linears(), "o2").total_bytes


def test_linear_weights_are_detected_and_biases_are_not():
    model = mixed_model()
    assert fp8_linear_weights(model) == {id(model[2].weight)}


def test_unknown_level_and_bad_world_size_raise():
    with pytest.raises(ValueError, match="unknown level 'O4'"):
        training_state_bytes(two_linears(), "O4")
    with pytest.raises(ValueError, match="world_size"):
        training_state_bytes(two_linears(), "O3", 0)
    with pytest.raises(ValueError, match="scope"):
        training_state_bytes(two_linears(), "O2", scope="some")


def test_table_has_every_level_and_the_paper_figures():
    rows = bytes_per_param_table(mixed_model(), world_sizes=(4,))
    by_key = {(r["level"], r["scope"], r["world_size"]): r for r in rows}
    assert by_key[("fp32", "all", 1)]["bytes_per_param"] == 16.0
    assert by_key[("O2", "all", 1)]["paper"] == "6"
    assert ("O3", "hybrid", 4) in by_key


@pytest.mark.parametrize("name", ["O1", "O2", "O3"])
def test_fp8_levels_from_repro_levels_give_the_same_bytes_as_the_names(name):
    levels = pytest.importorskip("repro.fp8.levels")
    model = mixed_model()
    for n in (1, 4):
        assert (training_state_bytes(model, levels.get_level(name), n).per_rank_bytes
                == training_state_bytes(model, name, n).per_rank_bytes)
