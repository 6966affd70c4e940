"""Bytes per parameter of the training state (FP8-LM §2.2, §3; Table 5), two ways.

:func:`held_bytes` counts what a training process *holds*: every live tensor of a model and
its optimizer, each storage once (the measurement). :func:`training_state_bytes` is the paper's
*accounting* of a level's layout (what follows), for models too large to build or for ZeRO
over ranks one process cannot be; notebook 03 shows both side by side.

For every parameter the state of a level is *built* — one tensor per role in its storage dtype
(``float8_e4m3fn``/``float8_e5m2`` 1 byte, fp16/bf16 2, fp32 4) wrapped in a
:class:`~repro.fp8.tensor.ScaledTensor` — and the bytes are summed as element_size × numel,
plus 4 bytes for every stored fp32 scale (FP8 and scaled-FP16 tensors). Nothing comes from a
formula; the paper's figures are the check:

=========  =========================================================  ===================
level      weight / master / grad / m / v                             bytes per parameter
=========  =========================================================  ===================
fp32       – / fp32 / fp32 / fp32 / fp32 (AdamW)                      16
bf16       bf16 / fp32 / fp32 / fp32 / fp32 (Megatron-style)          18 (paper counts 16)
O1         – / fp16+scale / e4m3 / fp32 / fp32                        11
O2         – / fp16+scale / e4m3 / e4m3 / fp16+scale                  6
O3         e4m3 (replicated) / fp16 / e4m3 / e4m3 / fp16, ZeRO over N  1 + 6/N per rank
=========  =========================================================  ===================

"–" means the master doubles as the model weight (MS-AMP at O1/O2). The FP8 working copy
used by the GEMMs is excluded at O1/O2, as in the paper (``include_fp8_weight_copy=True``
adds it). ``scope="all"`` gives every parameter the level's formats ("all-FP8 states");
``scope="hybrid"`` does so only for Linear weights and keeps every other parameter
(embeddings, norms, biases) in fp32 with fp32 Adam states (16 B), as MS-AMP does. Under ZeRO
(O3) the FP8 states are split with Algorithm 1 (:func:`repro.fp8.zero.partition_greedy`), the
fp32 states of the other parameters evenly, and the model weights stay replicated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .tensor import ScaledTensor
from .zero import partition_greedy

__all__ = ["StateLayout", "LAYOUTS", "PAPER_BYTES_PER_PARAM", "TrainingStateBytes",
           "training_state_bytes", "bytes_per_param_table", "fp8_linear_weights", "HeldBytes",
           "held_bytes"]

_DTYPES = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2, "fp16": torch.float16,
           "bf16": torch.bfloat16, "fp32": torch.float32}
_ROLES = ("weight", "master", "grad", "exp_avg", "exp_avg_sq")


@dataclass(frozen=True)
class StateLayout:
    """Storage formats of one parameter's training state.

    ``weight_format`` is a separate model-weight copy (bf16 for Megatron, E4M3 for O3);
    ``None`` means the master is the weight. ``zero`` partitions master/grad/m/v over ranks.
    """

    name: str
    master_format: str
    grad_format: str
    exp_avg_format: str
    exp_avg_sq_format: str
    weight_format: str | None = None
    zero: bool = False

    def formats(self) -> dict[str, str | None]:
        return {"weight": self.weight_format, "master": self.master_format,
                "grad": self.grad_format, "exp_avg": self.exp_avg_format,
                "exp_avg_sq": self.exp_avg_sq_format}

    @property
    def uses_fp8(self) -> bool:
        return any(f in ("e4m3", "e5m2") for f in self.formats().values())


LAYOUTS: dict[str, StateLayout] = {
    "fp32": StateLayout("fp32", "fp32", "fp32", "fp32", "fp32"),
    "bf16": StateLayout("bf16", "fp32", "fp32", "fp32", "fp32", weight_format="bf16"),
    "O1": StateLayout("O1", "fp16", "e4m3", "fp32", "fp32"),
    "O2": StateLayout("O2", "fp16", "e4m3", "e4m3", "fp16"),
    "O3": StateLayout("O3", "fp16", "e4m3", "e4m3", "fp16", weight_format="e4m3", zero=True),
}
PAPER_BYTES_PER_PARAM = {"fp32": "16", "bf16": "16 (paper) / 18 (Megatron)", "O1": "11",
                         "O2": "6", "O3": "1 + 6/N"}
_FP32_ADAM = LAYOUTS["fp32"]


def _layout(level: Any) -> StateLayout:
    if isinstance(level, StateLayout):
        return level
    if isinstance(level, str):
        key = level.upper() if level.lower().startswith("o") else level.lower()
        if key not in LAYOUTS:
            raise ValueError(f"unknown level {level!r}: choose one of {list(LAYOUTS)} or pass "
                             "a StateLayout / FP8Level")
        return LAYOUTS[key]
    try:  # an FP8Level from repro.fp8.levels, or anything with the same fields
        zero = bool(getattr(level, "zero", False))
        weight = getattr(level, "weight_format", "e4m3" if zero else None)
        if weight == level.master_format and not zero:
            weight = None  # O1/O2: the FP16-scaled weight *is* the master, held once
        return StateLayout(
            name=str(getattr(level, "name", type(level).__name__)),
            master_format=level.master_format, grad_format=level.grad_format,
            exp_avg_format=level.exp_avg_format, exp_avg_sq_format=level.exp_avg_sq_format,
            weight_format=weight, zero=zero)
    except AttributeError as err:
        raise TypeError(f"cannot read a state layout from {level!r}: {err}") from None


def fp8_linear_weights(model: nn.Module) -> set[int]:
    """ids of the weights of ``nn.Linear`` modules (and of classes named ``*Linear``), except a
    weight tied to an embedding (a tied output layer): MS-AMP keeps that one in high
    precision, as the embedding it is."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and id(weight) not in embedded and (
                isinstance(module, nn.Linear) or type(module).__name__.endswith("Linear")):
            out.add(id(weight))
    return out


