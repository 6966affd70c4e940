"""Optimization levels (paper §3 / MS-AMP docs table) and model conversion."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from repro.fp8.conversion import (
    convert,
    fp8_scaling_state,
    fp8_stats,
    load_fp8_scaling_state,
    unconvert,
)
from repro.fp8.levels import LEVELS, get_level
from repro.fp8.linear import FP8Linear
from repro.lm.data import CharTokenizer, batch_at, pydoc_text
from repro.lm.model import lm_loss, tiny_llama

torch.set_num_threads(1)

TEXT = pydoc_text()[:200_000]
TOKENIZER = CharTokenizer.fit(TEXT)
VOCAB = TOKENIZER.vocab_size
LLAMA_LINEARS = [f"model.layers.{i}.{p}" for i in range(2) for p in (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")] + ["lm_head"]


def tokens():
    return torch.tensor(TOKENIZER.encode(TEXT))


def small_llama(seed=0):
    return tiny_llama(VOCAB, d_model=64, n_layers=2, n_heads=4, mlp=128, max_seq=64, seed=seed)


# -- levels ---------------------------------------------------------------------------------

def test_levels_follow_the_paper_table():
    o1, o2, o3 = LEVELS["O1"], LEVELS["O2"], LEVELS["O3"]
    for lvl in (o1, o2, o3):  # FP8 GEMM, FP8 comm, FP8 weight grad at every level
        assert lvl.fp8_gemm and lvl.fp8_wgrad_comm and lvl.grad_format == "e4m3"
        assert lvl.master_format == "fp16"  # FP16 with tensor scaling
    assert (o1.exp_avg_format, o1.exp_avg_sq_format) == ("fp32", "fp32")
    assert (o2.exp_avg_format, o2.exp_avg_sq_format) == ("e4m3", "fp16")
    assert (o3.exp_avg_format, o3.exp_avg_sq_format) == ("e4m3", "fp16")
    assert (o1.weight_format, o2.weight_format, o3.weight_format) == ("fp16", "fp16", "e4m3")
    assert (o1.zero, o2.zero, o3.zero) == (False, False, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o1.zero = True


def test_get_level_is_case_insensitive_and_rejects_unknown_names():
    assert get_level("o2") is LEVELS["O2"]
    assert get_level(LEVELS["O3"]) is LEVELS["O3"]
    with pytest.raises(ValueError, match="O1, O2, O3"):
        get_level("O4")


# -- convert --------------------------------------------------------------------------------

def test_convert_replaces_exactly_the_15_linears_and_shares_parameters():
    model = tiny_llama(VOCAB)  # default size: d_model 128, 2 layers
    params = {n: p for n, p in model.named_parameters()}
    keys = list(model.state_dict())
    assert convert(model, "O1") is model
    fp8 = [n for n, m in model.named_modules() if isinstance(m, FP8Linear)]
    assert fp8 == LLAMA_LINEARS
    assert not any(type(m) is nn.Linear for m in model.modules())
    assert list(model.state_dict()) == keys
    assert all(p is params[n] for n, p in model.named_parameters())
    assert model.lm_head.fp8.wgrad == "e4m3"  # the level's weight-gradient format


def test_converted_loss_is_close_to_fp32_and_training_reduces_it():
    ids = tokens()
    batch = batch_at(ids, 0, 8, 32, seed=0)
    with torch.no_grad():
        reference = float(lm_loss(small_llama(), batch))
    model = convert(small_llama(), "O2")
    with torch.no_grad():
        loss0 = float(lm_loss(model, batch))  # train mode: records one input cast
    assert math.isclose(loss0, reference, rel_tol=5e-3)
    assert loss0 != reference  # the GEMMs really ran in FP8
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(20):
        loss = lm_loss(model, batch_at(ids, step, 8, 32, seed=0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < losses[0] - 0.3
    stats = fp8_stats(model)
    assert list(stats) == LLAMA_LINEARS
    for layer in stats.values():
        assert set(layer) == {"input", "weight", "grad_output", "wgrad"}
        assert layer["input"]["casts"] == 21 and layer["grad_output"]["casts"] == 20
        assert all(0 <= s["overflow_rate"] <= 1 and 0 <= s["underflow_rate"] <= 1
                   for s in layer.values())


@pytest.mark.parametrize("skip, expected", [
    (("lm_head",), 14),
    (("*.mlp.*",), 9),
    (("model.layers.0.self_attn.q_proj", "model.layers.1.*"), 7),
    ((lambda name, module: module.out_features == VOCAB,), 14),
])
def test_skip_keeps_layers_in_high_precision(skip, expected):
    model = convert(small_llama(), skip=skip)
    assert sum(isinstance(m, FP8Linear) for m in model.modules()) == expected
    assert sum(type(m) is nn.Linear for m in model.modules()) == 15 - expected


def test_unknown_skip_pattern_is_an_error_and_leaves_the_model_untouched():
    model = small_llama()
    with pytest.raises(ValueError, match="lm_haed"):
        convert(model, skip=("lm_haed",))
    assert not any(isinstance(m, FP8Linear) for m in model.modules())


def test_model_without_linear_layers_is_refused():
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        convert(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    model = convert(small_llama())
    with pytest.raises(ValueError, match="converted twice"):
        convert(model)


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32,
                        bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


def test_gpt2_conv1d_is_refused_with_a_hint_and_converted_on_request():
    model = tiny_gpt2()
    with pytest.raises(ValueError, match="Conv1D"):
        convert(model)
    batch = batch_at(tokens(), 0, 4, 16, seed=1)
    with torch.no_grad():
        reference = float(lm_loss(model, batch))
    convert(model, conv1d=True)
    names = [n for n, m in model.named_modules() if isinstance(m, FP8Linear)]
    assert names == ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                     "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj", "lm_head"]
    assert model.lm_head.weight is model.transformer.wte.weight  # tying survives
    loss = lm_loss(model, batch)
    assert math.isclose(loss.item(), reference, rel_tol=5e-3)
    loss.backward()
    assert model.transformer.h[0].attn.c_attn.weight.grad.shape == (32, 96)
    unconvert(model)
    assert type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
    with torch.no_grad():
        assert math.isclose(float(lm_loss(model, batch)), reference, rel_tol=1e-6)


def test_float64_model_is_refused_before_anything_changes():
    model = small_llama().double()
    with pytest.raises(TypeError, match="float64"):
        convert(model)
    assert not any(isinstance(m, FP8Linear) for m in model.modules())


def test_unknown_level_and_options_are_refused():
    with pytest.raises(ValueError, match="O1, O2, O3"):
        convert(small_llama(), "O4")
    with pytest.raises(ValueError, match="wgrad"):
        convert(small_llama(), wgrad="int4")


def test_unconvert_restores_linear_layers_with_the_same_parameters():
    model = small_llama()
    params = list(model.parameters())
    batch = batch_at(tokens(), 0, 4, 16, seed=2)
    reference = lm_loss(model, batch)
    unconvert(convert(model))
    assert sum(type(m) is nn.Linear for m in model.modules()) == 15
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    assert torch.equal(lm_loss(model, batch), reference)


def test_scaling_state_round_trip_resumes_exactly():
    ids = tokens()
    a = convert(small_llama())
    for step in range(3):
        lm_loss(a, batch_at(ids, step, 4, 16, seed=0)).backward()
    b = convert(small_llama())
    b.load_state_dict(a.state_dict())
    load_fp8_scaling_state(b, fp8_scaling_state(a))
    batch = batch_at(ids, 3, 4, 16, seed=0)
    assert torch.equal(lm_loss(a, batch), lm_loss(b, batch))
    with pytest.raises(KeyError, match="disagree"):
        load_fp8_scaling_state(convert(small_llama(), skip=("lm_head",)), fp8_scaling_state(a))


def test_package_level_convert_is_the_function_even_after_its_module_is_imported():
    import importlib

    importlib.import_module("repro.fp8.conversion")
    from repro.fp8 import convert, fp8_stats

    assert callable(convert) and convert.__name__ == "convert"
    assert fp8_stats.__name__ == "fp8_stats"
