"""torchao's float8 training as a second FP8 backend (what a user would pick instead of ours).

``torchao.float8.convert_to_float8_training`` swaps ``nn.Linear`` for torchao's
``Float8Linear``: E4M3 inputs and weights, E5M2 output gradients, *dynamic* tensorwise scaling
(a just-in-time scale ``fp_max / amax`` per tensor and call, not rounded to a power of two),
``torch._scaled_mm`` on GPUs with FP8 tensor cores, and ``emulate=True`` (dequantise and
matmul in high precision) everywhere else — the mode its CPU tests and ours use. Its weights,
gradients and optimizer stay those of the model (no FP8 optimizer, no FP8 all-reduce): it
covers FP8-LM's GEMMs (MS-AMP O1 without the FP8 gradients), not O2/O3.

:func:`convert_torchao` keeps :func:`repro.fp8.convert`'s ``skip`` argument and picks
``emulate`` from the device, so the book can run the same model through both backends.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["convert_torchao", "torchao_available"]


def torchao_available() -> bool:
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return False
    return True


def _fp8_tensor_cores() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


def convert_torchao(model: nn.Module, *, skip: Iterable[str] = (), emulate: bool | None = None
                    ) -> nn.Module:
    """Convert ``model``'s linear layers (in place) to torchao's ``Float8Linear``.

    ``skip`` holds qualified module names or name suffixes kept in high precision;
    ``emulate=None`` emulates unless a GPU with FP8 tensor cores (sm ≥ 8.9) is present.
    Raises :class:`ImportError` with the install command when torchao is missing.
    """
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as err:
        raise ImportError("torchao is not installed: pip install torchao (its float8 "
                          "training is the second FP8 backend of this chapter)") from err
    skip = list(skip)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for pattern in skip:
        if not any(n == pattern or n.endswith("." + pattern) for n in names):
            raise ValueError(f"skip pattern {pattern!r} matches no linear layer; linear layers "
                             f"are e.g. {names[:3]}")
    if emulate is None:
        emulate = not _fp8_tensor_cores()

    def keep(module: nn.Module, name: str) -> bool:
        return not any(name == p or name.endswith("." + p) for p in skip)

    config = Float8LinearConfig(emulate=emulate)
    return convert_to_float8_training(model, config=config, module_filter_fn=keep)
