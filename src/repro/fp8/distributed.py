"""FP8 gradient all-reduce with a shared scale and automatic scaling (FP8-LM §2.1, Eqs. 4–6).

Two halves:

* **Simulation** on a list of per-rank fp32 gradients (no process group):
  :func:`simulate_all_reduce` quantises each rank's gradient under one scheme and adds them in
  ring order, re-rounding every partial sum to FP8 as an FP8 NCCL (MSCCL) all-reduce does, then
  reports underflow/overflow rates and the SNR against the fp32 mean.
* **Real collectives** on ``torch.distributed``: :func:`fp8_all_reduce`, its coalesced form
  and a DDP communication hook (:func:`fp8_comm_hook`, :func:`register_fp8_comm_hook`).

The paper's rule (Eqs. 4–6): each rank holds (g'_i, s'_i); the ranks agree on the minimum scale
s'_g = min_i s'_i exchanging scalars only, re-quantise g''_i = FP8(s'_g · g'_i / s'_i), sum the
payloads, and read the result with scale N · s'_g. The auto-scaling factor μ halves when more
than 0.001 % of the entries hit the FP8 maximum and otherwise grows ×2 over 1,000 steps
(:class:`AutoScaler`).

Departures and choices (see also the docstrings):

* μ multiplies the *shared scale* (send scale μ·s'_g, read scale N·μ·s'_g). Multiplying the
  gradient before a just-in-time power-of-two cast, as the paper writes it, would be absorbed
  by s'_i and change nothing.
* The public MS-AMP code has no μ: it uses the global-amax scale (= the min of the scales)
  times a fixed 1/√N (scheme ``"msamp"``).
* gloo refuses float8 in every collective (asynchronously, killing the peer) and a uint8
  all_reduce adds bytes mod 256; some torch builds also refuse float8 NCCL reductions ("Float8
  dtypes are not currently supported for NCCL reductions"). So the portable path all-gathers
  the payloads viewed as uint8 and decodes and sums them locally, in rank order, on every
  rank: identical results everywhere, FP8 bytes on the wire (×N received), fp32 accumulation
  (or FP8 re-rounding with ``accumulate="fp8"`` to emulate an FP8 reduction).
* On NCCL with CUDA tensors a native float8 all_reduce SUM of the re-quantised payloads is
  tried once (the refusal is raised synchronously, before any traffic) and used from then on
  if accepted; ``accumulate`` is then NCCL's own FP8 arithmetic. torch 2.11 + NCCL 2.28.9
  accepted it (one-rank check on an H200); its multi-rank overflow behaviour is unverified
  here, so non-finite summed entries count as saturated for μ and surface as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from .formats import FP8Format, QuantStats, get_format, quantize
from .scaling import amax, power_of_two_scale

__all__ = [
    "SIMULATION_SCHEMES", "COLLECTIVE_SCHEMES", "AutoScaler", "AllReduceStats", "snr_db",
    "simulate_all_reduce", "fp8_all_reduce", "fp8_all_reduce_coalesced", "FP8CommHookState",
    "fp8_comm_hook", "register_fp8_comm_hook", "rank_gradients", "all_reduce_rows",
    "pooled_all_reduce",
]

SIMULATION_SCHEMES = ("pre", "post", "auto", "shared", "msamp", "gather", "bf16")
COLLECTIVE_SCHEMES = ("auto", "shared", "msamp", "gather")
UNINITIALISED_MESSAGE = ("torch.distributed is not initialised: call "
                         "torch.distributed.init_process_group(...) or run under torchrun")


# --------------------------------------------------------------------------------------------
# automatic scaling factor μ
# --------------------------------------------------------------------------------------------


@dataclass
class AutoScaler:
    """The paper's auto-scaling factor μ (§2.1).

    ``update(fraction)`` with the fraction of entries that hit the FP8 maximum:

    * above ``threshold`` (paper: 0.001 % = 1e-5): μ ← μ / 2;
    * otherwise μ ← μ · 2^(1/growth_steps), i.e. μ doubles over ``growth_steps`` (paper: 1,000)
      clean steps, capped at ``max_mu``.

    The cap is read literally from "exponentially increase μ up to 2": an absolute ceiling of 2
    (a relative reading, ×2 above the last halved value, is equally possible; the paper and the
    public code do not settle it). μ starts at 1 (unspecified in the paper) and never drops
    below ``min_mu``.
    """

    mu: float = 1.0
    threshold: float = 1e-5
    growth_steps: int = 1000
    max_mu: float = 2.0
    min_mu: float = 2.0**-64
    steps: int = 0
    halvings: int = 0
    last_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.growth_steps < 1:
            raise ValueError("growth_steps must be >= 1")
        if not 0 < self.mu <= self.max_mu:
            raise ValueError(f"mu={self.mu} must lie in (0, max_mu={self.max_mu}]")

    @property
    def growth_factor(self) -> float:
        return 2.0 ** (1.0 / self.growth_steps)

    def update(self, saturation_fraction: float) -> float:
        """Record one step's saturation fraction; return the μ for the next step."""
        self.steps += 1
        self.last_fraction = float(saturation_fraction)
        if saturation_fraction > self.threshold:
            self.mu = max(self.mu / 2.0, self.min_mu)
            self.halvings += 1
        else:
            self.mu = min(self.mu * self.growth_factor, self.max_mu)
        return self.mu


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------


