"""The real N-process gloo all-reduce behind notebook 04 (repro.fp8.gloo_demo).

One launch of 2 ranks (process start-up dominates: a few seconds per rank); the input checks
run without spawning anything.
"""

from __future__ import annotations

import math

import pytest
import torch

from repro.fp8.gloo_demo import run_gloo_all_reduce


def rank_grads(world: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Per-rank gradients: a shared part plus rank noise, three tensors of very different
    magnitudes (each gets its own scale)."""
    g = torch.Generator().manual_seed(seed)
    common = {"w1": torch.randn(64, 48, generator=g), "w2": torch.randn(300, generator=g),
              "w3": torch.randn(5, 7, generator=g)}
    factors = {"w1": 1e-3, "w2": 1.0, "w3": 30.0}
    return [{n: factors[n] * (0.5 * c + torch.randn(c.shape, generator=g))
             for n, c in common.items()} for _ in range(world)]


def e4m3_bound(parts: list[torch.Tensor]) -> torch.Tensor:
    """Elementwise bound on |FP8 mean − fp32 mean| for scheme "auto" with μ = 1 on gloo.

    Worked out independently of the library: each rank's own just-in-time scale
    s_r = 2^floor(log2(448 / amax_r)) and the shared s_g = min s_r (Eq. 4). An entry is rounded
    twice (to E4M3 at s_r, then at s_g, Eq. 5): each rounding errs by at most half a step,
    2^-4 of the value for normals (3 mantissa bits) and 2^-10 in units of the scale below the
    smallest normal, and amax·s ≤ 448 rules out overflow. The gloo path sums the decoded
    payloads in fp32 and divides by N.
    """
    scales = [2.0 ** math.floor(math.log2(448.0 / float(p.abs().max()))) for p in parts]
    s_g = min(scales)
    total = torch.zeros_like(parts[0], dtype=torch.float64)
    for p, s in zip(parts, scales, strict=True):
        total += (2**-3 + 2**-8) * p.double().abs() + 2**-9 / s + 2**-10 / s_g
    return total / len(parts) * (1 + 1e-6) + 1e-12


@pytest.mark.distributed
def test_two_gloo_ranks_agree_and_return_the_mean_within_the_e4m3_bound():
    grads = rank_grads(2)
    result = run_gloo_all_reduce(grads, fmt="e4m3", scheme="auto", repeats=1, timeout=60)
    assert result.world_size == 2 and result.names == ["w1", "w2", "w3"]
    assert result.agree_across_ranks()
    for name in result.names:
        parts = [g[name] for g in grads]
        mean = torch.stack([p.double() for p in parts]).mean(0)
        torch.testing.assert_close(result.fp32[1][name].double(), mean, rtol=1e-6, atol=1e-9)
        fp8 = result.fp8[1][name]
        assert fp8.dtype == torch.float32 and fp8.shape == parts[0].shape
        assert ((fp8.double() - mean).abs() <= e4m3_bound(parts)).all(), name
        assert not torch.equal(fp8.double(), mean)  # it did go through FP8
    rows = {r["tensor"]: r for r in result.error_rows(grads)}
    assert all(0 < r["fp8_err_over_amax"] < 2**-3 + 2**-8 + 1e-3 for r in rows.values())
    assert rows["w1"]["amax"] < 1e-2 < rows["w3"]["amax"]  # per-tensor scales, not one
    # one auto-scaler step, taken identically on both ranks: μ grows by 2^(1/1000) after a
    # step without saturated values, or halves
    assert result.mu_after[0] == result.mu_after[1]
    assert result.mu_after[0] in (pytest.approx(2 ** (1 / 1000)), 0.5)
    assert min(result.fp8_ms + result.fp32_ms) > 0 and result.launch_seconds > 0
    assert result.fp8_payload_bytes * 4 == result.fp32_payload_bytes == 4 * (64 * 48 + 300 + 35)


def test_ranks_with_different_tensors_are_refused_before_any_process_starts():
    grads = rank_grads(2)
    grads[1]["w4"] = torch.zeros(3)
    with pytest.raises(ValueError, match="rank 1 has tensors"):
        run_gloo_all_reduce(grads)
    grads = rank_grads(2)
    grads[1]["w2"] = torch.zeros(301)
    with pytest.raises(ValueError, match=r"rank 1, 'w2': shape \(301,\) differs"):
        run_gloo_all_reduce(grads)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"scheme": "post"}, ValueError, "unknown all-reduce scheme 'post'"),
    ({"fmt": "e3m4"}, ValueError, "unknown FP8 format"),
    ({"accumulate": "fp16"}, ValueError, "accumulate must be"),
    ({"repeats": 0}, ValueError, "repeats must be"),
    ({"timeout": 0}, ValueError, "timeout must be positive"),
])
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        run_gloo_all_reduce(rank_grads(2), **kwargs)


def test_integer_gradients_and_no_ranks_are_refused():
    with pytest.raises(TypeError, match="float32/float16/bfloat16"):
        run_gloo_all_reduce([{"w": torch.ones(3, dtype=torch.int64)}])
    with pytest.raises(ValueError, match="at least one rank"):
        run_gloo_all_reduce([])
