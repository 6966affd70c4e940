"""Per-tensor scaling factors for FP8 (FP8-LM App. A.2; MS-AMP ``ScalingMeta``).

A tensor x is stored as the pair (t, s) with t = FP8(s·x); its value is t / s.

* :func:`power_of_two_scale` is MS-AMP's rule: the largest power of two s with
  amax·s ≤ fp_max, divided by 2**margin; the previous scale is kept when amax is zero or
  not finite.
* :class:`ScalingState` keeps an amax history and gives **just-in-time** scaling (scale from
  the tensor being cast) or **delayed** scaling (scale from the max — or another reduction — of
  the last ``history_len`` amaxes, before the current tensor is seen).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch

from .formats import FP8Format, QuantStats, get_format, quantize

__all__ = ["power_of_two_scale", "ScalingState", "amax", "MAX_EXPONENT"]

#: Scales stay within 2**±126, the normal range of fp32.
MAX_EXPONENT = 126


def amax(x: torch.Tensor) -> float:
    """max |x| as a Python float (inf/NaN propagate)."""
    if x.numel() == 0:
        return 0.0
    return float(x.detach().abs().max())


def power_of_two_scale(amax_value: float, fp_max: float, margin: int = 0,
                       previous: float = 1.0) -> float:
    """MS-AMP's scaling factor: ``2**(floor(log2(fp_max / amax)) - margin)``.

    Keeps ``previous`` when ``amax`` is 0 or not finite (nothing to learn from it).
    """
    if not math.isfinite(amax_value) or amax_value <= 0.0:
        return previous
    ratio = fp_max / amax_value
    if math.isinf(ratio):  # a subnormal amax: fp_max / amax overflows a double
        return 2.0**MAX_EXPONENT
    # floor(log2(ratio)) exactly, from the binary exponent (frexp: ratio = m·2**e, m in [0.5, 1));
    # math.log2 can round 2**k·(1 - ε) up to k. The device path uses torch.frexp the same way.
    exp = math.frexp(ratio)[1] - 1 - margin
    # keep the scale a finite fp32 number: a tiny amax would otherwise give 2**200 = inf in
    # fp32, and inf * 0 = NaN
    return 2.0 ** max(min(exp, MAX_EXPONENT), -MAX_EXPONENT)


@dataclass
class ScalingState:
    """Scaling bookkeeping of one tensor role (e.g. the input of one linear layer).

    ``mode="delayed"`` uses the reduction (``"max"`` or ``"most_recent"``) of the amax history
    recorded on previous casts; the very first cast, with an empty history, falls back to a
    just-in-time scale. ``mode="jit"`` always scales from the tensor itself.
    """

    fmt: FP8Format | str = "e4m3"
    mode: str = "delayed"
    history_len: int = 16
    reduction: str = "max"
    margin: int = 0
    scale: float = 1.0
    history: deque = field(default_factory=deque)
    stats: QuantStats = field(default_factory=QuantStats)

    def __post_init__(self) -> None:
        self.fmt = get_format(self.fmt)
        if self.mode not in ("delayed", "jit"):
            raise ValueError(f"unknown scaling mode {self.mode!r}: use 'delayed' or 'jit'")
        if self.reduction not in ("max", "most_recent"):
            raise ValueError(f"unknown amax reduction {self.reduction!r}: use 'max' or "
                             "'most_recent'")
        if self.history_len < 1:
            raise ValueError("history_len must be >= 1")
        self.history = deque(self.history, maxlen=self.history_len)

    def _history_amax(self) -> float:
        finite = [a for a in self.history if math.isfinite(a)]
        if not finite:
            return float("nan")
        return max(finite) if self.reduction == "max" else finite[-1]

    def next_scale(self, x: torch.Tensor | None = None) -> float:
        """Scale to use for the next cast (does not record anything)."""
        if self.mode == "jit" or not self.history:
            if x is None:
                return self.scale
            return power_of_two_scale(amax(x), self.fmt.max, self.margin, self.scale)
        return power_of_two_scale(self._history_amax(), self.fmt.max, self.margin, self.scale)

    def cast(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Quantise ``x`` with the current rule; record its amax; return (payload, scale)."""
        self.scale = self.next_scale(x)
        q = quantize(x, self.fmt, self.scale, stats=self.stats)
        self.history.append(amax(x))
        return q, self.scale