@dataclass
class AllReduceStats:
    """What one simulated all-reduce did.

    Rates are per entry: ``send`` counts over N × numel sent entries (underflow = a non-zero
    fp32 gradient entry sent as 0, overflow = a scaled entry beyond ±max, clamped),
    ``partial_sums`` over the (N − 1) × numel re-rounded partial sums of the ring.
    """

    scheme: str
    fmt: str
    world_size: int
    numel: int
    send: QuantStats = field(default_factory=QuantStats)
    partial_sums: QuantStats = field(default_factory=QuantStats)
    snr_db: float = float("nan")
    mu: float = 1.0
    send_scale: float = float("nan")
    saturated_entries: int = 0

    @property
    def send_underflow_rate(self) -> float:
        return self.send.underflow_rate

    @property
    def send_overflow_rate(self) -> float:
        return self.send.overflow_rate

    @property
    def partial_sum_overflow_rate(self) -> float:
        return self.partial_sums.overflow_rate

    @property
    def saturation_fraction(self) -> float:
        """Share of the reduced gradient's entries that hit the FP8 maximum anywhere (a send or
        a partial sum stored at ±max, clamped or rounded there): what μ reacts to."""
        return self.saturated_entries / max(self.numel, 1)

    def as_row(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "fmt": self.fmt, "N": self.world_size,
                "snr_db": self.snr_db, "send_underflow": self.send_underflow_rate,
                "send_overflow": self.send_overflow_rate,
                "partial_sum_overflow": self.partial_sum_overflow_rate, "mu": self.mu}


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """10·log10(Σ reference² / Σ (estimate − reference)²) in float64; inf when exact."""
    ref = reference.double()
    err = (estimate.double() - ref).pow(2).sum().item()
    sig = ref.pow(2).sum().item()
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(sig / err) if sig > 0 else -math.inf


def _send(x: torch.Tensor, original: torch.Tensor, f: FP8Format, stats: QuantStats,
          hit: torch.Tensor) -> torch.Tensor:
    """FP8(x) (x already scaled) as fp32 values; count overflow and lost non-zeros."""
    q = quantize(x, f).float()
    hit |= q.abs() >= f.max
    stats += QuantStats(x.numel(), int((x.abs() > f.max).sum()),
                        int(((original != 0) & (q == 0)).sum()))
    return q


def _ring_sum(sends: list[torch.Tensor], f: FP8Format, stats: QuantStats,
              hit: torch.Tensor | None = None) -> torch.Tensor:
    """rank 0 + rank 1 + …, re-rounding every partial sum to FP8 (saturating)."""
    acc = sends[0]
    for q in sends[1:]:
        acc = quantize(acc + q, f, stats=stats).float()
        if hit is not None:
            hit |= acc.abs() >= f.max
    return acc


