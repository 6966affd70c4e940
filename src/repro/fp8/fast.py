"""The FP8 linear's fast path: the same numerics as :class:`repro.fp8.linear.FP8LinearMeta`,
with every scale, amax and history kept on the device (FP8-LM App. A.2; MS-AMP ``ScalingMeta``).

The reference path (``FP8LinearMeta``) is written to be read: each cast turns its amax into a
Python float and computes the power-of-two scale on the host, which costs a device-to-host sync
per cast (about ten per layer per training step, plus the statistics). :class:`FastFP8Meta` is a
drop-in replacement (``FP8Linear(..., fast=True)``, ``convert(model, fast=True)``):

* per role a 0-dim fp32 ``scale``, an fp32 ``history`` ring buffer of ``history_len`` amaxes and
  a host-side count of recorded casts (a Python int: reading it is not a sync);
* the scale rule runs on the device (:func:`repro.fp8.linear._device_scale`: ``torch.frexp``
  gives floor(log2(fp_max / amax)) exactly, as the reference's ``math.frexp``), so the payloads,
  scales and GEMM results equal the reference's **bit for bit** on CPU (tests check it);
* the amax, scale, saturate and cast of one tensor are one function (:func:`scaled_cast`),
  which ``compile=True`` hands to ``torch.compile`` (one fused kernel on a GPU);
* the weight's FP8 copy is made once per optimizer step, not once per forward: it is cached
  until the Parameter's version counter changes (the optimizer's in-place update bumps it);
* on GPUs with FP8 tensor cores the GEMMs call ``torch._scaled_mm`` with the inverse-scale
  tensors as they are (no ``.item()``), bf16/fp16/fp32 output in the input's dtype and
  ``use_fast_accum=True`` in the forward GEMM (TE's and torchao's choice; the two backward
  GEMMs accumulate exactly);
* statistics are optional (``stats=False`` by default here): when on they are device counters,
  read only when :meth:`FastFP8Meta.stats` is called;
* overflow is reported as a 0-dim bool ``found_inf`` tensor (MS-AMP's flag), never a branch.

Departures from the reference: only the ``"max"`` history reduction (the reference's
``"most_recent"`` is not offered); the weight's cast is recorded once per step, not per forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .formats import FP8Format, get_format
from .linear import GEMMS, WGRAD_FORMATS, _device_scale, fp8_gemm, resolve_gemm

__all__ = ["FastFP8Meta", "FastScaling", "scaled_cast"]


def scaled_cast(x: torch.Tensor, scale: torch.Tensor, fp_max: float,
                dtype: torch.dtype) -> torch.Tensor:
    """``FP8(clamp(x · scale, ±fp_max))`` with a device scale (the saturating cast)."""
    return (x.float() * scale).clamp(-fp_max, fp_max).to(dtype)


@dataclass
class FastScaling:
    """One role's scaling state on the device."""

    fmt: FP8Format
    mode: str  # "delayed" or "jit"
    history_len: int
    margin: int = 0
    scale: torch.Tensor | None = None
    history: torch.Tensor | None = None
    count: int = 0  # recorded casts (host-side)
    numel: int = 0  # host-side
    overflow: torch.Tensor | None = None
    underflow: torch.Tensor | None = None
    overflow_casts: torch.Tensor | None = None

    def ensure(self, device: torch.device) -> None:
        if self.scale is None or self.scale.device != device:
            def move(t, default):
                return default if t is None else t.to(device)

            self.scale = move(self.scale, torch.ones((), dtype=torch.float32, device=device))
            self.history = move(self.history, torch.zeros(self.history_len, dtype=torch.float32,
                                                          device=device))
            zero = torch.zeros((), dtype=torch.int64, device=device)
            self.overflow = move(self.overflow, zero.clone())
            self.underflow = move(self.underflow, zero.clone())
            self.overflow_casts = move(self.overflow_casts, zero.clone())

    def next_scale(self, x_amax: torch.Tensor) -> torch.Tensor:
        fp_max = self.fmt.max / 2.0**self.margin
        if self.mode == "jit" or self.count == 0:
            return _device_scale(x_amax, fp_max, self.scale)
        valid = self.history[:min(self.count, self.history_len)]
        past = torch.where(torch.isfinite(valid), valid, torch.zeros_like(valid)).amax()
        return _device_scale(past, fp_max, self.scale)