def _stored(shape: torch.Size, fmt: str, device: str | torch.device) -> ScaledTensor:
    """A real tensor of the storage dtype (payload) plus its scale, as the optimizer keeps it."""
    if fmt not in _DTYPES:
        raise ValueError(f"unknown storage format {fmt!r}: choose one of {list(_DTYPES)}")
    return ScaledTensor(torch.zeros(shape, dtype=_DTYPES[fmt], device=device), 1.0, fmt)


@dataclass
class TrainingStateBytes:
    """Measured training-state bytes of one model at one level.

    ``components`` and ``scale_bytes`` count the whole state once (replicated pieces once);
    ``per_rank_bytes`` is what each of the ``world_size`` ranks holds.
    """

    level: str
    scope: str
    world_size: int
    num_params: int
    components: dict[str, int] = field(default_factory=dict)
    scale_bytes: int = 0
    per_rank_bytes: list[int] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.components.values()) + self.scale_bytes

    @property
    def bytes_per_param(self) -> float:
        """Mean over ranks of the bytes held, per model parameter."""
        return sum(self.per_rank_bytes) / len(self.per_rank_bytes) / self.num_params

    @property
    def max_bytes_per_param(self) -> float:
        """The most loaded rank's bytes per model parameter."""
        return max(self.per_rank_bytes) / self.num_params