def _simulate_once(gs: list[torch.Tensor], true_mean: torch.Tensor, scheme: str,
                   f: FP8Format | None, mu: float,
                   scale: float | None) -> tuple[torch.Tensor, AllReduceStats]:
    n = len(gs)
    stats = AllReduceStats(scheme, f.name if f else "bf16", n, gs[0].numel(), mu=mu)
    if scheme == "bf16":
        acc = gs[0].bfloat16()
        for g in gs[1:]:
            acc = (acc.float() + g.bfloat16().float()).bfloat16()
        for g in gs:
            stats.send += QuantStats(g.numel(), 0, int(((g != 0) & (g.bfloat16() == 0)).sum()))
        stats.partial_sums = QuantStats(numel=(n - 1) * gs[0].numel())
        return acc.float() / n, stats
    assert f is not None
    hit = torch.zeros_like(gs[0], dtype=torch.bool)  # output entries that saturated anywhere
    local_scales = [power_of_two_scale(amax(g), f.max) for g in gs]
    if scheme == "gather":  # each rank its own scale, fp32 sum of the decoded values
        total = torch.zeros_like(gs[0])
        for g, s in zip(gs, local_scales, strict=True):
            total += _send(g * s, g, f, stats.send, hit) / s
        stats.send_scale = min(local_scales)
        stats.saturated_entries = int(hit.sum())
        return total / n, stats
    if scheme in ("pre", "post"):
        # a scale common to all ranks: that of the true mean (an idealised delayed scale)
        s = scale if scale is not None else power_of_two_scale(amax(true_mean), f.max)
        divisor = n if scheme == "pre" else 1  # pre: FP8(S·g_i/N); post: FP8(S·g_i), /N after
        send_scale = s / divisor
        sends = [_send(g * send_scale, g, f, stats.send, hit) for g in gs]
    elif scheme == "msamp":  # global amax scale × 1/√N (MS-AMP's DDP reducer)
        send_scale = power_of_two_scale(max(amax(g) for g in gs), f.max) / math.sqrt(n)
        sends = [_send(g * send_scale, g, f, stats.send, hit) for g in gs]
    else:  # "shared" and "auto": Eqs. 4–6
        shared = min(local_scales)  # Eq. 4: s'_g = min_i s'_i
        send_scale = mu * shared  # μ folded into the shared scale
        sends = []
        for g, s_i in zip(gs, local_scales, strict=True):
            local = quantize(g, f, s_i).float()  # g'_i: the rank's own FP8 gradient
            sends.append(_send(local * (send_scale / s_i), g, f, stats.send, hit))  # Eq. 5
    stats.send_scale = send_scale
    acc = _ring_sum(sends, f, stats.partial_sums, hit)  # the FP8 NCCL SUM
    stats.saturated_entries = int(hit.sum())
    return acc / (n * send_scale), stats  # Eq. 6: read with scale N·s'_g


