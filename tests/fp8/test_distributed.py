"""FP8 gradient all-reduce (FP8-LM §2.1, Eqs. 4–6): simulation, auto-scaling, real gloo ranks.

The multi-process tests launch this file as a script (``python test_distributed.py worker
...``), one process per rank, on a gloo process group with a file:// store in ``tmp_path``.
A script rather than torch.multiprocessing.spawn keeps the workers independent of how pytest
imports test modules. Each launch runs several checks and saves its results; the assertions
(with error bounds derived here from the E4M3 grid) run in the pytest process.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro.fp8.distributed import (
    SIMULATION_SCHEMES,
    AutoScaler,
    fp8_all_reduce,
    fp8_all_reduce_coalesced,
    register_fp8_comm_hook,
    simulate_all_reduce,
)
from repro.fp8.tensor import ScaledTensor

torch.set_num_threads(1)

FP8_SCHEMES = [s for s in SIMULATION_SCHEMES if s != "bf16"]


def synthetic_grads(n: int, numel: int = 16384, shared: float = 0.5, seed: int = 0):
    """Per-rank gradients: a common part plus rank noise, log-normal magnitudes (heavy tails)."""
    g = torch.Generator().manual_seed(seed)
    magnitude = torch.exp(1.5 * torch.randn(numel, generator=g)) * 1e-3
    common = torch.randn(numel, generator=g) * magnitude
    return [shared * common + (1 - shared) * torch.randn(numel, generator=g) * magnitude
            for _ in range(n)]


def pow2_scale(amax: float) -> float:
    """Largest power of two s with amax·s ≤ 448 (written out independently)."""
    return 2.0 ** math.floor(math.log2(448.0 / amax))


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", FP8_SCHEMES)
def test_one_rank_reduces_to_a_single_quantisation(scheme):
    (g,) = synthetic_grads(1)
    reduced, stats = simulate_all_reduce([g], scheme, mu=1.0)
    expected = ScaledTensor.from_float(g, "e4m3").float()  # one just-in-time E4M3 cast
    assert torch.equal(reduced, expected)
    assert stats.partial_sums.numel == 0


def test_gather_has_higher_snr_than_every_ring_scheme():
    grads = synthetic_grads(8)
    gather = simulate_all_reduce(grads, "gather")[1].snr_db
    for scheme in ("pre", "post", "shared", "msamp"):
        assert gather > simulate_all_reduce(grads, scheme)[1].snr_db + 5
    assert gather > simulate_all_reduce(grads, "auto", mu="steady")[1].snr_db + 5


def test_post_scaling_overflows_more_than_pre_scaling_at_large_n():
    grads = synthetic_grads(32, shared=0.9)  # correlated ranks: the sum grows ~N-fold
    _, pre = simulate_all_reduce(grads, "pre")
    _, post = simulate_all_reduce(grads, "post")
    assert pre.partial_sum_overflow_rate == 0
    assert post.partial_sum_overflow_rate > 1e-3
    assert post.snr_db < pre.snr_db


def test_pre_scaling_underflows_more_than_post_scaling():
    grads = synthetic_grads(32)
    _, pre = simulate_all_reduce(grads, "pre")
    _, post = simulate_all_reduce(grads, "post")
    assert pre.send_underflow_rate > 3 * post.send_underflow_rate


def test_auto_scaling_removes_the_overflow_of_the_plain_shared_scale():
    grads = synthetic_grads(32)
    _, shared = simulate_all_reduce(grads, "shared")
    _, auto = simulate_all_reduce(grads, "auto", mu="steady")
    assert shared.partial_sum_overflow_rate > 0
    assert auto.saturation_fraction <= 1e-5
    assert auto.mu < 1
    assert auto.snr_db > shared.snr_db + 3


def test_shared_min_scale_hand_example_eqs_4_to_6():
    # rank 0: amax 2  → s_0 = 2^floor(log2(448/2))  = 2^7 = 128
    # rank 1: amax 10.3 → s_1 = 2^floor(log2(448/10.3)) = 2^5 = 32;   Eq. 4: s_g = 32
    g0 = torch.tensor([1.0, 0.5, -2.0])
    g1 = torch.tensor([10.3, 0.34, 3.0])
    # Eq. 5, payloads at scale 32: rank 0 → [32, 16, -64] (exact);
    # rank 1 → 329.6 → 320 (E4M3 step 32 in [256, 512)), 10.88 → 11 (step 1), 96 (exact)
    # SUM re-rounded to E4M3: 352 (exact), 27 → 28 (step 2, tie to even mantissa), 32
    # Eq. 6, read with N·s_g = 64: [5.5, 0.4375, 0.5]
    reduced, stats = simulate_all_reduce([g0, g1], "shared")
    assert reduced.tolist() == [5.5, 0.4375, 0.5]
    assert stats.send_scale == 32.0
    # μ = 1/2, send scale 16: rank 1's own-scale payload [320, 11, 96] halves exactly to
    # [160, 5.5, 48]; sums 176, 13.5 → 14 (tie to even), 16; read with 2·16 = 32
    reduced_auto, _ = simulate_all_reduce([g0, g1], "auto", mu=0.5)
    assert reduced_auto.tolist() == [5.5, 0.4375, 0.5]


def test_shared_scale_sum_saturates_and_mu_one_half_restores_it_by_hand():
    # both ranks: s = 128 (3·128 = 384 and 3.5·128 = 448 ≤ 448); the sum 832 clamps to 448
    g0, g1 = torch.tensor([3.0]), torch.tensor([3.5])
    shared, stats = simulate_all_reduce([g0, g1], "shared")
    assert shared.tolist() == [448 / 256] and stats.partial_sum_overflow_rate == 1.0
    # μ = 1/2: payloads 192 and 224, sum 416 (on the E4M3 grid), read 416 / 128 = 3.25
    auto, stats = simulate_all_reduce([g0, g1], "auto", mu=0.5)
    assert auto.tolist() == [3.25] and stats.saturation_fraction == 0.0


def test_auto_scaler_halves_on_overflow_and_doubles_after_1000_clean_steps():
    scaler = AutoScaler()
    assert scaler.mu == 1.0
    scaler.update(2e-5)  # above 0.001 %
    assert scaler.mu == 0.5
    scaler.update(1e-5)  # at the threshold: not above, so it grows
    assert scaler.mu == pytest.approx(0.5 * 2 ** (1 / 1000))
    scaler = AutoScaler(mu=0.5)
    for _ in range(1000):
        scaler.update(0.0)
    assert scaler.mu == pytest.approx(1.0, rel=1e-9)
    for _ in range(3000):
        scaler.update(0.0)
    assert scaler.mu == 2.0  # "up to 2": the cap
    assert scaler.halvings == 0


def test_simulation_feeds_the_auto_scaler():
    grads = synthetic_grads(32)
    scaler = AutoScaler()
    mus = []
    for _ in range(6):
        _, stats = simulate_all_reduce(grads, "auto", mu=scaler)
        mus.append(stats.mu)
    assert mus[0] == 1.0
    assert mus[-1] < mus[0]  # halved while the sums overflowed
    assert scaler.halvings >= 1


def test_unknown_scheme_and_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="unknown scheme 'median'"):
        simulate_all_reduce(synthetic_grads(2), "median")
    with pytest.raises(ValueError, match="same shape"):
        simulate_all_reduce([torch.ones(3), torch.ones(4)], "pre")


# --------------------------------------------------------------------------------------------
# real collectives: errors without a process group
# --------------------------------------------------------------------------------------------


def test_uninitialised_process_group_gives_a_clear_error():
    import torch.distributed as dist

    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="not initialised: call torch.distributed."
                                           "init_process_group.*torchrun"):
        fp8_all_reduce(torch.ones(3))
    model = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="not initialised"):
        register_fp8_comm_hook(model)


def test_unsupported_dtype_format_and_scheme_are_rejected():
    with pytest.raises(TypeError, match="float32/float16/bfloat16"):
        fp8_all_reduce(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="float32/float16/bfloat16"):
        fp8_all_reduce(torch.ones(3).to(torch.float8_e4m3fn))
    with pytest.raises(ValueError, match="unknown FP8 format"):
        fp8_all_reduce(torch.ones(3), fmt="e3m4")
    with pytest.raises(ValueError, match="unknown all-reduce scheme 'post'"):
        fp8_all_reduce_coalesced([torch.ones(3)], scheme="post")


# --------------------------------------------------------------------------------------------
# real collectives: gloo ranks
# --------------------------------------------------------------------------------------------


def rank_gradient(rank: int, numel: int = 4096) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(numel, generator=g) * torch.exp(torch.randn(numel, generator=g)) * (
        rank + 1)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def rank_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7 + rank)
    return torch.randn(32, 6, generator=g), torch.randn(32, 3, generator=g)


def worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One rank: run every check, save the results for the pytest process."""
    from datetime import timedelta

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    out: dict[str, object] = {}
    g = rank_gradient(rank)
    for scheme in ("auto", "shared", "msamp", "gather"):
        scaler = AutoScaler()
        out[scheme] = fp8_all_reduce(g.clone(), fmt="e4m3", scheme=scheme, autoscaler=scaler)
        out[f"{scheme}.mu_after"] = scaler.mu
    out["shared_fp8_sum"] = fp8_all_reduce(g.clone(), scheme="shared", accumulate="fp8")
    half = g.clone().half()
    out["half"] = fp8_all_reduce(half, scheme="auto")
    # three tensors of very different magnitudes, one scale each, one payload collective
    parts = [g[:100].clone() * 1e-4, g[100:1000].clone(), g[1000:].clone() * 1e3]
    out["coalesced"] = [t.clone() for t in fp8_all_reduce_coalesced(parts, scheme="auto")]
    bad = g[:10].clone()
    if rank == world - 1:
        bad[3] = float("inf")
    out["nonfinite"] = fp8_all_reduce(bad, scheme="auto")
    if world == 2:  # DDP comm hook vs fp32 DDP on a tiny model
        x, y = rank_batch(rank)
        local = tiny_model()
        torch.nn.functional.mse_loss(local(x), y).backward()
        out["local_grads"] = [p.grad.clone() for p in local.parameters()]
        for name, hook in (("ddp_fp32", False), ("ddp_fp8", True)):
            ddp = torch.nn.parallel.DistributedDataParallel(tiny_model())
            if hook:
                state = register_fp8_comm_hook(ddp, fmt="e4m3", scheme="auto")
            for _ in range(2):  # the second backward runs on DDP's rebuilt buckets
                ddp.zero_grad()
                torch.nn.functional.mse_loss(ddp(x), y).backward()
            out[name] = [p.grad.clone() for p in ddp.parameters()]
            if hook:
                out["ddp_mu"] = state.autoscaler.mu
    dist.barrier()
    dist.destroy_process_group()
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")


