"""On-disk cache for expensive artifacts several notebooks share (a trained teacher, a
generated data set), keyed by name, parameters, seed and library version, so CI does not pay
twice and a stale artifact is never reused."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch


def cache_dir() -> Path:
    return Path(os.environ.get("REPRO_CACHE", Path.home() / ".cache" / "repro" / "artifacts"))


def cache_key(name: str, params: dict) -> str:
    import repro

    blob = json.dumps({"name": name, "params": params, "version": repro.__version__},
                      sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def cached_tensors(name: str, params: dict,
                   build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Return ``build()``'s tensors, computing them once per (name, params, version)."""
    from safetensors.torch import load_file, save_file

    path = cache_dir() / f"{cache_key(name, params)}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))
        except Exception:  # a corrupt cache entry is rebuilt, never trusted
            path.unlink()
    tensors = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)
    return tensors