def simulate_all_reduce(
    grads: Sequence[torch.Tensor],
    scheme: str,
    fmt: str | FP8Format = "e4m3",
    *,
    mu: float | AutoScaler | str = 1.0,
    scale: float | None = None,
    threshold: float = 1e-5,
) -> tuple[torch.Tensor, AllReduceStats]:
    """Average per-rank fp32 gradients through a simulated FP8 ring all-reduce.

    Schemes (all but ``gather`` and ``bf16`` add in ring order 0, 1, …, N−1 and re-round every
    partial sum to FP8, saturating at ±max):

    * ``"pre"``: FP8(S·g_i/N) summed, read with S. S is the power-of-two scale of the fp32 mean
      (an idealised delayed scale) unless ``scale`` is given.
    * ``"post"``: FP8(S·g_i) summed, then divided by N.
    * ``"shared"``: Eqs. 4–6 — own just-in-time scale s_i, shared s_g = min s_i, FP8(s_g·g'_i/s_i)
      summed, read with N·s_g.
    * ``"auto"``: ``"shared"`` with the send scale μ·s_g. ``mu`` is a number, an
      :class:`AutoScaler` (its μ is used, then updated with this call's saturation fraction),
      or ``"steady"``: the largest power of two μ ≤ 2 whose saturation fraction is at most
      ``threshold`` (the auto-scaler's steady state for this gradient).
    * ``"msamp"``: scale of the global amax × 1/√N, summed, divided by N (MS-AMP's code).
    * ``"gather"``: each rank's own scale, decoded and summed in fp32 (the all_gather path).
    * ``"bf16"``: a bf16 ring (every partial sum rounded to bf16).

    Returns the fp32 estimate of the mean and an :class:`AllReduceStats` (SNR against the fp32
    mean computed in float64).
    """
    if scheme not in SIMULATION_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: choose one of {list(SIMULATION_SCHEMES)}")
    if len(grads) == 0:
        raise ValueError("simulate_all_reduce needs at least one rank's gradient")
    shape = grads[0].shape
    if any(g.shape != shape for g in grads):
        raise ValueError("every rank's gradient must have the same shape")
    gs = [g.detach().reshape(-1).float() for g in grads]
    total = torch.zeros_like(gs[0], dtype=torch.float64)
    for g in gs:
        total += g
    true_mean = total / len(gs)
    f = None if scheme == "bf16" else get_format(fmt)

    scaler = mu if isinstance(mu, AutoScaler) else None
    if scheme != "auto":
        mu_value = 1.0
    elif scaler is not None:
        mu_value = scaler.mu
    elif mu == "steady":
        mu_value = 2.0
        while True:
            reduced, stats = _simulate_once(gs, true_mean, scheme, f, mu_value, scale)
            if stats.saturation_fraction <= threshold or mu_value <= 2.0**-64:
                break
            mu_value /= 2.0
        stats.snr_db = snr_db(true_mean, reduced)
        return reduced.reshape(shape), stats
    elif isinstance(mu, (int, float)) and mu > 0:
        mu_value = float(mu)
    else:
        raise ValueError(f"mu must be a positive number, an AutoScaler or 'steady', got {mu!r}")

    reduced, stats = _simulate_once(gs, true_mean, scheme, f, mu_value, scale)
    stats.snr_db = snr_db(true_mean, reduced)
    if scaler is not None:
        scaler.update(stats.saturation_fraction)
    return reduced.reshape(shape), stats


# --------------------------------------------------------------------------------------------
# real collectives
# --------------------------------------------------------------------------------------------

_NATIVE_FP8_SUM: dict[str, bool] = {}  # backend -> whether a float8 all_reduce SUM was accepted


def _require_initialised() -> None:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(UNINITIALISED_MESSAGE)


def _check_inputs(tensors: Sequence[torch.Tensor], fmt: Any, scheme: str, op: str,
                  accumulate: str) -> FP8Format:
    if scheme not in COLLECTIVE_SCHEMES:
        raise ValueError(f"unknown all-reduce scheme {scheme!r}: choose one of "
                         f"{list(COLLECTIVE_SCHEMES)}")
    if op not in ("avg", "sum"):
        raise ValueError(f"op must be 'avg' or 'sum', got {op!r}")
    if accumulate not in ("fp32", "fp8"):
        raise ValueError(f"accumulate must be 'fp32' or 'fp8', got {accumulate!r}")
    if accumulate == "fp8" and scheme == "gather":
        raise ValueError("accumulate='fp8' needs a scale shared by all ranks: use scheme "
                         "'auto', 'shared' or 'msamp'")
    if len(tensors) == 0:
        raise ValueError("nothing to all-reduce: pass at least one tensor")
    allowed = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    for t in tensors:
        if t.dtype not in allowed:
            raise TypeError(f"fp8_all_reduce takes float32/float16/bfloat16/float64 tensors "
                            f"(the FP8 encoding happens inside), got {t.dtype}")
        if t.device != tensors[0].device:
            raise ValueError("all tensors must be on the same device")
    return get_format(fmt)


def _gather_path(group: Any, device: torch.device) -> bool:
    """True unless this is NCCL with CUDA tensors and a native float8 SUM was accepted."""
    backend = str(dist.get_backend(group))
    if "nccl" not in backend or device.type != "cuda":
        return True
    return _NATIVE_FP8_SUM.get("nccl") is False


