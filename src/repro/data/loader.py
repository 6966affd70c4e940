"""Deterministic batching: the batch at a step is a pure function of (step, seed).

A training run resumed from a checkpoint at step k therefore sees exactly the batches an
uninterrupted run would have seen from step k on.
"""

from __future__ import annotations

import torch


def batch_indices(n: int, batch_size: int, step: int, seed: int = 0) -> torch.Tensor:
    """Indices of the examples in the batch at ``step`` (epoch-wise shuffling without
    replacement; a new permutation per epoch, seeded by ``seed`` and the epoch number)."""
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} examples)")
    per_epoch = n // batch_size
    epoch, k = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    return perm[k * batch_size:(k + 1) * batch_size]
