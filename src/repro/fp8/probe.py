"""Watch real tensors under several FP8 scaling policies during training (FP8-LM App. A.2).

:class:`ScalingProbe` hooks every given linear layer: at each step it casts the layer's input
(E4M3, as an FP8 linear would) and the gradient flowing back into its output (E5M2) under each
policy, just-in-time or delayed with some amax history, and counts overflow and underflow per
(role, policy, step). The model itself trains in full precision; only the counts are FP8.
An optional spike multiplies every tensor of one step by a factor, to show what delayed
scaling does when the amax jumps.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .formats import QuantStats
from .scaling import ScalingState

__all__ = ["ScalingProbe", "DEFAULT_ROLE_FORMATS"]

#: The formats an FP8 linear layer uses: activations E4M3, gradients E5M2.
DEFAULT_ROLE_FORMATS = {"activation": "e4m3", "gradient": "e5m2"}


class ScalingProbe:
    """Counts FP8 overflow/underflow of layer inputs and output gradients per policy and step.

    ``policies`` maps a label to ``(mode, history_len)``, e.g. ``{"just-in-time": ("jit", 1),
    "delayed, h=16": ("delayed", 16)}``. Set :attr:`step` before each training step (a
    ``batch_fn(step)`` is a good place); steps outside ``range(steps)`` are not counted.
    """

    def __init__(self, layers: Mapping[str, torch.nn.Module], steps: int,
                 policies: Mapping[str, tuple[str, int]],
                 role_formats: Mapping[str, str] = DEFAULT_ROLE_FORMATS, *,
                 spike_step: int | None = None, spike_factor: float = 1.0,
                 keep_step: int | None = None) -> None:
        if not layers:
            raise ValueError("ScalingProbe needs at least one layer to watch")
        self.step = 0
        self.steps = steps
        self.policies = dict(policies)
        self.role_formats = dict(role_formats)
        self.spike_step, self.spike_factor = spike_step, spike_factor
        self.keep_step = steps - 1 if keep_step is None else keep_step
        self.states: dict[tuple[str, str, str], ScalingState] = {}
        self.counts = {(role, policy): [QuantStats() for _ in range(steps)]
                       for role in self.role_formats for policy in self.policies}
        self.kept: dict[tuple[str, str], torch.Tensor] = {}  # tensors of `keep_step`
        self.amax: dict[tuple[str, str], list[float]] = {}  # per step, before any spike
        self._handles = [layer.register_forward_hook(self._forward_hook(name))
                         for name, layer in layers.items()]

    def _forward_hook(self, name: str):
        def hook(module, args, output):
            self.cast(name, "activation", args[0])
            if output.requires_grad:
                output.register_hook(lambda grad: self.cast(name, "gradient", grad))
        return hook

    def cast(self, name: str, role: str, x: torch.Tensor) -> None:
        """Record one tensor of ``role`` seen at layer ``name`` under every policy."""
        if not 0 <= self.step < self.steps:
            return
        x = x.detach().float()
        self.amax.setdefault((name, role), []).append(float(x.abs().max()))
        if self.step == self.spike_step:
            x = x * self.spike_factor
        if self.step == self.keep_step:
            self.kept[name, role] = x
        for policy, (mode, history) in self.policies.items():
            key = (name, role, policy)
            if key not in self.states:
                self.states[key] = ScalingState(self.role_formats[role], mode, history)
            state = self.states[key]
            state.stats = self.counts[role, policy][self.step]  # count into this step's bucket
            state.cast(x)

    def fraction(self, role: str, policy: str, kind: str) -> list[float]:
        """Per-step ``kind`` rate (``"overflow"`` or ``"underflow"``) of ``role`` under
        ``policy``."""
        if kind not in ("overflow", "underflow"):
            raise ValueError(f"kind must be 'overflow' or 'underflow', got {kind!r}")
        return [getattr(s, f"{kind}_rate") for s in self.counts[role, policy]]

    def remove(self) -> None:
        """Detach the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
