"""On-disk cache for expensive artifacts several notebooks share (a trained teacher, a
generated data set), keyed by name, parameters, seed and library version, so CI does not pay
twice and a stale artifact is never reused.

An entry is a safetensors file written atomically (:func:`repro.io.atomic_save`) with its key
and a content hash (:func:`repro.train.content_sha256`) in its metadata. An entry that cannot
be read, lacks the hash, was written for another key, or whose bytes changed since it was
written is deleted and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from .io import atomic_save

CACHE_FORMAT = "repro-cache-1"


def cache_dir() -> Path:
    return Path(os.environ.get("REPRO_CACHE", Path.home() / ".cache" / "repro" / "artifacts"))


def cache_key(name: str, params: dict) -> str:
    import repro

    blob = json.dumps({"name": name, "params": params, "version": repro.__version__},
                      sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _load_trusted(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The entry's tensors when its format, key and content hash hold; else None."""
    from safetensors import safe_open

    from .train import content_sha256

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # unreadable: truncated, not safetensors, a bad header
        return None
    if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
        return None
    if meta.get("sha256") != content_sha256(tensors, meta):
        return None
    return tensors


def cached_tensors(name: str, params: dict,
                   build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Return ``build()``'s tensors, computing them once per (name, params, version)."""
    from safetensors.torch import save_file

    from .train import content_sha256

    key = cache_key(name, params)
    path = cache_dir() / f"{key}.safetensors"
    if path.exists():
        tensors = _load_trusted(path, key)
        if tensors is not None:
            return tensors
        path.unlink(missing_ok=True)  # a corrupt or altered entry is rebuilt, never trusted
    tensors = build()
    stored = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"format": CACHE_FORMAT, "key": key}
    meta["sha256"] = content_sha256(stored, meta)
    atomic_save(path, lambda tmp: save_file(stored, tmp, metadata=meta))
    return tensors
