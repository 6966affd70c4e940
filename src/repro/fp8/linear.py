"""The FP8 linear layer (FP8-LM §2 and App. A; MS-AMP ``msamp.nn.FP8Linear``).

One linear layer ``y = x Wᵀ + b`` whose three GEMMs read 8-bit operands, as in MS-AMP's
``_FP8GemmFunction``:

* forward: the input is cast to **E4M3** with **delayed** scaling (amax history of 16, max
  over the window; the first cast, with an empty history, is just-in-time) and the weight to
  **E4M3** with a **just-in-time** scale; ``y = GEMM(x_fp8, W_fp8)``;
* backward: the output gradient is cast to **E5M2** with delayed scaling (clamped first: E5M2
  does not saturate on CPU); ``dx = GEMM(g_fp8, W_fp8)`` and ``dW = GEMM(g_fp8ᵀ, x_fp8)`` reuse
  the FP8 input and weight saved by the forward, so only 1 byte per input element is kept;
* the weight gradient is then re-quantised just-in-time to ``wgrad`` (MS-AMP's code uses
  **E4M3**, ``"fp32"`` keeps it in high precision) and handed back dequantised;
* the bias is added outside the FP8 GEMM in high precision (as in MS-AMP).

Scales are MS-AMP's powers of two (:func:`repro.fp8.scaling.power_of_two_scale`).

The GEMM runs through ``torch._scaled_mm`` (``gemm="scaled_mm"``, operands float8, scales are
the *inverse* scales as fp32 scalar tensors) or as "dequantise both operands, fp32 matmul"
(``gemm="dequant"``). On CPU the two are bit-identical (a test checks it) and dequant is
faster, so ``gemm="auto"`` (the default) picks ``scaled_mm`` on CUDA GPUs with FP8 tensor
cores (compute capability ≥ 8.9) when every GEMM dimension is a multiple of 16, and ``dequant``
everywhere else.

Departures from MS-AMP, all deliberate:

* the amax history advances once per *cast* (each forward/backward call), not once per
  optimizer step; with gradient accumulation MS-AMP records one amax per step;
* in ``eval()`` mode the layer casts with the current scale but records nothing (history and
  statistics are frozen), so a validation pass never changes the training trajectory;
* the weight is an ordinary fp32/bf16 ``nn.Parameter`` (the optimizer decides how the master
  copy is stored, see :mod:`repro.fp8.levels`), not an FP16 ``ScalingParameter``;
* scales are capped at 2**126 so a tensor of tiny values never gets an fp32-infinite scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .formats import FP8Format, QuantStats, dequantize, quantize
from .scaling import ScalingState, amax

__all__ = ["FP8Linear", "FP8LinearMeta", "fp8_linear", "fp8_gemm", "resolve_gemm",
           "GEMMS", "WGRAD_FORMATS", "ROLES", "SUPPORTED_DTYPES"]

GEMMS = ("auto", "scaled_mm", "dequant")
WGRAD_FORMATS = ("fp32", "e4m3", "e5m2")
ROLES = ("input", "weight", "grad_output", "wgrad")
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Largest scale whose inverse and product stay finite fp32 normals. power_of_two_scale returns a
# Python float, so amax < fp_max * 2**-128 would otherwise give scale = inf in fp32 and 0·inf = NaN.
_MAX_SCALE = 2.0**126


@dataclass
class FP8LinearMeta:
    """Scaling bookkeeping and options of one FP8 linear layer.

    ``states`` maps a role (``"input"``, ``"weight"``, ``"grad_output"`` and, unless
    ``wgrad == "fp32"``, ``"wgrad"``) to its :class:`ScalingState`; ``casts[role]`` counts the
    recorded casts and ``overflow_casts[role]`` those where at least one entry was clamped.
    """

    scaling: str = "delayed"
    history_len: int = 16
    wgrad: str = "e4m3"
    gemm: str = "auto"
    margin: int = 0
    states: dict[str, ScalingState] = field(default_factory=dict)
    casts: dict[str, int] = field(default_factory=dict)
    overflow_casts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scaling not in ("delayed", "jit"):
            raise ValueError(f"unknown scaling {self.scaling!r}: use 'delayed' or 'jit'")
        if self.wgrad not in WGRAD_FORMATS:
            raise ValueError(f"unknown wgrad format {self.wgrad!r}: choose one of {WGRAD_FORMATS}")
        if self.gemm not in GEMMS:
            raise ValueError(f"unknown gemm {self.gemm!r}: choose one of {GEMMS}")
        if not self.states:
            self.states = {
                # MS-AMP: input E4M3 window 16, weight E4M3 in-time, ograd E5M2 window 16.
                "input": ScalingState("e4m3", self.scaling, self.history_len, margin=self.margin),
                "weight": ScalingState("e4m3", "jit", 1, margin=self.margin),
                "grad_output": ScalingState("e5m2", self.scaling, self.history_len,
                                            margin=self.margin),
            }
            if self.wgrad != "fp32":
                self.states["wgrad"] = ScalingState(self.wgrad, "jit", 1, margin=self.margin)
        for role in self.states:
            self.casts.setdefault(role, 0)
            self.overflow_casts.setdefault(role, 0)

    def cast(self, role: str, x: torch.Tensor, record: bool = True) -> tuple[torch.Tensor, float]:
        """Quantise ``x`` for ``role``; with ``record`` update history and statistics.

        Same rule as :meth:`ScalingState.cast`, plus the scale cap, and with the statistics
        counted by :func:`_quant_stats` (no float8 decode).
        """
        state = self.states[role]
        scale = min(state.next_scale(x), _MAX_SCALE)
        q = quantize(x, state.fmt, scale)
        if record:
            x_amax = amax(x)
            stats = _quant_stats(x, state.fmt, scale, x_amax)
            state.stats += stats
            state.scale = scale
            state.history.append(x_amax)
            self.casts[role] += 1
            self.overflow_casts[role] += int(stats.overflow > 0)
        return q, scale

    def stats(self) -> dict[str, dict]:
        """Per role: counts, rates, current scale and amax history (plain Python values)."""
        out = {}
        for role, state in self.states.items():
            s = state.stats
            out[role] = {
                "format": state.fmt.name,
                "mode": state.mode,
                "numel": s.numel,
                "overflow": s.overflow,
                "underflow": s.underflow,
                "overflow_rate": s.overflow_rate,
                "underflow_rate": s.underflow_rate,
                "casts": self.casts[role],
                "overflow_casts": self.overflow_casts[role],
                "scale": state.scale,
                "amax_history": list(state.history),
            }
        return out

    def reset_stats(self) -> None:
        """Zero the counters (scales and amax histories are kept)."""
        for role, state in self.states.items():
            state.stats = QuantStats()
            self.casts[role] = 0
            self.overflow_casts[role] = 0

    def state_dict(self) -> dict:
        """Scales and amax histories, for an exact resume (JSON-serialisable)."""
        return {role: {"scale": s.scale, "history": list(s.history)}
                for role, s in self.states.items()}

    def load_state_dict(self, state: dict) -> None:
        for role, s in state.items():
            self.states[role].scale = float(s["scale"])
            self.states[role].history.clear()
            self.states[role].history.extend(float(a) for a in s["history"])


def _quant_stats(x: torch.Tensor, fmt: FP8Format, scale: float, x_amax: float) -> QuantStats:
    """The counts ``quantize(x, fmt, scale, stats=...)`` makes, without decoding the payload
    (an E4M3 decode costs about as much as the GEMM on CPU). With a power-of-two scale,
    ``|x·s| > max`` iff ``|x| > max/s`` (exact); underflow is ``0 < |x| <= (min_subnormal/2)/s``,
    because casts round to nearest-even and the tie at half the smallest subnormal goes to 0.
    The overflow count is skipped when the amax shows there is none (the common case)."""
    magnitude = x.detach().abs()
    overflow = 0
    if not x_amax * scale <= fmt.max:  # also true for NaN
        overflow = int(torch.count_nonzero(magnitude > fmt.max / scale))
    underflow = int(torch.count_nonzero(magnitude <= fmt.min_subnormal / 2 / scale))
    if underflow:
        underflow -= int(torch.count_nonzero(magnitude == 0))
    return QuantStats(x.numel(), overflow, underflow)


def resolve_gemm(gemm: str, device: torch.device, dims: tuple[int, ...] = ()) -> str:
    """Turn ``"auto"`` into ``"scaled_mm"`` (CUDA, sm ≥ 8.9, dims % 16 == 0) or ``"dequant"``."""
    if gemm != "auto":
        return gemm
    fp8_tensor_cores = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)
    return "scaled_mm" if fp8_tensor_cores and all(d % 16 == 0 for d in dims) else "dequant"


def fp8_gemm(a: torch.Tensor, a_scale: float, b: torch.Tensor, b_scale: float,
             out_dtype: torch.dtype, gemm: str = "auto") -> torch.Tensor:
    """``(a / a_scale) @ (b / b_scale)`` for float8 payloads ``a`` (M, K) and ``b`` (K, N).

    ``scaled_mm`` calls ``torch._scaled_mm`` with ``a`` row-major, ``b`` column-major (what
    cuBLASLt requires; the CPU kernel accepts either) and the inverse scales as fp32 scalar
    tensors; ``dequant`` multiplies the dequantised fp32 operands and rounds once to
    ``out_dtype``. Both accumulate in fp32.
    """
    gemm = resolve_gemm(gemm, a.device, (a.shape[0], a.shape[1], b.shape[1]))
    if gemm == "scaled_mm":
        inv_a = torch.tensor(1.0 / a_scale, dtype=torch.float32, device=a.device)
        inv_b = torch.tensor(1.0 / b_scale, dtype=torch.float32, device=b.device)
        return torch._scaled_mm(a.contiguous(), b.t().contiguous().t(), scale_a=inv_a,
                                scale_b=inv_b, out_dtype=out_dtype)
    if gemm != "dequant":
        raise ValueError(f"unknown gemm {gemm!r}: choose one of {GEMMS}")
    return (dequantize(a, a_scale) @ dequantize(b, b_scale)).to(out_dtype)


class _FP8LinearFunction(torch.autograd.Function):
    """``x Wᵀ`` with FP8 operands in all three GEMMs (MS-AMP ``_FP8GemmFunction``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, meta: FP8LinearMeta,
                record: bool) -> torch.Tensor:
        out_features, in_features = weight.shape
        x2 = x.reshape(-1, in_features)  # any leading dims; copies a non-viewable input
        qx, sx = meta.cast("input", x2, record)  # E4M3, delayed
        qw, sw = meta.cast("weight", weight, record)  # E4M3, just-in-time
        out = fp8_gemm(qx, sx, qw.t(), sw, x.dtype, meta.gemm)
        ctx.save_for_backward(qx, qw)
        ctx.scales = (sx, sw)
        ctx.meta = meta
        ctx.x_shape, ctx.x_dtype, ctx.w_dtype = x.shape, x.dtype, weight.dtype
        return out.reshape(*x.shape[:-1], out_features)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        qx, qw = ctx.saved_tensors
        sx, sw = ctx.scales
        meta: FP8LinearMeta = ctx.meta
        g2 = grad_out.reshape(-1, qw.shape[0])
        qg, sg = meta.cast("grad_output", g2)  # E5M2, delayed, clamped before the cast
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = fp8_gemm(qg, sg, qw, sw, ctx.x_dtype, meta.gemm).reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            grad_w = fp8_gemm(qg.t(), sg, qx, sx, torch.float32, meta.gemm)
            if meta.wgrad != "fp32":  # MS-AMP: wgrad cast to E4M3, just-in-time
                q, s = meta.cast("wgrad", grad_w)
                grad_w = dequantize(q, s)
            grad_w = grad_w.to(ctx.w_dtype)
        return grad_x, grad_w, None, None


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               meta: FP8LinearMeta, record: bool = True) -> torch.Tensor:
    """Functional FP8 ``F.linear``: ``weight`` is (out, in); output in ``x.dtype``."""
    for name, t in (("input", x), ("weight", weight)):
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"FP8 linear supports float32, bfloat16 and float16 {name}s, "
                            f"got {t.dtype}")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"input has {x.shape[-1]} features, weight expects {weight.shape[1]}")
    out = _FP8LinearFunction.apply(x, weight, meta, record)
    if bias is not None:
        out = out + bias.to(out.dtype)  # high precision, outside the FP8 GEMM (as MS-AMP)
    return out


