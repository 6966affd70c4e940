"""Tiny language-model pieces shared by the book's LLM chapters (FP8-LM, ScalingFilter, Xwin).

* :mod:`repro.lm.data` — a character tokenizer, Python's own documentation as a corpus
  (``pydoc_data.topics``), a train/val split and a seeded, resumable batch sampler;
* :mod:`repro.lm.model` — a tiny Llama (transformers ``LlamaForCausalLM``, random init, no
  download) and its next-token loss.

Names are exported lazily, so ``import repro.lm`` imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CharTokenizer": "data", "pydoc_text": "data", "train_val_split": "data",
    "batch_at": "data",
    "tiny_llama": "model", "lm_loss": "model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