class FastFP8Meta:
    """Device-resident scaling of one FP8 linear layer (see the module docstring)."""

    def __init__(self, scaling: str = "delayed", history_len: int = 16, wgrad: str = "e4m3",
                 gemm: str = "auto", margin: int = 0, stats: bool = False,
                 compile: bool = False) -> None:
        if scaling not in ("delayed", "jit"):
            raise ValueError(f"unknown scaling {scaling!r}: use 'delayed' or 'jit'")
        if wgrad not in WGRAD_FORMATS:
            raise ValueError(f"unknown wgrad format {wgrad!r}: choose one of {WGRAD_FORMATS}")
        if gemm not in GEMMS:
            raise ValueError(f"unknown gemm {gemm!r}: choose one of {GEMMS}")
        if history_len < 1:
            raise ValueError("history_len must be >= 1")
        self.scaling, self.history_len, self.wgrad, self.gemm = scaling, history_len, wgrad, gemm
        self.margin, self.stats_enabled, self.compile = margin, stats, compile
        # the margin divides the format maximum, so 2**-margin comes out of the scale exactly
        roles = {"input": ("e4m3", scaling, history_len), "weight": ("e4m3", "jit", 1),
                 "grad_output": ("e5m2", scaling, history_len)}
        if wgrad != "fp32":
            roles["wgrad"] = (wgrad, "jit", 1)
        self.states = {role: FastScaling(get_format(f), mode, n, margin)
                       for role, (f, mode, n) in roles.items()}
        self.found_inf: torch.Tensor | None = None
        self._weight_cache: Any = None
        self._cast_fn = torch.compile(scaled_cast, dynamic=True) if compile else scaled_cast

    # ------------------------------------------------------------------ casts
    def cast(self, role: str, x: torch.Tensor, record: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(payload, scale, nonfinite)``, all on ``x``'s device; no host sync."""
        state = self.states[role]
        state.ensure(x.device)
        x_amax = x.detach().abs().amax().float() if x.numel() else torch.zeros((), device=x.device)
        scale = state.next_scale(x_amax)
        q = self._cast_fn(x, scale, state.fmt.max, state.fmt.dtype)
        nonfinite = ~torch.isfinite(x_amax)
        if self.found_inf is None or self.found_inf.device != x.device:
            self.found_inf = torch.zeros((), dtype=torch.bool, device=x.device)
        self.found_inf.logical_or_(nonfinite)
        if record:
            state.history[state.count % state.history_len] = x_amax
            state.count += 1
            state.scale = scale
            if self.stats_enabled:
                self._count(state, x, scale)
        return q, scale, nonfinite

    def _count(self, state: FastScaling, x: torch.Tensor, scale: torch.Tensor) -> None:
        """The reference's overflow/underflow counts, as device counters."""
        magnitude = x.detach().abs()
        overflow = torch.count_nonzero(magnitude > state.fmt.max / scale)
        underflow = (torch.count_nonzero(magnitude <= state.fmt.min_subnormal / 2 / scale)
                     - torch.count_nonzero(magnitude == 0))
        state.numel += x.numel()
        state.overflow += overflow
        state.underflow += underflow
        state.overflow_casts += (overflow > 0).long()

    def cast_weight(self, weight: torch.Tensor, decoded: torch.Tensor, record: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The weight's E4M3 copy, made once per value of the Parameter (version counter)."""
        key = (id(weight), weight._version, weight.data_ptr(), tuple(decoded.shape))
        cached = self._weight_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        result = self.cast("weight", decoded.detach(), record)
        self._weight_cache = (key, result)
        return result

    def gemm_fn(self, a, a_scale, b, b_scale, out_dtype, gemm, forward=True) -> torch.Tensor:
        mode = resolve_gemm(gemm, a.device, (a.shape[0], a.shape[1], b.shape[1]))
        if mode == "scaled_mm":
            return torch._scaled_mm(a.contiguous(), b.t().contiguous().t(),
                                    scale_a=a_scale.reciprocal(), scale_b=b_scale.reciprocal(),
                                    out_dtype=out_dtype, use_fast_accum=forward)
        return fp8_gemm(a, a_scale, b, b_scale, out_dtype, "dequant")

    # ------------------------------------------------------------------ reading it out
    def clear_found_inf(self) -> None:
        if self.found_inf is not None:
            self.found_inf.zero_()

    def stats(self) -> dict[str, dict]:
        """The reference's per-role dict (this reads the device counters: a sync)."""
        out = {}
        for role, s in self.states.items():
            valid = [] if s.history is None else s.history[:min(s.count, s.history_len)]
            overflow = 0 if s.overflow is None else int(s.overflow)
            underflow = 0 if s.underflow is None else int(s.underflow)
            out[role] = {"format": s.fmt.name, "mode": s.mode, "numel": s.numel,
                         "overflow": overflow, "underflow": underflow,
                         "overflow_rate": overflow / max(s.numel, 1),
                         "underflow_rate": underflow / max(s.numel, 1), "casts": s.count,
                         "overflow_casts": 0 if s.overflow_casts is None else int(s.overflow_casts),
                         "scale": 1.0 if s.scale is None else float(s.scale),
                         "amax_history": [float(a) for a in valid],
                         "stats_enabled": self.stats_enabled}
        return out

    def reset_stats(self) -> None:
        for s in self.states.values():
            s.numel = 0
            for t in (s.overflow, s.underflow, s.overflow_casts):
                if t is not None:
                    t.zero_()

    def state_dict(self) -> dict:
        """Scales and amax histories (oldest first), JSON-serialisable, as the reference's."""
        out = {}
        for role, s in self.states.items():
            if s.history is None:
                out[role] = {"scale": 1.0, "history": []}
                continue
            n = min(s.count, s.history_len)
            order = [(s.count - n + i) % s.history_len for i in range(n)]
            out[role] = {"scale": float(s.scale), "history": [float(s.history[i]) for i in order]}
        return out

    def load_state_dict(self, state: dict) -> None:
        for role, saved in state.items():
            s = self.states[role]
            device = s.scale.device if s.scale is not None else torch.device("cpu")
            s.scale = None
            s.history = None
            s.ensure(device)
            s.scale.fill_(float(saved["scale"]))
            history = [float(a) for a in saved["history"]][-s.history_len:]
            s.history[:len(history)] = torch.tensor(history, dtype=torch.float32)
            s.count = len(history)