def launch(world: int, tmp_path: Path, timeout: float = 90.0) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    init_file = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, __file__, "worker", str(r), str(world),
                               str(init_file), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(world)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"rank {r} failed:\n{log[-3000:]}"
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


def e4m3_error_bound(grads: list[torch.Tensor], scheme: str) -> torch.Tensor:
    """Elementwise bound on |FP8 all-reduce mean − fp32 mean| for the gloo (fp32-sum) path.

    One E4M3 rounding of a scaled value v errs by at most half a step: ≤ 2^-4·|v| for normals
    (3 mantissa bits), ≤ 2^-10 in the subnormal range (step 2^-9); read at scale s that is
    ≤ 2^-4·|g| + 2^-10/s. No overflow: every scale satisfies amax·s ≤ 448.
    * gather: one rounding at the rank's own scale s_r.
    * shared/auto (μ = 1): own scale, then re-quantised at s_g = min s_r (Eq. 5): two
      roundings, ≤ (2^-3 + 2^-8)·|g| + 2^-9/s_r + 2^-10/s_g.
    * msamp: one rounding at S = 2^floor(log2(448/max amax)) / √N.
    """
    n = len(grads)
    scales = [pow2_scale(float(g.abs().max())) for g in grads]
    s_g = min(scales)
    total = torch.zeros_like(grads[0], dtype=torch.float64)
    for g, s in zip(grads, scales, strict=True):
        a = g.double().abs()
        if scheme == "gather":
            total += 2**-4 * a + 2**-10 / s
        elif scheme in ("shared", "auto"):
            total += (2**-3 + 2**-8) * a + 2**-9 / s + 2**-10 / s_g
        elif scheme == "msamp":
            total += 2**-4 * a + 2**-10 / (s_g / math.sqrt(n))
    return total / n * (1 + 1e-5) + 1e-12