def fp8_all_reduce_coalesced(
    tensors: Sequence[torch.Tensor],
    group: Any = None,
    fmt: str | FP8Format = "e4m3",
    scheme: str = "auto",
    *,
    op: str = "avg",
    autoscaler: AutoScaler | None = None,
    accumulate: str = "fp32",
) -> list[torch.Tensor]:
    """All-reduce several tensors in place through FP8 payloads, one per-tensor scale each.

    Scalars travel first in one collective (all_reduce MIN of the scales for ``"auto"`` and
    ``"shared"``, MAX of the amaxes for ``"msamp"``, all_gather for ``"gather"``), then every
    payload in one uint8 buffer. Gradient entries that are inf/NaN on any rank make that
    tensor all-NaN on every rank (so an overflow check sees them; a saturating cast would hide
    them). ``autoscaler`` gives μ for ``"auto"`` (none: μ = 1) and is updated with the fraction
    of payload entries at ±max, computed identically on every rank (skipped when a gradient is
    non-finite). See the module docstring for the NCCL/gloo paths.

    The saturation fraction fed to μ is the share of entries that hit ±max in some rank's
    payload (or, with ``accumulate="fp8"``, in a partial sum); on a native FP8 SUM, the share
    of the summed payload at ±max.
    """
    f = _check_inputs(tensors, fmt, scheme, op, accumulate)
    _require_initialised()
    world = dist.get_world_size(group)
    device = tensors[0].device
    flats = [t.detach().reshape(-1).float() for t in tensors]
    k = len(flats)
    amaxes = [amax(x) if x.numel() else 0.0 for x in flats]
    local_bad = [0.0 if math.isfinite(a) else 1.0 for a in amaxes]
    local_scales = [power_of_two_scale(a, f.max) for a in amaxes]

    # 1) scalars
    if scheme in ("auto", "shared"):
        vec = torch.tensor(local_scales + [-b for b in local_bad], dtype=torch.float64,
                           device=device)
        dist.all_reduce(vec, op=dist.ReduceOp.MIN, group=group)  # Eq. 4: s'_g = min_i s'_i
        values = vec.tolist()
        bad = [v < 0 for v in values[k:]]
        mu = autoscaler.mu if (scheme == "auto" and autoscaler is not None) else 1.0
        send_scales = [mu * s for s in values[:k]]
        payloads = [quantize(quantize(x, f, s_i).float() * (s / s_i), f)  # Eq. 5
                    for x, s_i, s in zip(flats, local_scales, send_scales, strict=True)]
        rank_scales = None
    elif scheme == "msamp":
        vec = torch.tensor([a if math.isfinite(a) else math.inf for a in amaxes],
                           dtype=torch.float64, device=device)
        dist.all_reduce(vec, op=dist.ReduceOp.MAX, group=group)
        global_amax = vec.tolist()
        bad = [not math.isfinite(a) for a in global_amax]
        send_scales = [power_of_two_scale(a, f.max) / math.sqrt(world) for a in global_amax]
        payloads = [quantize(x, f, s) for x, s in zip(flats, send_scales, strict=True)]
        rank_scales = None
    else:  # gather: own scales, exchanged with the flags
        vec = torch.tensor(local_scales + local_bad, dtype=torch.float64, device=device)
        gathered = [torch.empty_like(vec) for _ in range(world)]
        dist.all_gather(gathered, vec, group=group)
        rows = [g.tolist() for g in gathered]
        rank_scales = [row[:k] for row in rows]
        bad = [any(row[k + j] > 0 for row in rows) for j in range(k)]
        send_scales = local_scales
        payloads = [quantize(x, f, s) for x, s in zip(flats, send_scales, strict=True)]

    # 2) payloads
    numels = [x.numel() for x in flats]
    buf = torch.cat([q.reshape(-1).view(torch.uint8) for q in payloads])
    results: list[torch.Tensor] = []
    saturated = 0
    counted = 0
    if scheme != "gather" and not _gather_path(group, device):
        summed = _try_native_sum(buf, f, group)
        if summed is not None:
            for q, s in zip(summed.view(f.dtype).split(numels), send_scales, strict=True):
                qf = q.float()
                # the summed payload at ±max (or non-finite, if the FP8 sum overflowed to NaN)
                saturated += int(((qf.abs() >= f.max) | ~torch.isfinite(qf)).sum())
                counted += qf.numel()
                results.append(qf / (s * world) if op == "avg" else qf / s)
    if not results:
        received = [torch.empty_like(buf) for _ in range(world)]
        dist.all_gather(received, buf, group=group)
        per_rank = [r.view(f.dtype).split(numels) for r in received]
        for j in range(k):
            parts = [per_rank[r][j].float() for r in range(world)]
            hit = torch.zeros_like(parts[0], dtype=torch.bool)  # entries at ±max anywhere
            for p in parts:
                hit |= p.abs() >= f.max
            counted += parts[0].numel()
            if scheme == "gather":
                saturated += int(hit.sum())
                total = torch.zeros_like(parts[0])
                for r, p in enumerate(parts):
                    total += p / rank_scales[r][j]
                results.append(total / world if op == "avg" else total)
                continue
            if accumulate == "fp8":  # emulate an FP8 reduction: re-round every partial sum
                acc = _ring_sum(parts, f, QuantStats(), hit)
            else:
                acc = torch.zeros_like(parts[0])
                for p in parts:
                    acc += p
            saturated += int(hit.sum())
            s = send_scales[j]
            results.append(acc / (s * world) if op == "avg" else acc / s)

    # 3) write back, flag non-finite, update μ
    for t, r, b in zip(tensors, results, bad, strict=True):
        if b:
            r = torch.full_like(r, math.nan)
        with torch.no_grad():
            t.copy_(r.view(t.shape).to(t.dtype))
    if scheme == "auto" and autoscaler is not None and not any(bad):
        autoscaler.update(saturated / max(counted, 1))
    return list(tensors)


