"""Seeding, thread count and device choice, set once at the top of every notebook.

Two CPU cores are shared by everything in CI (the test suite may run two notebooks at once),
so the thread count is always set deliberately: ``$REPRO_NUM_THREADS`` if given, else one
thread under CI or ``repro run``, else torch's default.
"""

from __future__ import annotations

import os
import random


def default_threads() -> int | None:
    env = os.environ.get("REPRO_NUM_THREADS")
    if env:
        return int(env)
    if os.environ.get("CI") or os.environ.get("REPRO_SCALE"):
        return 1
    return None


def resolve_device(device: str = "auto"):
    """``"auto"`` picks CUDA when available, else CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; "
                           "use device='cpu' or 'auto'")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (notebooks only; library code takes explicit generators)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, threads: int | None = None, device: str = "auto"):
    """Seed, set the thread count, pick the device; return the device.

    Call it in the first code cell after the parameters.
    """
    import torch

    threads = threads if threads is not None else default_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    seed_everything(seed)
    dev = resolve_device(device)
    try:  # quiet, fixed-style figures in every notebook
        from .plotting import use_style

        use_style()
    except ImportError:
        pass
    return dev
