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
* in ``eval()`` mode the layer casts with the current scale but records nothing, in the forward
  *and* in a backward run through it (history and statistics are frozen), so a validation pass
  never changes the training trajectory;
* MS-AMP casts just-in-time during the first ``history_len`` steps and again after an overflow;
  ours casts just-in-time only while the history is empty (the very first cast). A test
  (``test_delayed_scaling_departure_from_msamp_warmup``) shows the effect: the two rules differ
  only on casts whose amax exceeds the history's;
* by default (``master=None``) the weight is an ordinary fp32/bf16 ``nn.Parameter``. With
  ``master="fp16"`` (levels O1/O2) the Parameter *is* the FP16 master: an fp16 payload with a
  power-of-two scale in the ``weight_scale`` buffer (MS-AMP's ``ScalingParameter``), updated
  in place by :class:`repro.fp8.FP8AdamW`; with ``master="e4m3"`` (O3) it is an E4M3 payload and
  the FP16 master lives in the optimizer. In both cases the weight gradient never becomes an
  fp32 ``.grad``: the backward casts it to ``wgrad`` (E4M3) and accumulates it into
  ``layer.weight_grad`` (a :class:`~repro.fp8.tensor.ScaledTensor`), which the optimizer reads
  (MS-AMP's post-accumulate hook, done inside the backward);
* overflow is never hidden: a non-finite entry in the input of any cast (the casts saturate,
  so an inf would otherwise vanish) sets ``meta.found_inf`` and makes that GEMM's result NaN,
  so the optimizer's skip-on-overflow (and any ``GradScaler``) fires, also in bias-free layers;
* scales are capped at 2**126 so a tensor of tiny values never gets an fp32-infinite scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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
MASTER_FORMATS = ("fp16", "e4m3")
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
    found_inf: bool = False  # a cast saw inf/NaN since the optimizer last cleared it

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

    def cast(self, role: str, x: torch.Tensor, record: bool = True
             ) -> tuple[torch.Tensor, float, bool]:
        """Quantise ``x`` for ``role``; with ``record`` update history and statistics.

        Returns ``(payload, scale, nonfinite)``: ``nonfinite`` says ``x`` held inf/NaN (the cast
        saturated it), and then also sets :attr:`found_inf`. Same rule as
        :meth:`ScalingState.cast`, plus the scale cap, with the statistics counted by
        :func:`_quant_stats` (no float8 decode).
        """
        state = self.states[role]
        x_amax = amax(x)
        scale = min(state.next_scale(x), _MAX_SCALE)
        q = quantize(x, state.fmt, scale)
        nonfinite = not math.isfinite(x_amax)
        self.found_inf = self.found_inf or nonfinite
        if record:
            stats = _quant_stats(x, state.fmt, scale, x_amax)
            state.stats += stats
            state.scale = scale
            state.history.append(x_amax)
            self.casts[role] += 1
            self.overflow_casts[role] += int(stats.overflow > 0)
        return q, scale, nonfinite

    def cast_weight(self, weight: torch.Tensor, decoded: torch.Tensor, record: bool = True
                    ) -> tuple[torch.Tensor, float, bool]:
        """The weight's cast (``decoded`` is its fp32/bf16 value; ``weight`` the Parameter)."""
        return self.cast("weight", decoded, record)

    def gemm_fn(self, a, a_scale, b, b_scale, out_dtype, gemm, forward=True) -> torch.Tensor:
        return fp8_gemm(a, a_scale, b, b_scale, out_dtype, gemm)

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


def _inverse(scale: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(scale, torch.Tensor):
        return scale.float().reciprocal()  # exact: a power of two
    return torch.tensor(1.0 / scale, dtype=torch.float32, device=device)


def fp8_gemm(a: torch.Tensor, a_scale: float | torch.Tensor, b: torch.Tensor,
             b_scale: float | torch.Tensor, out_dtype: torch.dtype, gemm: str = "auto",
             forward: bool = True) -> torch.Tensor:
    """``(a / a_scale) @ (b / b_scale)`` for float8 payloads ``a`` (M, K) and ``b`` (K, N).

    ``scaled_mm`` calls ``torch._scaled_mm`` with ``a`` row-major, ``b`` column-major (what
    cuBLASLt requires; the CPU kernel accepts either) and the inverse scales as fp32 scalar
    tensors; ``dequant`` multiplies the dequantised fp32 operands and rounds once to
    ``out_dtype``. Both accumulate in fp32.
    """
    gemm = resolve_gemm(gemm, a.device, (a.shape[0], a.shape[1], b.shape[1]))
    if gemm == "scaled_mm":
        inv_a, inv_b = _inverse(a_scale, a.device), _inverse(b_scale, b.device)
        return torch._scaled_mm(a.contiguous(), b.t().contiguous().t(), scale_a=inv_a,
                                scale_b=inv_b, out_dtype=out_dtype)
    if gemm != "dequant":
        raise ValueError(f"unknown gemm {gemm!r}: choose one of {GEMMS}")
    return (dequantize(a, a_scale) @ dequantize(b, b_scale)).to(out_dtype)


def _poison(t: torch.Tensor, nonfinite: Any) -> torch.Tensor:
    """NaN everywhere when a cast saw a non-finite input (``nonfinite``: a bool from the
    reference meta, a 0-dim bool tensor from the fast one, which stays on the device)."""
    if isinstance(nonfinite, torch.Tensor):
        return torch.where(nonfinite, torch.full((), float("nan"), dtype=t.dtype,
                                                 device=t.device), t)
    return t.fill_(float("nan")) if nonfinite else t


def _decode_weight(layer: Any, weight: torch.Tensor) -> torch.Tensor:
    """The weight's value: the Parameter itself, or payload / scale for a stored master."""
    if layer is None or layer.master is None:
        return weight
    return weight.float() / layer.weight_scale


class _FP8LinearFunction(torch.autograd.Function):
    """``x Wᵀ`` with FP8 operands in all three GEMMs (MS-AMP ``_FP8GemmFunction``).

    ``meta`` is an :class:`FP8LinearMeta` (reference: scales are Python floats) or a
    :class:`repro.fp8.fast.FastFP8Meta` (scales stay 0-dim device tensors, no host sync).
    ``layer`` is the :class:`FP8Linear` when its weight is a stored master (then the weight
    gradient is accumulated into ``layer.weight_grad`` in FP8 and autograd gets ``None``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, meta: Any, record: bool,
                layer: Any = None, weight_t: bool = False) -> torch.Tensor:
        value = _decode_weight(layer, weight)
        if weight_t:
            value = value.t()
        out_features, in_features = value.shape
        x2 = x.reshape(-1, in_features)  # any leading dims; copies a non-viewable input
        qx, sx, bad_x = meta.cast("input", x2, record)  # E4M3, delayed
        qw, sw, bad_w = meta.cast_weight(weight, value, record)  # E4M3, just-in-time
        out = meta.gemm_fn(qx, sx, qw.t(), sw, x.dtype, meta.gemm, forward=True)
        out = _poison(_poison(out, bad_x), bad_w)
        ctx.save_for_backward(qx, qw)
        ctx.scales = (sx, sw)
        ctx.meta, ctx.record, ctx.layer, ctx.weight_t = meta, record, layer, weight_t
        ctx.x_shape, ctx.x_dtype, ctx.w_dtype = x.shape, x.dtype, weight.dtype
        return out.reshape(*x.shape[:-1], out_features)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        qx, qw = ctx.saved_tensors
        sx, sw = ctx.scales
        meta = ctx.meta
        g2 = grad_out.reshape(-1, qw.shape[0])
        # E5M2, delayed, clamped before the cast; frozen (record=False) in eval()
        qg, sg, bad_g = meta.cast("grad_output", g2, ctx.record)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = meta.gemm_fn(qg, sg, qw, sw, ctx.x_dtype, meta.gemm, forward=False)
            grad_x = _poison(grad_x, bad_g).reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            grad_w = _poison(meta.gemm_fn(qg.t(), sg, qx, sx, torch.float32, meta.gemm,
                                          forward=False), bad_g)
            if ctx.weight_t:
                grad_w = grad_w.t()
            layer = ctx.layer
            if layer is not None and layer.master is not None:
                layer.accumulate_weight_grad(grad_w, ctx.record)
                grad_w = None
            else:
                if meta.wgrad != "fp32":  # MS-AMP: wgrad cast to E4M3, just-in-time
                    q, s, _ = meta.cast("wgrad", grad_w, ctx.record)
                    grad_w = dequantize(q, s)
                grad_w = grad_w.to(ctx.w_dtype)
        return grad_x, grad_w, None, None, None, None


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               meta: Any, record: bool = True, *, layer: Any = None,
               weight_t: bool = False) -> torch.Tensor:
    """Functional FP8 ``F.linear``: ``weight`` is (out, in) (``weight_t``: stored (in, out));
    output in ``x.dtype``. ``layer`` passes an :class:`FP8Linear` whose weight is a stored
    master (see the module docstring)."""
    stored = layer is not None and layer.master is not None
    for name, t in (("input", x), ("weight", weight)):
        if t.dtype not in SUPPORTED_DTYPES and not (stored and name == "weight"):
            raise TypeError(f"FP8 linear supports float32, bfloat16 and float16 {name}s, "
                            f"got {t.dtype}")
    in_features = weight.shape[0] if weight_t else weight.shape[1]
    if x.shape[-1] != in_features:
        raise ValueError(f"input has {x.shape[-1]} features, weight expects {in_features}")
    out = _FP8LinearFunction.apply(x, weight, meta, record, layer, weight_t)
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
                 fast: bool = False, stats: bool = True, master: str | None = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        if weight_layout not in ("out_in", "in_out"):
            raise ValueError(f"unknown weight_layout {weight_layout!r}: use 'out_in' or 'in_out'")
        self.in_features = in_features
        self.out_features = out_features
        self.weight_layout = weight_layout
        if fast:
            from .fast import FastFP8Meta  # lazy: fast.py imports this module

            self.fp8 = FastFP8Meta(scaling=scaling, history_len=history_len, wgrad=wgrad,
                                   gemm=gemm, margin=margin, stats=stats)
        else:
            self.fp8 = FP8LinearMeta(scaling=scaling, history_len=history_len, wgrad=wgrad,
                                     gemm=gemm, margin=margin)
        init = nn.Linear(in_features, out_features, bias, device=device, dtype=dtype)
        weight = init.weight if weight_layout == "out_in" else init.weight.detach().t()
        self.weight = nn.Parameter(weight.contiguous())
        self.bias = init.bias
        self.master: str | None = None
        self.weight_grad: Any = None  # the FP8 weight gradient of a stored master
        self._link()
        if master is not None:
            self.store_master(master)

    def _link(self) -> None:
        """Let an optimizer find this layer's overflow flag (and stored master) from the
        weight Parameter."""
        self.weight._fp8_meta = self.fp8
        if self.master is not None:
            self.weight._fp8_layer = self

    @classmethod
    def from_linear(cls, linear: nn.Module, **fp8_options) -> FP8Linear:
        """An FP8Linear that shares ``linear``'s weight and bias Parameters (no copy).

        Accepts ``nn.Linear`` and transformers' ``Conv1D`` (weight stored as (in, out)). With
        ``master=...`` the weight is then re-stored as a master (a new Parameter).
        """
        if isinstance(linear, nn.Linear):
            in_f, out_f, layout = linear.in_features, linear.out_features, "out_in"
        elif type(linear).__name__ == "Conv1D" and hasattr(linear, "nf"):
            in_f, out_f, layout = linear.weight.shape[0], linear.nf, "in_out"
        else:
            raise TypeError(f"cannot convert {type(linear).__name__} to FP8Linear: expected "
                            "nn.Linear or transformers' Conv1D")
        master = fp8_options.pop("master", None)
        layer = cls(in_f, out_f, bias=False, weight_layout=layout, device="meta", **fp8_options)
        layer.weight = linear.weight  # the same Parameter objects, not copies
        layer.bias = linear.bias
        layer._link()
        if master is not None:
            layer.store_master(master)
        return layer

    # ------------------------------------------------------------------ stored master weights
    def store_master(self, fmt: str) -> None:
        """Replace the weight Parameter by its stored master: ``"fp16"`` (O1/O2: an fp16
        payload with a power-of-two scale, 2 bytes per weight) or ``"e4m3"`` (O3: an E4M3
        payload; the FP16 master then lives in the optimizer). The scale is the
        ``weight_scale`` buffer. Build the optimizer *after* this call."""
        from .tensor import ScaledTensor

        if fmt not in MASTER_FORMATS:
            raise ValueError(f"unknown master format {fmt!r}: choose one of {MASTER_FORMATS}")
        if self.master is not None:
            raise ValueError(f"the weight is already stored as a {self.master} master")
        stored = ScaledTensor.from_float(self.weight.detach().float(), fmt)
        self.weight = nn.Parameter(stored.payload, requires_grad=self.weight.requires_grad)
        self.register_buffer("weight_scale", torch.tensor(stored.scale, dtype=torch.float32,
                                                          device=stored.payload.device))
        self.master = fmt
        self._link()  # how FP8AdamW finds the scale and the FP8 gradient
        self._register_load_state_dict_pre_hook(_encode_loaded_weight, with_module=True)

    def weight_value(self) -> torch.Tensor:
        """The weight's fp32 value in the stored layout (payload / scale for a master)."""
        if self.master is None:
            return self.weight.detach().float()
        return self.weight.detach().float() / self.weight_scale

    @torch.no_grad()
    def set_weight_value(self, value: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        """Re-encode ``value`` (fp32, stored layout) into the master with a fresh
        just-in-time power-of-two scale (the update FP8AdamW makes in place). ``keep``, a 0-dim
        bool tensor, keeps the old payload and scale where true (a skipped step, no sync)."""
        if hasattr(self.fp8, "_weight_cache"):
            self.fp8._weight_cache = None  # the FP8 copy of the old value is stale: free it
        if self.master is None:
            new = value.to(self.weight.dtype)
            self.weight.copy_(new if keep is None else torch.where(keep, self.weight, new))
            return
        from .tensor import FP16_MAX

        fp_max = FP16_MAX if self.master == "fp16" else 448.0
        scale = _device_scale(value.abs().amax(), fp_max, self.weight_scale)
        payload = (value * scale).clamp(-fp_max, fp_max).to(self.weight.dtype)
        if keep is not None:
            payload = _where_bits(keep, self.weight, payload)
            scale = torch.where(keep, self.weight_scale, scale)
        self.weight.copy_(payload)
        self.weight_scale.copy_(scale)

    def accumulate_weight_grad(self, grad_w: torch.Tensor, record: bool = True) -> None:
        """Add ``grad_w`` (fp32) to ``weight_grad``, kept in ``wgrad`` (E4M3 + scale)."""
        from .tensor import ScaledTensor

        if self.weight_grad is not None:  # gradient accumulation: decode, add, re-encode
            grad_w = grad_w + self.weight_grad.float()
        if self.fp8.wgrad == "fp32":
            self.weight_grad = ScaledTensor(grad_w, 1.0, "fp32")
            return
        q, s, _ = self.fp8.cast("wgrad", grad_w, record)
        self.weight_grad = ScaledTensor(q, s, self.fp8.wgrad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fp8_linear(x, self.weight, self.bias, self.fp8, record=self.training,
                          layer=self if self.master is not None else None,
                          weight_t=self.weight_layout == "in_out")

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
                f"history_len={m.history_len}, wgrad={m.wgrad}, gemm={m.gemm}{layout}"
                + (f", master={self.master}" if self.master else "")
                + (", fast=True" if type(m).__name__ == "FastFP8Meta" else ""))


def _where_bits(condition: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.where`` for any dtype, float8 included (selects the raw bytes)."""
    if a.element_size() == 1:
        return torch.where(condition, a.view(torch.uint8), b.view(torch.uint8)).view(a.dtype)
    return torch.where(condition, a, b)


def _device_scale(amax_value: torch.Tensor, fp_max: float, previous: torch.Tensor
                  ) -> torch.Tensor:
    """:func:`repro.fp8.scaling.power_of_two_scale` on the device (no host sync): the largest
    power of two with amax·s ≤ fp_max (exponent from ``torch.frexp``, exact), capped at
    2**±126; ``previous`` where amax is 0 or not finite."""
    a = amax_value.detach().double()
    ok = torch.isfinite(a) & (a > 0)
    ratio = fp_max / torch.where(ok, a, torch.ones_like(a))
    exponent = (torch.frexp(ratio).exponent - 1).clamp(-126, 126)
    scale = torch.ldexp(torch.ones((), dtype=torch.float32, device=a.device),
                        exponent.to(torch.int32))
    return torch.where(ok, scale, previous.to(torch.float32).reshape(()))


def _encode_loaded_weight(module: FP8Linear, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook of a stored master: a weight given as a value (any dtype
    other than the payload's, e.g. an fp32 checkpoint) is re-encoded with a fresh scale."""
    from .tensor import ScaledTensor

    key = prefix + "weight"
    weight = state_dict.get(key)
    if weight is None or weight.dtype == module.weight.dtype:
        return
    stored = ScaledTensor.from_float(weight.detach().float(), module.master)
    state_dict[key] = stored.payload
    state_dict[prefix + "weight_scale"] = torch.tensor(stored.scale, dtype=torch.float32)

