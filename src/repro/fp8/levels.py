"""MS-AMP optimization levels O1 / O2 / O3 (FP8-LM §4.5 of our spec; paper §3, MS-AMP docs).

Each level says, for the weights of the FP8 linear layers, where FP8 is used:

| level | GEMM | weight-grad comm | weight | master weight | weight grad | Adam m + v |
|---|---|---|---|---|---|---|
| O1 | FP8 | FP8 | FP16 (scaled) | = weight | FP8 | FP32 + FP32 |
| O2 | FP8 | FP8 | FP16 (scaled) | = weight | FP8 | FP8 + FP16 (scaled) |
| O3 | FP8 | FP8 | FP8 | FP16 (scaled) | FP8 | FP8 + FP16 (scaled), ZeRO |

Formats are :data:`repro.fp8.tensor.STORAGE_FORMATS` names. "fp16" always means FP16 *with a
per-tensor power-of-two scale* (MS-AMP's ``kfloat16`` ScalingTensor). At O1/O2 there is no
separate master copy: the FP16-scaled weight is the master (``master_format ==
weight_format``); only O3 (ZeRO) keeps an FP8 working weight and an FP16 master. The paper
does not name the FP8 format of weight gradients; MS-AMP's code uses E4M3 (its activation
gradients are E5M2), and so do we. Every parameter that is not an FP8 linear weight (embeddings,
norms, biases) stays FP32 with FP32 Adam states at every level.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FP8Level", "LEVELS", "get_level"]


@dataclass(frozen=True)
class FP8Level:
    """One optimization level; read by :func:`repro.fp8.convert` and the FP8 optimizer."""

    name: str
    fp8_gemm: bool  # the linear GEMMs read FP8 operands
    fp8_wgrad_comm: bool  # weight gradients are all-reduced in FP8
    weight_format: str  # storage of the weight the GEMMs read between steps
    master_format: str  # storage of the master weight the optimizer updates
    grad_format: str  # weight-gradient format (the FP8 linear's ``wgrad``)
    exp_avg_format: str  # Adam first moment m
    exp_avg_sq_format: str  # Adam second moment v
    zero: bool  # FP8 ZeRO: optimizer states partitioned by whole tensors (Alg. 1)
    description: str = ""


LEVELS: dict[str, FP8Level] = {
    "O1": FP8Level("O1", fp8_gemm=True, fp8_wgrad_comm=True, weight_format="fp16",
                   master_format="fp16", grad_format="e4m3", exp_avg_format="fp32",
                   exp_avg_sq_format="fp32", zero=False,
                   description="FP8 GEMMs and weight-gradient communication; FP32 Adam states"),
    "O2": FP8Level("O2", fp8_gemm=True, fp8_wgrad_comm=True, weight_format="fp16",
                   master_format="fp16", grad_format="e4m3", exp_avg_format="e4m3",
                   exp_avg_sq_format="fp16", zero=False,
                   description="O1 + FP8 optimizer with precision decoupling (m E4M3, v FP16)"),
    "O3": FP8Level("O3", fp8_gemm=True, fp8_wgrad_comm=True, weight_format="e4m3",
                   master_format="fp16", grad_format="e4m3", exp_avg_format="e4m3",
                   exp_avg_sq_format="fp16", zero=True,
                   description="O2 + FP8 weights with an FP16 master copy, FP8 ZeRO"),
}


def get_level(name: str | FP8Level) -> FP8Level:
    """Look a level up by name (case-insensitive: ``"O2"``, ``"o2"``); levels pass through."""
    if isinstance(name, FP8Level):
        return name
    key = str(name).upper()
    if key not in LEVELS:
        raise ValueError(f"unknown FP8 optimization level {name!r}: choose one of "
                         f"{', '.join(LEVELS)}")
    return LEVELS[key]
