"""Text data for the tiny language models: a character tokenizer, a corpus, a batch sampler.

The corpus is Python's own documentation (``pydoc_data.topics``, shipped with CPython: about
465k characters of English prose and code, 79 topics), so the LLM chapters run offline. Batches
are a pure function of ``(step, seed)``: a run resumed at step k sees exactly the batches an
uninterrupted run would.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["CharTokenizer", "pydoc_text", "train_val_split", "batch_at"]


class CharTokenizer:
    """One token per character; ids are the positions of the characters in sorted order."""

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("chars must be distinct single characters")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        """The vocabulary of ``text``: its distinct characters, sorted."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - set(self._ids))
            raise ValueError(f"characters not in the vocabulary: {unknown[:10]!r}") from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON, atomically (complete or not at all)."""
        from repro.io import atomic_write_text

        atomic_write_text(path, json.dumps({"type": "char", "chars": self.chars}))

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a CharTokenizer file ({err})") from None
        if (not isinstance(data, dict) or data.get("type") != "char"
                or not isinstance(data.get("chars"), list)):
            raise ValueError(f"{path} is not a CharTokenizer file")
        return cls(data["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def pydoc_text() -> str:
    """Python's documentation topics, concatenated in sorted key order, blank-line separated."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def train_val_split(ids: Sequence[int] | torch.Tensor, frac: float = 0.9):
    """The first ``frac`` of ``ids`` for training, the rest for validation (no shuffling)."""
    if not 0.0 < frac < 1.0:
        raise ValueError(f"frac is the training fraction and must lie in (0, 1), got {frac}")
    n_train = int(len(ids) * frac)
    return ids[:n_train], ids[n_train:]


def batch_at(ids: Sequence[int] | torch.Tensor, step: int, batch_size: int, seq_len: int,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch number ``step``: ``batch_size`` random windows of ``seq_len + 1`` tokens.

    Returns ``(x, y)`` LongTensors of shape (batch_size, seq_len), ``y`` shifted by one. The
    window starts come from ``random.Random(seed * 2**32 + step)``: every (seed, step) pair gets
    its own stream. (A ``torch.Generator`` would not do: its CPU Mersenne Twister keeps only the
    low 32 bits of the seed, so seed 1 would replay seed 0.)
    """
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    if len(ids) <= seq_len:
        raise ValueError(f"need more than seq_len={seq_len} tokens, got {len(ids)}")
    if not (0 <= step < 2**32 and seed >= 0):
        raise ValueError(f"step must lie in [0, 2**32) and seed be >= 0, got {step}, {seed}")
    rng = random.Random(seed * 2**32 + step)
    starts = torch.tensor([rng.randrange(len(ids) - seq_len) for _ in range(batch_size)])
    window = starts[:, None] + torch.arange(seq_len + 1)
    tokens = ids[window]
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