def _try_native_sum(buf: torch.Tensor, f: FP8Format, group: Any) -> torch.Tensor | None:
    """float8 all_reduce SUM on NCCL if this torch accepts it (checked once, synchronously)."""
    if _NATIVE_FP8_SUM.get("nccl") is False:
        return None
    view = buf.view(f.dtype)
    try:
        dist.all_reduce(view, op=dist.ReduceOp.SUM, group=group)
    except (RuntimeError, TypeError):  # "Float8 dtypes are not currently supported ..."
        _NATIVE_FP8_SUM["nccl"] = False
        return None
    _NATIVE_FP8_SUM["nccl"] = True
    return view.view(torch.uint8)


def fp8_all_reduce(
    tensor: torch.Tensor,
    group: Any = None,
    fmt: str | FP8Format = "e4m3",
    scheme: str = "auto",
    *,
    op: str = "avg",
    autoscaler: AutoScaler | None = None,
    accumulate: str = "fp32",
) -> torch.Tensor:
    """All-reduce (average by default) one tensor in place through an FP8 payload.

    Works on NCCL and on gloo. gloo rejects float8 dtypes in every collective (the error is
    asynchronous and kills the peer) and a uint8 all_reduce adds bytes mod 256, so the payload
    is all-gathered as uint8 with the scales and decoded and summed locally in rank order:
    every rank returns the identical tensor. See :func:`fp8_all_reduce_coalesced`.
    """
    return fp8_all_reduce_coalesced([tensor], group, fmt, scheme, op=op, autoscaler=autoscaler,
                                    accumulate=accumulate)[0]


# --------------------------------------------------------------------------------------------
# DDP communication hook
# --------------------------------------------------------------------------------------------


@dataclass
class FP8CommHookState:
    """Settings of :func:`fp8_comm_hook`; ``autoscaler`` carries μ across steps."""

    process_group: Any = None
    fmt: str = "e4m3"
    scheme: str = "auto"
    autoscaler: AutoScaler = field(default_factory=AutoScaler)
    accumulate: str = "fp32"
    per_parameter_scales: bool = True


def fp8_comm_hook(state, bucket):  # annotations set below: DDP checks them as objects
    """DDP hook: average the bucket's gradients through FP8 (one scale per parameter).

    Runs :func:`fp8_all_reduce_coalesced` synchronously on views of the bucket buffer and
    returns a completed future holding the averaged buffer.
    """
    buffer = bucket.buffer()
    pieces = [buffer]
    if state.per_parameter_scales:
        numels = [g.numel() for g in bucket.gradients()]
        if sum(numels) == buffer.numel():
            pieces = list(buffer.split(numels))
    fp8_all_reduce_coalesced(pieces, state.process_group, state.fmt, state.scheme, op="avg",
                             autoscaler=state.autoscaler, accumulate=state.accumulate)
    fut: torch.futures.Future = torch.futures.Future()
    fut.set_result(buffer)
    return fut