class FP8Linear(nn.Module):
    """Drop-in ``nn.Linear`` whose GEMMs run in FP8 (see the module docstring).

    ``weight`` and ``bias`` are ordinary Parameters with ``nn.Linear``'s names and shapes, so
    :meth:`from_linear` can share them with the layer it replaces (optimizers and state_dicts
    keep working). ``weight_layout="in_out"`` stores the weight as (in, out), the layout of
    transformers' GPT-2 ``Conv1D``; the layer then computes ``x W + b``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 scaling: str = "delayed", history_len: int = 16, wgrad: str = "e4m3",
                 gemm: str = "auto", margin: int = 0, weight_layout: str = "out_in",
                 device=None, dtype=None) -> None:
        super().__init__()
        if weight_layout not in ("out_in", "in_out"):
            raise ValueError(f"unknown weight_layout {weight_layout!r}: use 'out_in' or 'in_out'")
        self.in_features = in_features
        self.out_features = out_features
        self.weight_layout = weight_layout
        self.fp8 = FP8LinearMeta(scaling=scaling, history_len=history_len, wgrad=wgrad, gemm=gemm,
                                 margin=margin)
        init = nn.Linear(in_features, out_features, bias, device=device, dtype=dtype)
        weight = init.weight if weight_layout == "out_in" else init.weight.detach().t()
        self.weight = nn.Parameter(weight.contiguous())
        self.bias = init.bias

    @classmethod
    def from_linear(cls, linear: nn.Module, **fp8_options) -> FP8Linear:
        """An FP8Linear that shares ``linear``'s weight and bias Parameters (no copy).

        Accepts ``nn.Linear`` and transformers' ``Conv1D`` (weight stored as (in, out)).
        """
        if isinstance(linear, nn.Linear):
            in_f, out_f, layout = linear.in_features, linear.out_features, "out_in"
        elif type(linear).__name__ == "Conv1D" and hasattr(linear, "nf"):
            in_f, out_f, layout = linear.weight.shape[0], linear.nf, "in_out"
        else:
            raise TypeError(f"cannot convert {type(linear).__name__} to FP8Linear: expected "
                            "nn.Linear or transformers' Conv1D")
        layer = cls(in_f, out_f, bias=False, weight_layout=layout, device="meta", **fp8_options)
        layer.weight = linear.weight  # the same Parameter objects, not copies
        layer.bias = linear.bias
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.weight_layout == "out_in" else self.weight.t()
        return fp8_linear(x, weight, self.bias, self.fp8, record=self.training)

    def fp8_stats(self) -> dict[str, dict]:
        """Per role (input, weight, grad_output, wgrad): overflow/underflow counts and rates,
        casts with any overflow, current scale and amax history."""
        return self.fp8.stats()

    def reset_fp8_stats(self) -> None:
        self.fp8.reset_stats()

    def extra_repr(self) -> str:
        m = self.fp8
        layout = "" if self.weight_layout == "out_in" else ", weight_layout=in_out"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, scaling={m.scaling}, "
                f"history_len={m.history_len}, wgrad={m.wgrad}, gemm={m.gemm}{layout}")

