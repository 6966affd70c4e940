"""FP8 AdamW with precision decoupling (FP8-LM §2.2, Table 6 / Fig. 8; MS-AMP ``LBAdamWBase``).

Each parameter's master weight is **the parameter itself**; the optimizer keeps two
low-precision moments, each a :class:`~repro.fp8.tensor.ScaledTensor` with its own per-tensor
power-of-two scale (MS-AMP's rule, refreshed just-in-time every step):

* master weights in ``master_format`` (paper: FP16 *with* a tensor scale). For an FP8 linear
  whose weight is a stored master (``convert(..., store_master=True)``) the Parameter is that
  FP16 payload and its scale, updated in place (MS-AMP's ``ScalingParameter``); at O3 the
  Parameter is an E4M3 payload and the FP16 master is this optimizer's ``state["master"]``.
  Any other parameter is updated in place and rounded to ``master_format`` (an fp32 tensor
  holding exactly the decoded master: the numerics of the format, the memory of fp32);
* the first moment m in ``exp_avg_format`` (paper: FP8 E4M3, scaled),
* the second moment v in ``exp_avg_sq_format`` (paper: FP16, scaled — MS-AMP's code scales it;
  the paper's text says plain FP16).

Every format is one of ``"fp32"``, ``"fp16"``, ``"bf16"``, ``"e4m3"``, ``"e5m2"`` so the
paper's ablation (FP32 / FP16-scaled / BF16 / FP8 master; FP8 vs FP16 second moment) is one
argument away. A step decodes to fp32, applies the AdamW update in fp32 (decoupled weight decay,
bias correction — the same arithmetic, in the same order, as ``torch.optim.AdamW``'s
single-tensor path) and re-encodes. With every format ``"fp32"`` it is AdamW, bit for bit.
Because nothing shadows the parameters, ``model.load_state_dict`` or any edit of a weight
between steps is what the next step updates.

Gradients: ``p.grad``, or the FP8 ``layer.weight_grad`` of a stored-master linear (its fp32
``.grad`` never exists). ``grad_format`` (default ``None``) re-encodes ``p.grad`` in a storage
format before the update (transiently; nothing is kept).

Overflow: if any gradient holds inf/NaN, or an FP8 layer's cast saw one (its ``found_inf``
flag: the casts saturate, so a bias-free layer's gradient alone would hide it), the whole step
is skipped for every parameter (weights, moments and step counts untouched) and
``skipped_steps`` is incremented. No loss scale is kept: per-tensor scales make one unnecessary
for FP8 storage, and a ``torch.amp.GradScaler`` can still wrap this optimizer from outside.

``fast=True`` runs the same arithmetic with every scale, step count and the skip decision on
the device (0-dim tensors, ``torch.where`` instead of a branch): no host sync per parameter.
Its results equal the reference path's (a test checks it). Departures: ``amsgrad``,
``maximize``, ``foreach`` (the fast path is a per-parameter loop of device ops, not
``torch._foreach_*`` kernels) and ``fused`` are not supported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .tensor import STORAGE_FORMATS, ScaledTensor

__all__ = ["FP8AdamW", "flatten_state_dict", "unflatten_state_dict", "param_groups"]

_FORMAT_KEYS = ("master_format", "exp_avg_format", "exp_avg_sq_format", "grad_format")
_MOMENTS = ("exp_avg", "exp_avg_sq")
_FP32_STATES = dict(master_format="fp32", exp_avg_format="fp32", exp_avg_sq_format="fp32",
                    grad_format=None)


def param_groups(model: nn.Module, weight_decay: float, fp8: bool = False) -> list[dict]:
    """AdamW groups: weight decay on matrices (not on norm gains). With ``fp8``, the FP8 linear
    weights form the first group (the level's formats) and every other parameter keeps fp32
    states (MS-AMP: only FP8 linear weights get low-precision states)."""
    from .linear import FP8Linear

    fp8_ids = {id(m.weight) for m in model.modules() if isinstance(m, FP8Linear)} if fp8 else set()
    fp8_w, matrices, vectors = [], [], []
    for p in model.parameters():  # each Parameter once, the tied embedding included
        if not p.requires_grad:
            continue
        (fp8_w if id(p) in fp8_ids else matrices if p.ndim >= 2 else vectors).append(p)
    extra = _FP32_STATES if fp8 else {}
    groups = [{"params": fp8_w, "weight_decay": weight_decay},
              {"params": matrices, "weight_decay": weight_decay, **extra},
              {"params": vectors, "weight_decay": 0.0, **extra}]
    return [g for g in groups if g["params"]]


def _check_format(key: str, fmt: str | None) -> str | None:
    if fmt is None and key == "grad_format":
        return None
    if not isinstance(fmt, str) or fmt.lower() not in STORAGE_FORMATS:
        raise ValueError(
            f"{key}={fmt!r} is not a storage format: choose one of {list(STORAGE_FORMATS)}"
        )
    return fmt.lower()


def _layer(p: torch.Tensor) -> Any:
    """The FP8Linear whose stored master ``p`` is, or None."""
    layer = getattr(p, "_fp8_layer", None)
    return layer if layer is not None and layer.master is not None else None


def _keep(found: torch.Tensor, old: ScaledTensor, new: ScaledTensor) -> ScaledTensor:
    """``old`` where ``found`` (a skipped step), else ``new``; on the device."""
    from .linear import _where_bits

    scale = new.scale
    if isinstance(scale, torch.Tensor):
        scale = torch.where(found, torch.as_tensor(old.scale, device=scale.device), scale)
    return ScaledTensor(_where_bits(found, old.payload, new.payload), scale, new.fmt)


class FP8AdamW(torch.optim.Optimizer):
    """AdamW whose master weights are the parameters and whose moments live in low-precision
    scaled storage (see the module docstring).

    Args:
        params: parameters or parameter groups (a group may override any format).
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW`` (same defaults).
        master_format: storage of the master weights (paper: ``"fp16"``, scaled).
        exp_avg_format: storage of the first moment m (paper: ``"e4m3"``, scaled).
        exp_avg_sq_format: storage of the second moment v (paper: ``"fp16"``, scaled).
        grad_format: if set, ``p.grad`` is re-encoded in this format before the update.
        fast: keep scales, step counts and the skip decision on the device (no host sync).

    Attributes:
        skipped_steps: steps skipped because a gradient or an FP8 cast held inf/NaN (with
            ``fast=True`` a 0-dim device tensor; ``int(...)`` reads it).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        master_format: str = "fp16",
        exp_avg_format: str = "e4m3",
        exp_avg_sq_format: str = "fp16",
        grad_format: str | None = None,
        fast: bool = False,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}")
        if eps < 0.0:
            raise ValueError(f"invalid eps {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}: each must lie in [0, 1)")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        master_format=master_format, exp_avg_format=exp_avg_format,
                        exp_avg_sq_format=exp_avg_sq_format, grad_format=grad_format)
        for key in _FORMAT_KEYS:
            defaults[key] = _check_format(key, defaults[key])
        self.fast = fast
        self.skipped_steps: Any = 0
        super().__init__(params, defaults)

    # ----------------------------------------------------------------------------------------
    # construction helpers
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_level(cls, params: Iterable[Any], level: Any, **kwargs: Any) -> FP8AdamW:
        """Build the optimizer with the state formats of an MS-AMP level (``"O1"``–``"O3"``).

        ``level`` is a name (looked up with :func:`repro.fp8.levels.get_level`) or any object
        with ``master_format``, ``exp_avg_format``, ``exp_avg_sq_format`` and ``grad_format``.
        The level's ``zero`` flag does not change the optimizer itself (the ZeRO partition is
        :mod:`repro.fp8.zero`). Explicit keyword arguments override the level.
        """
        if isinstance(level, str):
            from .levels import get_level

            level = get_level(level)
        formats = {key: getattr(level, key) for key in _FORMAT_KEYS}
        formats.update(kwargs)
        return cls(params, **formats)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        for key in _FORMAT_KEYS:
            if key in param_group:
                param_group[key] = _check_format(key, param_group[key])
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            self._init_state(p, group)

    def _encode(self, x: torch.Tensor, fmt: str, previous: Any = None) -> ScaledTensor:
        if self.fast:
            prev = previous if isinstance(previous, torch.Tensor) else None
            return ScaledTensor.encode(x, fmt, prev)
        prev = previous if isinstance(previous, float) else 1.0
        return ScaledTensor.from_float(x, fmt, previous_scale=prev)

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Zero moments (eagerly, as MS-AMP); round a plain parameter to its master format."""
        zeros = torch.zeros_like(p, dtype=torch.float32)
        state = self.state[p]
        state["step"] = (torch.zeros((), dtype=torch.float64, device=p.device) if self.fast
                         else 0)
        for name, key in zip(_MOMENTS, ("exp_avg_format", "exp_avg_sq_format"), strict=True):
            state[name] = self._encode(zeros, group[key])
        layer = _layer(p)
        if layer is not None:
            if layer.master == "fp16" and group["master_format"] != "fp16":
                raise ValueError(f"a weight stored as an FP16 master cannot take "
                                 f"master_format={group['master_format']!r}")
            if layer.master == "e4m3":  # O3: the FP16 master lives here, the weight is E4M3
                state["master"] = self._encode(layer.weight_value(), group["master_format"])
            return
        if group["master_format"] != "fp32" or p.dtype != torch.float32:
            with torch.no_grad():  # the model holds the decoded master from the start
                p.copy_(self._encode(p.detach().float(), group["master_format"]).float()
                        .to(p.dtype))

    # ----------------------------------------------------------------------------------------
    # the update
    # ----------------------------------------------------------------------------------------

    def _grad(self, p: torch.Tensor) -> torch.Tensor | None:
        layer = _layer(p)
        if layer is not None:
            return None if layer.weight_grad is None else layer.weight_grad.float()
        if p.grad is None:
            return None
        if p.grad.is_sparse:
            raise RuntimeError("FP8AdamW does not support sparse gradients")
        return p.grad

    def _metas(self) -> list[Any]:
        metas = {}
        for group in self.param_groups:
            for p in group["params"]:
                meta = getattr(p, "_fp8_meta", None)
                if meta is not None:
                    metas[id(meta)] = meta
        return list(metas.values())

    def _found_inf(self, grads: dict[int, torch.Tensor]) -> Any:
        """Reference: a Python bool; fast: a 0-dim bool tensor (no sync)."""
        metas = self._metas()
        if not self.fast:
            if any(bool(m.found_inf) for m in metas):
                return True
            return any(not bool(torch.isfinite(g).all()) for g in grads.values())
        found = None
        for g in grads.values():
            bad = ~torch.isfinite(g).all()
            found = bad if found is None else found | bad
        for m in metas:
            if isinstance(m.found_inf, torch.Tensor):
                found = m.found_inf.clone() if found is None else found | m.found_inf
        return found

    def _clear_found_inf(self) -> None:
        for m in self._metas():
            if isinstance(m.found_inf, torch.Tensor):
                m.found_inf.zero_()
            else:
                m.found_inf = False

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``p.grad`` as torch does, and the FP8 gradients of stored-master layers."""
        super().zero_grad(set_to_none=set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                layer = _layer(p)
                if layer is not None:
                    layer.weight_grad = None

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One AdamW step in fp32 on the decoded states; skipped entirely on inf/NaN."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = {}
        for group in self.param_groups:
            for p in group["params"]:
                g = self._grad(p)
                if g is not None:
                    grads[id(p)] = g
        found = self._found_inf(grads)
        if found is True:
            self.skipped_steps += 1
            self._clear_found_inf()
            return loss
        if found is False:
            found = None
        elif found is None and self.fast:
            found = torch.zeros((), dtype=torch.bool)
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in grads:
                    self._update(p, grads[id(p)], group, found)
        if found is not None:  # fast path: count the skip on the device
            self.skipped_steps = self.skipped_steps + found.long()
        self._clear_found_inf()
        return loss

    def _update(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any],
                found: torch.Tensor | None) -> None:
        lr = group["lr"]
        beta1, beta2 = group["betas"]
        eps, weight_decay = group["eps"], group["weight_decay"]
        state = self.state[p]
        layer = _layer(p)
        grad = grad.float()
        if layer is None and group["grad_format"] is not None:  # transient FP8 gradient
            grad = self._encode(grad, group["grad_format"]).float()
        # decode (fp32 copies; the stored states are only read)
        if layer is None:
            param = p.detach().float().clone()
        elif "master" in state:  # O3
            param = state["master"].float()
        else:
            param = layer.weight_value()
        exp_avg = state["exp_avg"].float()
        exp_avg_sq = state["exp_avg_sq"].float()
        # AdamW in fp32, in torch.optim.AdamW's order of operations
        param.mul_(1 - lr * weight_decay)  # decoupled weight decay
        exp_avg.lerp_(grad, 1 - beta1)  # m = β1 m + (1 - β1) g
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = β2 v + (1-β2) g²
        if found is None:
            state["step"] += 1
            step = state["step"]
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
        else:  # the same arithmetic with a device step count (float64, as Python's)
            step = state["step"] + 1
            bias_correction1 = 1 - torch.pow(beta1, step)
            bias_correction2 = 1 - torch.pow(beta2, step)
            neg_step_size = (-lr / bias_correction1).float()
            denom = (exp_avg_sq.sqrt() / bias_correction2.sqrt().float()).add_(eps)
            param.add_(exp_avg * neg_step_size / denom)
            state["step"] = torch.where(found, state["step"], step)
            # a skipped step keeps every stored payload and scale as it was (bytes, not values)
            for name, value in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
                state[name] = _keep(found, state[name],
                                    self._encode(value, state[name].fmt, state[name].scale))
            if layer is None:
                if group["master_format"] != "fp32":
                    param = self._encode(param, group["master_format"]).float()
                p.copy_(torch.where(found, p, param.to(p.dtype)))
            else:
                if "master" in state:
                    state["master"] = _keep(found, state["master"], self._encode(
                        param, state["master"].fmt, state["master"].scale))
                    param = state["master"].float()
                layer.set_weight_value(param, keep=found)
            return
        # re-encode with fresh just-in-time power-of-two scales
        for name, value in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
            old_state = state[name]
            state[name] = self._encode(value, old_state.fmt, old_state.scale)
        if layer is None:
            if group["master_format"] != "fp32":
                param = self._encode(param, group["master_format"]).float()
            p.copy_(param.to(p.dtype))
        else:
            if "master" in state:
                state["master"] = self._encode(param, state["master"].fmt, state["master"].scale)
                param = state["master"].float()
            layer.set_weight_value(param)

    # ----------------------------------------------------------------------------------------
    # accounting
    # ----------------------------------------------------------------------------------------

    def state_bytes_by_component(self) -> dict[str, int]:
        """Bytes of the live tensors per role: ``master`` (the parameter itself, or O3's FP16
        master), ``weight`` (O3's E4M3 parameter), ``grad`` (``p.grad`` or the FP8 gradient of
        a stored master), ``exp_avg``, ``exp_avg_sq``; + 4 per stored fp32 scale."""
        out = {"master": 0, "weight": 0, "grad": 0, "exp_avg": 0, "exp_avg_sq": 0}
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                layer = _layer(p)
                own = p.element_size() * p.numel() + (4 if layer is not None else 0)
                if "master" in st:
                    out["master"] += st["master"].nbytes
                    out["weight"] += own
                else:
                    out["master"] += own
                if layer is not None and layer.weight_grad is not None:
                    out["grad"] += layer.weight_grad.nbytes
                elif p.grad is not None:
                    out["grad"] += p.grad.element_size() * p.grad.numel()
                for name in _MOMENTS:
                    out[name] += st[name].nbytes
        return out

    def state_bytes(self) -> int:
        """Total of :meth:`state_bytes_by_component`."""
        return sum(self.state_bytes_by_component().values())

    # ----------------------------------------------------------------------------------------
    # checkpoints
    # ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Torch-style state dict whose per-parameter values are plain tensors only.

        ``state[i]`` holds ``step`` (int64) and ``{exp_avg,exp_avg_sq}.payload`` (float8
        payloads viewed as uint8) and ``.scale`` (float64), plus ``master.*`` for an O3 weight;
        ``param_groups`` hold the hyper-parameters and formats. The master weights are the
        model's own parameters (in its ``state_dict``). :func:`flatten_state_dict` turns this
        into a flat safetensors-ready dict plus string metadata.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state: dict[int, dict[str, torch.Tensor]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                entry = {"step": torch.tensor(int(st["step"]), dtype=torch.int64)}
                for name in (*_MOMENTS, "master"):
                    if name in st:
                        entry.update(st[name].to_state(name))
                state[index[id(p)]] = entry
        return {"state": state, "param_groups": groups, "skipped_steps": int(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore moments, step counts and hyper-parameters. The weights come from the model's
        own ``state_dict``; a ``master`` entry (O3, or a checkpoint of the earlier layout that
        kept a shadow master) is decoded into the parameter."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer {len(self.param_groups)}")
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError("a parameter group's size differs from the state dict's")
        saved_state = state_dict["state"]
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if key == "betas" else value
            for key in _FORMAT_KEYS:
                group[key] = _check_format(key, group[key])
            for i, p in zip(saved["params"], group["params"], strict=True):
                entry = saved_state[i] if i in saved_state else saved_state[str(i)]
                step = int(entry["step"])
                st: dict[str, Any] = {"step": (torch.tensor(float(step), dtype=torch.float64,
                                                            device=p.device)
                                               if self.fast else step)}
                for name, key in (("exp_avg", "exp_avg_format"),
                                  ("exp_avg_sq", "exp_avg_sq_format"),
                                  ("master", "master_format")):
                    if f"{name}.payload" not in entry:
                        continue
                    value = ScaledTensor.from_state(entry, name, group[key])
                    if value.shape != p.shape:
                        raise ValueError(f"saved {name} has shape {tuple(value.shape)}, "
                                         f"parameter {tuple(p.shape)}")
                    value.payload = value.payload.to(p.device)
                    if self.fast and value.fmt not in ("fp32", "bf16"):
                        value.scale = torch.tensor(value.scale, dtype=torch.float32,
                                                   device=p.device)
                    st[name] = value
                layer = _layer(p)
                master = st.get("master")
                if master is not None and not (layer is not None and layer.master == "e4m3"):
                    del st["master"]  # the earlier layout's shadow: write it into the weight
                    with torch.no_grad():
                        if layer is None:
                            p.copy_(master.float().to(p.dtype))
                        else:
                            layer.set_weight_value(master.float())
                elif master is not None:
                    layer.set_weight_value(master.float())
                self.state[p] = st
        skipped = int(state_dict.get("skipped_steps", 0))
        self.skipped_steps = torch.tensor(skipped) if self.fast else skipped


def flatten_state_dict(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor],
                                                            dict[str, str]]:
    """Split an :class:`FP8AdamW` state dict into (flat tensors, string metadata).

    The pair goes straight to ``safetensors.torch.save_file(tensors, path, metadata)``.
    """
    tensors = {f"state.{i}.{name}": t.contiguous()
               for i, entry in state_dict["state"].items() for name, t in entry.items()}
    metadata = {"param_groups": json.dumps(state_dict["param_groups"]),
                "skipped_steps": str(state_dict.get("skipped_steps", 0))}
    return tensors, metadata


def unflatten_state_dict(tensors: dict[str, torch.Tensor],
                         metadata: dict[str, str]) -> dict[str, Any]:
    """Inverse of :func:`flatten_state_dict`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = t
    groups = json.loads(metadata["param_groups"])
    for g in groups:
        g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups,
            "skipped_steps": int(metadata.get("skipped_steps", 0))}