def training_state_bytes(
    model: nn.Module,
    level_or_config: Any,
    world_size: int = 1,
    *,
    scope: str = "all",
    include_fp8_weight_copy: bool = False,
    device: str | torch.device = "cpu",
) -> TrainingStateBytes:
    """Build the training state of ``model`` at a level and count its bytes.

    ``level_or_config`` is ``"fp32"``, ``"bf16"``, ``"O1"``, ``"O2"``, ``"O3"``, a
    :class:`StateLayout` or an ``FP8Level`` (a ``weight_format`` equal to ``master_format``
    without ZeRO is one tensor, counted once; without a ``weight_format``, ``zero`` implies an
    E4M3 weight copy).
    ``world_size`` matters only for ZeRO layouts. ``device="meta"`` builds shape-only tensors
    (same dtypes and byte counts) for models too large to allocate.
    """
    if scope not in ("all", "hybrid"):
        raise ValueError(f"scope must be 'all' or 'hybrid', got {scope!r}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    layout = _layout(level_or_config)
    linear = fp8_linear_weights(model)
    params: dict[int, tuple[str, torch.Tensor]] = {}
    for name, p in model.named_parameters():
        params.setdefault(id(p), (name, p))  # tied weights once
    if not params:
        raise ValueError("the model has no parameters")

    components = {role: 0 for role in _ROLES}
    scales = 0
    replicated = 0  # bytes every rank holds
    sharded_whole: dict[str, int] = {}  # FP8 states partitioned tensor by tensor (Alg. 1)
    sharded_even = 0  # fp32 states of the other params, split evenly by standard ZeRO
    num_params = 0
    for pid, (name, p) in params.items():
        num_params += p.numel()
        own = layout if (scope == "all" or pid in linear) else _FP32_ADAM
        formats = own.formats()
        if (include_fp8_weight_copy and own.weight_format is None and own.uses_fp8):
            formats["weight"] = "e4m3"
        partition = layout.zero  # the whole model runs under the level's ZeRO setting
        if partition and own.weight_format is None:
            # a parameter whose master is its weight: the weight stays on every rank,
            # grad/m/v are partitioned
            formats = dict(formats, weight=formats["master"], master=None)
        for role in _ROLES:
            fmt = formats[role]
            if fmt is None:
                continue
            st = _stored(p.shape, fmt, device)
            payload = st.payload.element_size() * st.payload.numel()
            components[role] += payload
            scales += st.nbytes - payload
            if not partition or role == "weight":
                replicated += st.nbytes
            elif own is layout:
                sharded_whole[name] = sharded_whole.get(name, 0) + st.nbytes
            else:
                sharded_even += st.nbytes

    per_rank = [replicated] * world_size
    if sharded_whole:
        for rank, names in enumerate(partition_greedy(sharded_whole, world_size)):
            per_rank[rank] += sum(sharded_whole[n] for n in names)
    for rank in range(world_size):
        per_rank[rank] += sharded_even // world_size + (rank < sharded_even % world_size)
    return TrainingStateBytes(layout.name, scope, world_size, num_params, components, scales,
                              per_rank)


def bytes_per_param_table(
    model: nn.Module,
    world_sizes: tuple[int, ...] = (8, 64),
    *,
    include_fp8_weight_copy: bool = False,
    device: str | torch.device = "cpu",
) -> list[dict[str, Any]]:
    """Rows (level, scope, N, measured bytes/param, max over ranks, paper) for a notebook."""
    rows = []
    cases: list[tuple[str, str, int]] = [("fp32", "all", 1), ("bf16", "all", 1)]
    for level in ("O1", "O2"):
        cases += [(level, "all", 1), (level, "hybrid", 1)]
    for n in world_sizes:
        cases += [("O3", "all", n), ("O3", "hybrid", n)]
    for level, scope, n in cases:
        r = training_state_bytes(model, level, n, scope=scope, device=device,
                                 include_fp8_weight_copy=include_fp8_weight_copy)
        paper = PAPER_BYTES_PER_PARAM[level]
        if level == "O3":
            paper = f"1 + 6/{n} = {1 + 6 / n:.3g}"
        rows.append({"level": level, "scope": scope, "world_size": n,
                     "bytes_per_param": r.bytes_per_param,
                     "max_bytes_per_param": r.max_bytes_per_param, "paper": paper})
    return rows


# ------------------------------------------------------------------------ bytes really held
@dataclass
class HeldBytes:
    """What :func:`held_bytes` counted: bytes per kind, and the share of the FP8 linear
    weights (their parameter, gradient, optimizer state, scales and cached FP8 copies)."""

    num_params: int
    by_kind: dict[str, int] = field(default_factory=dict)
    fp8_linear_params: int = 0
    fp8_linear_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(self.by_kind.values())

    @property
    def bytes_per_param(self) -> float:
        return self.total_bytes / max(self.num_params, 1)

    @property
    def fp8_linear_bytes_per_param(self) -> float:
        return self.fp8_linear_bytes / max(self.fp8_linear_params, 1)


class _StorageCounter:
    """Counts each tensor storage once (views and shared tensors are not counted twice)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()

    def add(self, t: Any) -> int:
        from .tensor import ScaledTensor

        if t is None:
            return 0
        if isinstance(t, ScaledTensor):
            scale = t.scale
            extra = 0
            if not isinstance(scale, torch.Tensor) and t.fmt not in ("bf16", "fp32"):
                extra = 4  # a Python-float scale stands for one fp32 number
            return self.add(t.payload) + (self.add(scale) if isinstance(scale, torch.Tensor)
                                          else extra)
        if isinstance(t, (tuple, list)):
            return sum(self.add(x) for x in t)
        if isinstance(t, dict):
            return sum(self.add(x) for x in t.values())
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return 0
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        if key in self.seen:
            return 0
        self.seen.add(key)
        return storage.nbytes()


def _meta_tensors(meta: Any) -> list[Any]:
    """Device tensors an FP8 layer's scaling keeps (fast path: scales, histories, counters,
    the cached FP8 weight copy). The reference keeps Python floats: nothing to count."""
    out: list[Any] = []
    for state in getattr(meta, "states", {}).values():
        for name in ("scale", "history", "overflow", "underflow", "overflow_casts"):
            value = getattr(state, name, None)
            if isinstance(value, torch.Tensor):
                out.append(value)
    cache = getattr(meta, "_weight_cache", None)
    if cache is not None:
        out.append(cache[1])
    flag = getattr(meta, "found_inf", None)
    if isinstance(flag, torch.Tensor):
        out.append(flag)
    return out


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> HeldBytes:
    """Count every live tensor ``model`` and ``optimizer`` hold, each storage once.

    Kinds: ``weights`` (parameters), ``grads`` (``.grad`` and the FP8 ``weight_grad`` of
    stored-master layers), ``optimizer`` (every tensor in ``optimizer.state``, FP8AdamW's
    scaled moments and O3 masters included), ``fp8_scaling`` (buffers such as
    ``weight_scale``, and what the FP8 layers keep on the device: scales, amax histories,
    cached FP8 weight copies). Nothing is derived from dtypes or a layout: this is the
    measurement that :func:`training_state_bytes` (the paper's accounting) is checked against.
    Activations are not counted (they live only during a step).
    """
    from .linear import FP8Linear

    counter = _StorageCounter()
    kinds = {"weights": 0, "grads": 0, "optimizer": 0, "fp8_scaling": 0}
    params = {id(p): p for p in model.parameters()}
    layers = [m for m in model.modules() if isinstance(m, FP8Linear)]
    fp8_ids = {id(m.weight) for m in layers} & fp8_linear_weights(model)
    fp8_bytes = 0
    state = optimizer.state if optimizer is not None else {}
    layer_of = {id(m.weight): m for m in layers}
    # the FP8 linear weights first, so their share is attributed to them
    for pid in sorted(params, key=lambda i: i not in fp8_ids):
        p = params[pid]
        parts = {"weights": counter.add(p), "grads": counter.add(p.grad),
                 "optimizer": counter.add(dict(state.get(p, {})))}
        layer = layer_of.get(pid)
        if layer is not None:
            parts["grads"] += counter.add(layer.weight_grad)
            parts["fp8_scaling"] = (counter.add(getattr(layer, "weight_scale", None))
                                    + counter.add(_meta_tensors(layer.fp8)))
        for kind, n in parts.items():
            kinds[kind] += n
        if pid in fp8_ids:
            fp8_bytes += sum(parts.values())
    for buffer in model.buffers():
        kinds["fp8_scaling"] += counter.add(buffer)
    return HeldBytes(num_params=sum(p.numel() for p in params.values()), by_kind=kinds,
                     fp8_linear_params=sum(params[i].numel() for i in fp8_ids),
                     fp8_linear_bytes=fp8_bytes)
