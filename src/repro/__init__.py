"""repro: a reproducibility companion for ten 2023-24 papers.

The library behind the book's notebooks. Importing ``repro`` is cheap: subpackages that pull
in torch, timm or transformers load on first use (``repro.vision``, ``repro.fp8``, ...).
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import Any

# tqdm.auto (imported by timm and by our training loop) warns when ipywidgets is missing and
# falls back to text progress bars, which is what we want in executed notebooks
warnings.filterwarnings("ignore", message="IProgress not found")
# torchao (imported by transformers when it is installed) registers Enum constants that torch
# 2.14 now supports natively; torch logs one deprecation line per Enum into every notebook that
# imports transformers. The notice is about torchao's code, not ours: keep it out of the book.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

__version__ = "0.1.0"

#: Where the book's notebooks live online; the Colab install cell uses the tag of this version.
REPO_URL = "https://github.com/repro-companion/repro"
RELEASE_TAG = f"v{__version__}"

_SUBMODULES = {
    "bench", "cache", "cli", "data", "distributed", "fp8", "ledger", "lm", "plotting",
    "runtime", "scales", "train", "vision", "execute", "tables", "progress", "io", "clip",
    "tracking", "diffusion", "resources", "entry", "lazy", "errors",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'repro' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SUBMODULES))
