"""FP8 AdamW with precision decoupling (FP8-LM §2.2, Table 6 / Fig. 8; MS-AMP ``LBAdamWBase``).

Each parameter keeps three low-precision states, each a :class:`~repro.fp8.tensor.ScaledTensor`
with its own per-tensor power-of-two scale (MS-AMP's rule, refreshed just-in-time every step):

* master weights in ``master_format`` (paper: FP16 *with* a tensor scale),
* the first moment m in ``exp_avg_format`` (paper: FP8 E4M3, scaled),
* the second moment v in ``exp_avg_sq_format`` (paper: FP16, scaled — MS-AMP's code scales it;
  the paper's text says plain FP16).

Every format is one of ``"fp32"``, ``"fp16"``, ``"bf16"``, ``"e4m3"``, ``"e5m2"`` so the
paper's ablation (FP32 / FP16-scaled / BF16 / FP8 master; FP8 vs FP16 second moment) is one
argument away. A step decodes the states to fp32, applies the AdamW update in fp32 (decoupled
weight decay, bias correction — the same arithmetic, in the same order, as
``torch.optim.AdamW``'s single-tensor path), re-encodes, and writes the *decoded* master into
the model parameter. With every format ``"fp32"`` it is AdamW.

Departures and choices:

* No separate FP32 copy exists (as MS-AMP at O1/O2): the FP16-scaled master *is* the weight.
* ``grad_format`` (default ``None``: use ``p.grad`` as it is) re-encodes each gradient in a
  storage format before the update and keeps it, so :meth:`FP8AdamW.state_bytes` counts FP8
  gradients from a real stored tensor. The kept gradient is not part of ``state_dict()``.
* Overflow: if any gradient holds inf/NaN the whole step is skipped for every parameter
  (weights, moments and step counts untouched) and ``skipped_steps`` is incremented. No loss
  scale is kept: per-tensor scales make one unnecessary for FP8 storage, and an fp16/bf16
  loss scaler (``torch.amp.GradScaler``) can still wrap this optimizer from outside.
* ``amsgrad``, ``maximize``, ``foreach`` and ``fused`` are not supported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .tensor import STORAGE_FORMATS, ScaledTensor

__all__ = ["FP8AdamW", "flatten_state_dict", "unflatten_state_dict"]

_FORMAT_KEYS = ("master_format", "exp_avg_format", "exp_avg_sq_format", "grad_format")
_STATE_NAMES = ("master", "exp_avg", "exp_avg_sq")


def _check_format(key: str, fmt: str | None) -> str | None:
    if fmt is None and key == "grad_format":
        return None
    if not isinstance(fmt, str) or fmt.lower() not in STORAGE_FORMATS:
        raise ValueError(
            f"{key}={fmt!r} is not a storage format: choose one of {list(STORAGE_FORMATS)}"
        )
    return fmt.lower()


class FP8AdamW(torch.optim.Optimizer):
    """AdamW whose master weights and moments live in low-precision scaled storage.

    Args:
        params: parameters or parameter groups (a group may override any format).
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW`` (same defaults).
        master_format: storage of the master weights (paper: ``"fp16"``, scaled).
        exp_avg_format: storage of the first moment m (paper: ``"e4m3"``, scaled).
        exp_avg_sq_format: storage of the second moment v (paper: ``"fp16"``, scaled).
        grad_format: if set, gradients are re-encoded in this format before the update and
            kept (counted by :meth:`state_bytes`); ``None`` uses ``p.grad`` unchanged.

    Attributes:
        skipped_steps: number of steps skipped because a gradient held inf/NaN.
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
        self.skipped_steps = 0
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
            from .levels import get_level  # lazy: levels.py is written separately

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

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Encode the master copy from the parameter and zero moments (eagerly, as MS-AMP)."""
        zeros = torch.zeros_like(p, dtype=torch.float32)
        state = self.state[p]
        state["step"] = 0
        state["master"] = ScaledTensor.from_float(p.detach().float(), group["master_format"])
        state["exp_avg"] = ScaledTensor.from_float(zeros, group["exp_avg_format"])
        state["exp_avg_sq"] = ScaledTensor.from_float(zeros, group["exp_avg_sq_format"])
        if group["grad_format"] is not None:
            state["grad"] = ScaledTensor.from_float(zeros, group["grad_format"])
        with torch.no_grad():  # the model sees the decoded master from the start
            p.copy_(state["master"].float().to(p.dtype))

    # ----------------------------------------------------------------------------------------
    # the update
    # ----------------------------------------------------------------------------------------

    def _all_grads_finite(self) -> bool:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    return False
        return True

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One AdamW step in fp32 on the decoded states; skipped entirely on inf/NaN grads."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self._all_grads_finite():
            self.skipped_steps += 1
            return loss
        for group in self.param_groups:
            lr = group["lr"]
            beta1, beta2 = group["betas"]
            eps, weight_decay = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("FP8AdamW does not support sparse gradients")
                state = self.state[p]
                grad = p.grad.float()
                if group["grad_format"] is not None:  # FP8 (or other) stored gradient
                    state["grad"] = ScaledTensor.from_float(
                        grad, group["grad_format"], previous_scale=state["grad"].scale)
                    grad = state["grad"].float()
                # decode (fp32 copies; the stored states are only read)
                param = state["master"].float()
                exp_avg = state["exp_avg"].float()
                exp_avg_sq = state["exp_avg_sq"].float()
                state["step"] += 1
                step = state["step"]
                # AdamW in fp32, in torch.optim.AdamW's order of operations
                param.mul_(1 - lr * weight_decay)  # decoupled weight decay
                exp_avg.lerp_(grad, 1 - beta1)  # m = β1 m + (1 - β1) g
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = β2 v + (1-β2) g²
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
                param.addcdiv_(exp_avg, denom, value=-step_size)
                # re-encode with fresh just-in-time power-of-two scales
                for name, value in (("master", param), ("exp_avg", exp_avg),
                                    ("exp_avg_sq", exp_avg_sq)):
                    old = state[name]
                    state[name] = ScaledTensor.from_float(value, old.fmt,
                                                          previous_scale=old.scale)
                p.copy_(state["master"].float().to(p.dtype))
        return loss

    # ----------------------------------------------------------------------------------------
    # accounting
    # ----------------------------------------------------------------------------------------

    def state_bytes_by_component(self) -> dict[str, int]:
        """Bytes held per state kind (payload element_size × numel + 4 per stored scale)."""
        out = {"master": 0, "exp_avg": 0, "exp_avg_sq": 0, "grad": 0}
        for group in self.param_groups:
            for p in group["params"]:
                for name, st in self.state[p].items():
                    if isinstance(st, ScaledTensor):
                        out[name] += st.nbytes
        return out

    def state_bytes(self) -> int:
        """Measured bytes of master + m + v (+ gradients when ``grad_format`` is set)."""
        return sum(self.state_bytes_by_component().values())

    # ----------------------------------------------------------------------------------------
    # checkpoints
    # ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Torch-style state dict whose per-parameter values are plain tensors only.

        ``state[i]`` holds ``step`` (int64) and ``{master,exp_avg,exp_avg_sq}.payload`` (float8
        payloads viewed as uint8) and ``.scale`` (float64); ``param_groups`` hold the
        hyper-parameters and formats. :func:`flatten_state_dict` turns it into a flat
        safetensors-ready dict plus string metadata.
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
                entry = {"step": torch.tensor(st["step"], dtype=torch.int64)}
                for name in _STATE_NAMES:
                    entry.update(st[name].to_state(name))
                state[index[id(p)]] = entry
        return {"state": state, "param_groups": groups, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore states and hyper-parameters; the decoded master is written into the params."""
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
                st: dict[str, Any] = {"step": int(entry["step"])}
                for name, key in zip(_STATE_NAMES, _FORMAT_KEYS[:3], strict=True):
                    st[name] = ScaledTensor.from_state(entry, name, group[key])
                    if st[name].shape != p.shape:
                        raise ValueError(f"saved {name} has shape {tuple(st[name].shape)}, "
                                         f"parameter {tuple(p.shape)}")
                if group["grad_format"] is not None:
                    st["grad"] = ScaledTensor.from_float(
                        torch.zeros_like(p, dtype=torch.float32), group["grad_format"])
                self.state[p] = st
                with torch.no_grad():
                    p.copy_(st["master"].float().to(p.dtype))
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))


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