@pytest.mark.distributed
@pytest.mark.parametrize("world", [2, 4])
def test_fp8_all_reduce_on_gloo_ranks_matches_fp32_mean_and_agrees_across_ranks(world,
                                                                               tmp_path):
    results = launch(world, tmp_path)
    grads = [rank_gradient(r) for r in range(world)]
    mean = torch.stack([g.double() for g in grads]).mean(0)
    amax = max(float(g.abs().max()) for g in grads)
    # coarse form of the bound below: 1/s < amax/224, so |err| < (2^-3 + 2^-8 + 3·2^-10/224)·amax
    coarse = (2**-3 + 2**-8 + 3 * 2**-10 / 224) * amax
    for scheme in ("auto", "shared", "msamp", "gather"):
        for r in range(1, world):  # identical on every rank
            assert torch.equal(results[r][scheme], results[0][scheme]), scheme
        err = (results[0][scheme].double() - mean).abs()
        assert (err <= e4m3_error_bound(grads, scheme)).all(), scheme
        assert err.max() <= coarse
        assert results[0][scheme].dtype == torch.float32
    # the same gradients through the simulator's ring with FP8 partial sums: same numbers
    simulated, _ = simulate_all_reduce(grads, "shared")
    assert torch.equal(results[0]["shared_fp8_sum"], simulated)
    # μ moves identically on every rank
    assert len({res["auto.mu_after"] for res in results}) == 1
    # fp16 in, fp16 out
    assert results[0]["half"].dtype == torch.float16
    # per-tensor scales of coalesced tensors: each within its own bound
    pieces = [(slice(0, 100), 1e-4), (slice(100, 1000), 1.0), (slice(1000, None), 1e3)]
    for out, (sl, factor) in zip(results[0]["coalesced"], pieces, strict=True):
        part = [g[sl] * factor for g in grads]
        part_mean = torch.stack([p.double() for p in part]).mean(0)
        assert ((out.double() - part_mean).abs() <= e4m3_error_bound(part, "auto")).all()
    # an inf on one rank poisons that tensor on every rank instead of saturating away
    for res in results:
        assert torch.isnan(res["nonfinite"]).all()
    if world == 2:
        fp32 = results[0]["ddp_fp32"]
        for res in results:
            for a, b in zip(res["ddp_fp8"], results[0]["ddp_fp8"], strict=True):
                assert torch.equal(a, b)
        local = [res["local_grads"] for res in results]
        for i, (fp8, ref) in enumerate(zip(results[0]["ddp_fp8"], fp32, strict=True)):
            amax_p = max(float(grads_r[i].abs().max()) for grads_r in local)
            torch.testing.assert_close(ref, (local[0][i] + local[1][i]) / 2)
            assert (fp8 - ref).abs().max() <= (2**-3 + 2**-7) * amax_p
            assert torch.linalg.norm(fp8 - ref) <= 0.1 * torch.linalg.norm(ref)
        assert any(not torch.equal(a, b) for a, b in zip(results[0]["ddp_fp8"], fp32, strict=True))


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "worker":
    worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
