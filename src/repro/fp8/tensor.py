"""A tensor stored in a low-precision payload with a per-tensor scale (MS-AMP ``ScalingTensor``).

The payload uses real low-precision storage (``float8_e4m3fn``/``float8_e5m2``: 1 byte,
``float16``/``bfloat16``: 2 bytes, ``float32``: 4 bytes), so byte counts come from the stored
tensors (``element_size() * numel()``) rather than from arithmetic. The scale is one fp32
number (4 bytes). FP16 "with tensor scaling" (FP8-LM §2.2, the master weights) uses the same
power-of-two rule with fp_max = 65504; BF16 and FP32 are stored unscaled (their range is
fp32's, and 3.4e38 / amax would overflow the scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .formats import FORMATS, QuantStats, quantize
from .scaling import amax, power_of_two_scale

__all__ = ["ScaledTensor", "STORAGE_FORMATS"]

FP16_MAX = 65504.0
STORAGE_FORMATS = ("e4m3", "e5m2", "fp16", "bf16", "fp32")
_TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class ScaledTensor:
    """``value ≈ payload / scale``; ``fmt`` is one of :data:`STORAGE_FORMATS`."""

    payload: torch.Tensor
    scale: float | torch.Tensor  # a Python float (reference) or a 0-dim device tensor (fast)
    fmt: str

    @classmethod
    def from_float(
        cls,
        x: torch.Tensor,
        fmt: str,
        scale: float | None = None,
        *,
        margin: int = 0,
        previous_scale: float = 1.0,
        stats: QuantStats | None = None,
    ) -> ScaledTensor:
        """Encode ``x``; ``scale=None`` picks a just-in-time power-of-two scale."""
        if fmt not in STORAGE_FORMATS:
            raise ValueError(f"unknown storage format {fmt!r}: choose one of {STORAGE_FORMATS}")
        x = x.detach()
        if fmt in FORMATS:
            if scale is None:
                scale = power_of_two_scale(amax(x), FORMATS[fmt].max, margin, previous_scale)
            return cls(quantize(x, fmt, scale, stats=stats), float(scale), fmt)
        if fmt == "fp16":
            if scale is None:
                scale = power_of_two_scale(amax(x), FP16_MAX, margin, previous_scale)
            scaled = x.float() * scale
            if stats is not None:
                payload = scaled.clamp(-FP16_MAX, FP16_MAX).half()
                stats += QuantStats(x.numel(), int((scaled.abs() > FP16_MAX).sum()),
                                    int(((scaled != 0) & (payload == 0)).sum()))
                return cls(payload, float(scale), fmt)
            return cls(scaled.clamp(-FP16_MAX, FP16_MAX).half(), float(scale), fmt)
        # bf16 / fp32: no scaling
        return cls(x.to(_TORCH_DTYPES[fmt]).clone(), 1.0, fmt)

    @classmethod
    def encode(cls, x: torch.Tensor, fmt: str,
               previous_scale: torch.Tensor | None = None) -> ScaledTensor:
        """:meth:`from_float` with the scale computed on the device (a 0-dim fp32 tensor, no
        host sync); the payload and scale equal :meth:`from_float`'s bit for bit."""
        from .linear import _device_scale

        if fmt not in STORAGE_FORMATS:
            raise ValueError(f"unknown storage format {fmt!r}: choose one of {STORAGE_FORMATS}")
        x = x.detach()
        if fmt in ("bf16", "fp32"):
            return cls(x.to(_TORCH_DTYPES[fmt]).clone(), 1.0, fmt)
        fp_max = FP16_MAX if fmt == "fp16" else FORMATS[fmt].max
        if previous_scale is None:
            previous_scale = torch.ones((), dtype=torch.float32, device=x.device)
        scale = _device_scale(x.abs().amax() if x.numel() else torch.zeros((), device=x.device),
                              fp_max, previous_scale)
        dtype = torch.float16 if fmt == "fp16" else FORMATS[fmt].dtype
        return cls((x.float() * scale).clamp(-fp_max, fp_max).to(dtype), scale, fmt)

    def float(self) -> torch.Tensor:
        """Dequantised fp32 value."""
        return self.payload.float() / self.scale

    @property
    def shape(self) -> torch.Size:
        return self.payload.shape

    def numel(self) -> int:
        return self.payload.numel()

    @property
    def nbytes(self) -> int:
        """Bytes held: payload (element_size × numel) plus 4 for a stored fp32 scale."""
        scale_bytes = 0 if self.fmt in ("bf16", "fp32") else 4
        return self.payload.element_size() * self.payload.numel() + scale_bytes

    def to_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """Flat tensors for a safetensors checkpoint (payload viewed as uint8 for float8)."""
        payload = self.payload
        if payload.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            payload = payload.view(torch.uint8)
        return {f"{prefix}.payload": payload.contiguous(),
                f"{prefix}.scale": torch.as_tensor(self.scale, dtype=torch.float64)
                .detach().cpu().reshape(1)}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], prefix: str, fmt: str) -> ScaledTensor:
        payload = state[f"{prefix}.payload"]
        if fmt in FORMATS:
            payload = payload.view(FORMATS[fmt].dtype)
        return cls(payload.clone(), float(state[f"{prefix}.scale"][0]), fmt)
