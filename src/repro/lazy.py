"""Lazy exports for subpackages: ``import repro.clip`` stays cheap (no torch, no open_clip)
and ``repro.clip.create_model`` imports its submodule on first use.

    _EXPORTS = {"create_model": "models", "zero_shot_accuracy": "evaluate"}
    __all__ = sorted(_EXPORTS)
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``: a name in ``exports``
    (name → submodule) is imported from its submodule on first access and cached in
    ``namespace`` (the package's ``globals()``), so later look-ups skip ``__getattr__``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
