"""FP8 number formats and saturating quantisation (FP8-LM, App. A.1).

Two formats matter for FP8 training:

* **E4M3** (``torch.float8_e4m3fn``): 4 exponent bits, 3 mantissa bits, no infinities;
  used for activations and weights (more precision, range ±448).
* **E5M2** (``torch.float8_e5m2``): 5 exponent bits, 2 mantissa bits, with ±inf;
  used for gradients (more range, ±57344).

:func:`quantize` always clamps to ±max *before* the cast, so the result never depends on
whether the installed torch saturates (torch 2.14's CPU cast saturates E4M3 but turns E5M2
values ≥ 61440 into inf; earlier releases differed). It counts overflow (|x| > max) and
underflow (a non-zero value that rounds to zero) on the scaled fp32 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["FP8Format", "E4M3", "E5M2", "FORMATS", "get_format", "quantize", "dequantize",
           "QuantStats"]


@dataclass(frozen=True)
class FP8Format:
    """Static facts about one 8-bit float format."""

    name: str
    dtype: torch.dtype
    exponent_bits: int
    mantissa_bits: int
    max: float  # largest finite value
    min_normal: float  # 2**(1 - bias)
    min_subnormal: float  # 2**(1 - bias - mantissa_bits)
    has_inf: bool

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def binades(self) -> float:
        """log2(max / min_subnormal): the dynamic range in powers of two."""
        import math

        return math.log2(self.max / self.min_subnormal)

    def representable_values(self) -> torch.Tensor:
        """Every finite non-negative value of the format, sorted (decoded from all bit patterns)."""
        codes = torch.arange(0, 128, dtype=torch.uint8)  # sign bit 0
        vals = codes.view(self.dtype).float()
        vals = vals[torch.isfinite(vals)]
        return torch.unique(vals)


E4M3 = FP8Format("e4m3", torch.float8_e4m3fn, 4, 3, 448.0, 2.0**-6, 2.0**-9, has_inf=False)
E5M2 = FP8Format("e5m2", torch.float8_e5m2, 5, 2, 57344.0, 2.0**-14, 2.0**-16, has_inf=True)
FORMATS: dict[str, FP8Format] = {"e4m3": E4M3, "e5m2": E5M2}


def get_format(fmt: str | FP8Format | torch.dtype) -> FP8Format:
    """Look a format up by name (``"e4m3"``, ``"e5m2"``), dtype or instance."""
    if isinstance(fmt, FP8Format):
        return fmt
    if isinstance(fmt, torch.dtype):
        for f in FORMATS.values():
            if f.dtype == fmt:
                return f
        raise ValueError(
            f"unsupported dtype {fmt} for FP8: use torch.float8_e4m3fn (E4M3) or "
            "torch.float8_e5m2 (E5M2)"
        )
    key = str(fmt).lower().replace("_", "").replace("fn", "")
    if key not in FORMATS:
        raise ValueError(f"unknown FP8 format {fmt!r}: choose one of {sorted(FORMATS)}")
    return FORMATS[key]


@dataclass
class QuantStats:
    """Counts from one quantisation: entries, overflows (clamped), underflows (flushed to 0)."""

    numel: int = 0
    overflow: int = 0
    underflow: int = 0

    @property
    def overflow_rate(self) -> float:
        return self.overflow / max(self.numel, 1)

    @property
    def underflow_rate(self) -> float:
        return self.underflow / max(self.numel, 1)

    def __iadd__(self, other: QuantStats) -> QuantStats:
        self.numel += other.numel
        self.overflow += other.overflow
        self.underflow += other.underflow
        return self


def quantize(
    x: torch.Tensor,
    fmt: str | FP8Format,
    scale: float | torch.Tensor = 1.0,
    *,
    stats: QuantStats | None = None,
) -> torch.Tensor:
    """Return ``FP8(clamp(x * scale, -max, max))`` as a real float8 tensor.

    NaN stays NaN (E4M3 has a NaN code; E5M2 too). ``stats``, if given, is updated with the
    number of scaled entries beyond ±max (overflow) and of non-zero entries that became zero
    (underflow).
    """
    f = get_format(fmt)
    if not x.is_floating_point():
        raise TypeError(f"quantize expects a floating-point tensor, got {x.dtype}")
    # float64 is scaled and clamped in float64 and rounded to fp32 *to odd* before the float8
    # cast, so it is rounded once (torch's float64 -> float8 cast goes through fp32 with
    # round-to-nearest, which double-rounds near ties); other dtypes are exact in fp32
    scaled = (x if x.dtype == torch.float64 else x.float()) * scale
    clamped = scaled.clamp(-f.max, f.max)  # clamp keeps NaN as NaN
    if clamped.dtype == torch.float64:
        clamped = _round_to_odd_fp32(clamped)
    q = clamped.to(f.dtype)
    if stats is not None:
        # Counted on the scaled fp32 values, without decoding the payload (an E4M3 decode
        # costs about as much as a GEMM on CPU). Round-to-nearest-even sends every value in
        # (0, min_subnormal / 2] to zero, the tie included.
        magnitude = scaled.abs()
        stats += QuantStats(
            numel=x.numel(),
            overflow=int(torch.count_nonzero(magnitude > f.max)),
            underflow=int(torch.count_nonzero((magnitude > 0)
                                              & (magnitude <= f.min_subnormal / 2))),
        )
    return q


def _round_to_odd_fp32(x: torch.Tensor) -> torch.Tensor:
    """float64 -> float32 truncated toward zero with the last bit set when inexact
    ("round to odd"): a later rounding to any format with fewer than 23 mantissa bits then
    equals one correct rounding of the float64 value."""
    y = x.float()
    away = y.double().abs() > x.abs()
    y = torch.where(away, torch.nextafter(y, torch.zeros_like(y)), y)
    inexact = (y.double() != x) & torch.isfinite(x)
    return (y.view(torch.int32) | inexact.to(torch.int32)).view(torch.float32)


def dequantize(q: torch.Tensor, scale: float | torch.Tensor = 1.0,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of :func:`quantize`: ``q / scale`` in ``dtype``."""
    return (q.to(torch.float32) / scale).to(dtype)
