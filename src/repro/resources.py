"""Files the library reads that live outside ``src/`` in the repository: each chapter's
``claims.yaml`` and the data manifests.

In a checkout they are read where they are edited (``notebooks/<paper>/claims.yaml``,
``data/manifests/*.yaml``). An installed package (a wheel, Colab, a JupyterHub) carries copies
made at build time (``setup.py``'s build step puts them under ``repro/_resources/``), read
through :mod:`importlib.resources`, so a notebook run alone in an empty folder still shows its
full claims table and ``repro data`` still finds its manifests.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["checkout_root", "claims_files", "manifests_dir", "packaged_dir"]


def checkout_root() -> Path | None:
    """The repository this package was imported from, or None for an installed package."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


def packaged_dir(kind: str) -> Path | None:
    """``repro/_resources/<kind>`` inside an installed package, if it exists."""
    try:
        folder = resources.files("repro") / "_resources" / kind
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        return None
    path = Path(str(folder))
    return path if path.is_dir() else None


def claims_files() -> dict[str, Path]:
    """``{paper folder: claims.yaml path}`` for every chapter: the checkout's, else the
    packaged copies."""
    root = checkout_root()
    if root is not None:
        found = {p.parent.name: p for p in sorted((root / "notebooks").glob("*/claims.yaml"))}
        if found:
            return found
    packaged = packaged_dir("claims")
    if packaged is None:
        return {}
    return {p.stem: p for p in sorted(packaged.glob("*.yaml"))}


def manifests_dir() -> Path:
    """``$REPRO_MANIFESTS``, else the checkout's ``data/manifests``, else the manifests
    packaged with the library, else ``./data/manifests``."""
    env = os.environ.get("REPRO_MANIFESTS")
    if env:
        return Path(env)
    root = checkout_root()
    if root is not None and (root / "data" / "manifests").is_dir():
        return root / "data" / "manifests"
    packaged = packaged_dir("manifests")
    if packaged is not None:
        return packaged
    return Path.cwd() / "data" / "manifests"