# DDP's register_comm_hook compares these annotations with dist.GradBucket and
# Future[Tensor]; under ``from __future__ import annotations`` they would be strings.
fp8_comm_hook.__annotations__ = {"state": FP8CommHookState, "bucket": dist.GradBucket,
                                 "return": torch.futures.Future[torch.Tensor]}


def register_fp8_comm_hook(
    ddp_model: torch.nn.parallel.DistributedDataParallel,
    fmt: str = "e4m3",
    scheme: str = "auto",
    *,
    group: Any = None,
    autoscaler: AutoScaler | None = None,
    accumulate: str = "fp32",
) -> FP8CommHookState:
    """Make ``ddp_model`` average its gradients with :func:`fp8_comm_hook`; return the state."""
    get_format(fmt)
    if scheme not in COLLECTIVE_SCHEMES:
        raise ValueError(f"unknown all-reduce scheme {scheme!r}: choose one of "
                         f"{list(COLLECTIVE_SCHEMES)}")
    _require_initialised()
    state = FP8CommHookState(group, fmt, scheme, autoscaler or AutoScaler(), accumulate)
    ddp_model.register_comm_hook(state, fp8_comm_hook)
    return state


# --------------------------------------------------------------------------------------------
# studying the schemes on real gradients (notebook 04)
# --------------------------------------------------------------------------------------------


def rank_gradients(model: torch.nn.Module, loss_fn: Any, batch: tuple[torch.Tensor, ...],
                   world_size: int, names: Sequence[str], device: Any = "cpu"
                   ) -> list[dict[str, torch.Tensor]]:
    """Rank r's gradient of its own mean loss on every ``world_size``-th example of ``batch``
    (examples r, r + N, ...), for the weights of the modules ``names``; the data-parallel
    split. The mean over ranks equals the full batch's gradient when the ranks get equally many
    examples. ``loss_fn(model, batch)`` returns a mean loss; ``model``'s grads end cleared."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    if len(batch[0]) < world_size:
        raise ValueError(f"a batch of {len(batch[0])} examples leaves some of the {world_size} "
                         "ranks without data; use a batch at least as large as the world size")
    params = {name: model.get_submodule(name).weight for name in names}
    grads = []
    for r in range(world_size):
        model.zero_grad(set_to_none=True)
        loss_fn(model, tuple(t[r::world_size].to(device) for t in batch)).backward()
        grads.append({name: p.grad.detach().cpu().clone() for name, p in params.items()})
    model.zero_grad(set_to_none=True)
    return grads


def all_reduce_rows(grads: list[dict[str, torch.Tensor]], scheme: str, fmt: Any = "e4m3",
                    group_of: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
    """One row per tensor: :func:`simulate_all_reduce`'s counts, the squared norm of the fp32
    mean (``signal``) and of the error (``noise``); ``group_of(name)`` labels a block."""
    rows = []
    for name in grads[0]:
        parts = [g[name] for g in grads]
        reduced, stats = simulate_all_reduce(parts, scheme, fmt, **kwargs)
        mean = torch.stack([p.double() for p in parts]).mean(0)
        rows.append({"tensor": name, "block": group_of(name) if group_of else name,
                     "scheme": scheme, "N": len(grads), "stats": stats,
                     "signal": float(mean.pow(2).sum()),
                     "noise": float((reduced.double() - mean).pow(2).sum())})
    return rows


def pooled_all_reduce(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Rates and SNR pooled over ``rows`` (entries, not tensors, weigh equally): send underflow,
    overflow over sends and partial sums, partial-sum overflow, SNR in dB."""
    if not rows:
        raise ValueError("no rows to pool")
    send = sum(r["stats"].send.numel for r in rows)
    partial = sum(r["stats"].partial_sums.numel for r in rows)
    noise = sum(r["noise"] for r in rows)
    signal = sum(r["signal"] for r in rows)
    return {"underflow": sum(r["stats"].send.underflow for r in rows) / max(send, 1),
            "overflow": sum(r["stats"].send.overflow + r["stats"].partial_sums.overflow
                            for r in rows) / max(send + partial, 1),
            "sum_overflow": sum(r["stats"].partial_sums.overflow for r in rows) / max(partial, 1),
            "snr_db": 10 * math.log10(signal / noise) if noise else math.inf}
