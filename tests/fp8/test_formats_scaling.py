"""Formats, quantisation and scaling against independent references: ml_dtypes' float8
types, the formats' definitions worked by hand, and MS-AMP's rule written out."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

from repro.fp8.formats import E4M3, E5M2, QuantStats, dequantize, get_format, quantize
from repro.fp8.scaling import MAX_EXPONENT, ScalingState, power_of_two_scale
from repro.fp8.tensor import ScaledTensor


@pytest.mark.parametrize("fmt,np_dtype", [(E4M3, ml_dtypes.float8_e4m3fn),
                                          (E5M2, ml_dtypes.float8_e5m2)])
def test_format_constants_match_ml_dtypes(fmt, np_dtype):
    info = ml_dtypes.finfo(np_dtype)
    assert fmt.max == float(info.max)
    assert fmt.min_normal == float(info.smallest_normal)
    assert fmt.min_subnormal == float(info.smallest_subnormal)
    values = fmt.representable_values().numpy()
    assert values.max() == fmt.max and values[values > 0].min() == fmt.min_subnormal


@pytest.mark.parametrize("fmt,np_dtype", [(E4M3, ml_dtypes.float8_e4m3fn),
                                          (E5M2, ml_dtypes.float8_e5m2)])
def test_quantize_rounds_like_ml_dtypes_inside_the_range(fmt, np_dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, generator=gen) * torch.logspace(-6, 2, 10_000)
    x = x.clamp(-fmt.max, fmt.max)
    ours = quantize(x, fmt).float().numpy()
    ref = x.numpy().astype(np_dtype).astype(np.float32)
    np.testing.assert_array_equal(ours, ref)


def test_quantize_clamps_before_the_cast_and_counts_overflow():
    stats = QuantStats()
    q = quantize(torch.tensor([1e6, -7e4, 61440.0, 1.0]), "e5m2", stats=stats)
    assert q.float().tolist() == [57344.0, -57344.0, 57344.0, 1.0]  # never inf
    assert stats.overflow == 3 and stats.underflow == 0 and stats.numel == 4


def test_underflow_counts_values_that_round_to_zero_including_the_tie():
    tiny = E4M3.min_subnormal
    x = torch.tensor([0.0, tiny / 4, tiny / 2, tiny * 0.51, tiny, -tiny / 3])
    stats = QuantStats()
    q = quantize(x, "e4m3", stats=stats)
    assert stats.underflow == 3  # tiny/4, the tie tiny/2, -tiny/3; zero is not an underflow
    assert int(((x != 0) & (q.float() == 0)).sum()) == 3  # the same count by decoding


def test_nan_stays_nan_and_dequantize_inverts_the_scale():
    q = quantize(torch.tensor([float("nan"), 3.0]), "e4m3", scale=4.0)
    out = dequantize(q, 4.0)
    assert math.isnan(out[0]) and out[1] == 3.0


def test_power_of_two_scale_is_msamps_rule_worked_by_hand():
    # amax 3.0, E4M3: 448/3 = 149.3 → floor(log2) = 7 → scale 128; 3*128 = 384 <= 448 < 3*256
    assert power_of_two_scale(3.0, 448.0) == 128.0
    assert power_of_two_scale(3.0, 448.0, margin=1) == 64.0
    assert power_of_two_scale(448.0, 448.0) == 1.0
    assert power_of_two_scale(1000.0, 448.0) == 0.25
    assert power_of_two_scale(0.0, 448.0, previous=8.0) == 8.0
    assert power_of_two_scale(float("inf"), 448.0, previous=8.0) == 8.0
    assert power_of_two_scale(float("nan"), 448.0, previous=2.0) == 2.0


def test_tiny_amax_gives_a_finite_scale_and_no_nan():
    s = power_of_two_scale(1e-40, 448.0)
    assert s == 2.0**MAX_EXPONENT and math.isfinite(float(torch.tensor(s)))
    q = quantize(torch.tensor([0.0, 1e-40]), "e4m3", s)
    assert not torch.isnan(q.float()).any()


def test_delayed_scaling_uses_the_history_and_saturates_a_spike_jit_does_not():
    delayed = ScalingState("e4m3", mode="delayed", history_len=4)
    jit = ScalingState("e4m3", mode="jit")
    for _ in range(4):
        x = torch.full((8,), 1.0)
        delayed.cast(x), jit.cast(x)
    spike = torch.full((8,), 10.0)
    _, s_delayed = delayed.cast(spike)
    _, s_jit = jit.cast(spike)
    assert s_delayed == 256.0  # from the history's amax 1.0: 448/1 → 2**8
    assert s_jit == 32.0  # 448/10 = 44.8 → 2**5
    assert delayed.stats.overflow == 8 and jit.stats.overflow == 0


def test_first_delayed_cast_falls_back_to_just_in_time():
    state = ScalingState("e5m2", mode="delayed")
    _, scale = state.cast(torch.tensor([2.0, -3.0]))
    assert scale == power_of_two_scale(3.0, E5M2.max)


def test_get_format_errors_name_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        get_format("e3m4")
    with pytest.raises(ValueError, match="unsupported dtype"):
        get_format(torch.float16)


@pytest.mark.parametrize("fmt,nbytes", [("e4m3", 100 + 4), ("e5m2", 100 + 4), ("fp16", 200 + 4),
                                        ("bf16", 200), ("fp32", 400)])
def test_scaled_tensor_counts_real_bytes_and_round_trips(fmt, nbytes):
    x = torch.linspace(-2, 2, 100)
    t = ScaledTensor.from_float(x, fmt)
    assert t.nbytes == nbytes
    back = ScaledTensor.from_state(t.to_state("w"), "w", fmt)
    assert torch.equal(back.float(), t.float())
    tol = {"e4m3": 0.07, "e5m2": 0.13, "fp16": 1e-3, "bf16": 8e-3, "fp32": 0}[fmt]
    assert torch.allclose(t.float(), x, rtol=tol, atol=1e-6)
