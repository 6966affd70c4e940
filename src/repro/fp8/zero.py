"""FP8 ZeRO: whole-tensor partition of scaled tensors across ranks (FP8-LM §2.3, Algorithm 1).

An FP8 tensor is only meaningful together with its scale, so FP8-LM does not cut the flat
parameter buffer into equal contiguous shards (ZeRO's default, which slices tensors and
then needs one scale per slice and an amax agreement across the slices' owners). Algorithm 1
instead keeps tensors whole:

1. sort the tensors by size, descending;
2. give each tensor (with its scale) to the rank holding the fewest bytes so far.

:func:`partition_greedy` is Algorithm 1 (ties: the earlier tensor first, the lower rank first;
MS-AMP breaks size ties by ``index mod P``); :func:`partition_contiguous` is the baseline;
:func:`partition_report` compares them.

Sizes are in any unit (elements or bytes); contiguous shards cut at that unit's granularity.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .tensor import ScaledTensor

__all__ = ["partition_greedy", "partition_contiguous", "partition_report", "PartitionReport",
           "tensor_sizes", "meta_gpt"]

Sizes = Mapping[Hashable, Any] | Sequence[int]


def _check_world_size(world_size: Any) -> int:
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    return world_size


def tensor_sizes(sizes: Sizes) -> dict[Hashable, int]:
    """Normalise sizes to ``{name: int}``.

    Accepts a mapping of name → int, ``torch.Tensor`` (bytes: element_size × numel) or
    :class:`ScaledTensor` (its ``nbytes``, scale included), or a plain sequence of ints (names
    are the positions 0, 1, …).
    """
    items = sizes.items() if isinstance(sizes, Mapping) else enumerate(sizes)
    out: dict[Hashable, int] = {}
    for name, size in items:
        if isinstance(size, ScaledTensor):
            size = size.nbytes
        elif isinstance(size, torch.Tensor):
            size = size.element_size() * size.numel()
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size of {name!r} must be a non-negative integer, got {size!r}")
        out[name] = size
    return out


def partition_greedy(sizes: Sizes, world_size: int) -> list[list[Hashable]]:
    """Algorithm 1: each whole tensor to the least-loaded rank, largest tensors first.

    Returns one list of names per rank, in assignment order.
    """
    world_size = _check_world_size(world_size)
    table = tensor_sizes(sizes)
    order = sorted(table, key=lambda name: -table[name])  # stable: ties keep input order
    loads = [0] * world_size
    parts: list[list[Hashable]] = [[] for _ in range(world_size)]
    for name in order:
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        parts[rank].append(name)
        loads[rank] += table[name]
    return parts


def partition_contiguous(
    sizes: Sizes, world_size: int, *, split_tensors: bool = True, pad: bool = True
) -> list[list[tuple[Hashable, int, int]]]:
    """The ZeRO baseline: flatten in the given order, cut into ``world_size`` equal shards.

    Returns, per rank, ``(name, start, stop)`` ranges inside each tensor it holds. Each shard
    has ceil(total / N) units; with ``pad=True`` the flat buffer is padded to N × that (as
    ZeRO does; :func:`partition_report` gives the padding), with ``pad=False`` a total that
    ``world_size`` does not divide is an error.

    ``split_tensors=False`` keeps tensors whole: each goes, entire, to the rank whose shard
    contains the tensor's first unit (the contiguous layout without cutting).
    """
    world_size = _check_world_size(world_size)
    table = tensor_sizes(sizes)
    total = sum(table.values())
    if not pad and total % world_size:
        raise ValueError(f"total size {total} is not divisible by world_size {world_size}; "
                         "pass pad=True to pad the flat buffer as ZeRO does")
    shard = max(math.ceil(total / world_size), 1)
    parts: list[list[tuple[Hashable, int, int]]] = [[] for _ in range(world_size)]
    offset = 0
    for name, size in table.items():
        if not split_tensors or size == 0:
            rank = min(offset // shard, world_size - 1)
            parts[rank].append((name, 0, size))
        else:
            start = 0
            while start < size:
                rank = (offset + start) // shard
                stop = min(size, (rank + 1) * shard - offset)
                parts[rank].append((name, start, stop))
                start = stop
        offset += size
    return parts


@dataclass
class PartitionReport:
    """Per-rank load of one partition and the scales it makes travel.

    ``rank_bytes`` includes ``scale_bytes`` for every tensor or slice a rank holds (and the
    padding of a padded contiguous buffer). ``scales_communicated`` counts scale scalars that
    must be exchanged: one per tensor for whole-tensor schemes, one per slice when tensors
    are cut (plus an amax agreement for every cut tensor).
    """

    scheme: str
    world_size: int
    rank_bytes: list[int]
    num_tensors: int
    tensors_cut: int
    scales_communicated: int
    padding: int = 0

    @property
    def max_bytes(self) -> int:
        return max(self.rank_bytes)

    @property
    def min_bytes(self) -> int:
        return min(self.rank_bytes)

    @property
    def mean_bytes(self) -> float:
        return sum(self.rank_bytes) / len(self.rank_bytes)

    @property
    def imbalance(self) -> float:
        """max / mean of the per-rank bytes (1.0 = perfectly balanced)."""
        mean = self.mean_bytes
        return self.max_bytes / mean if mean > 0 else 1.0

    def as_row(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "N": self.world_size, "max": self.max_bytes,
                "min": self.min_bytes, "imbalance": self.imbalance,
                "tensors_cut": self.tensors_cut, "scales": self.scales_communicated,
                "padding": self.padding}


def partition_report(sizes: Sizes, world_size: int, scheme: str = "greedy", *,
                     scale_bytes: int = 0) -> PartitionReport:
    """Loads of ``scheme`` in {"greedy", "contiguous", "contiguous_whole"}.

    ``scale_bytes`` (e.g. 4 for an fp32 scale) is added per tensor (per slice when cut).
    """
    table = tensor_sizes(sizes)
    world_size = _check_world_size(world_size)
    if scheme == "greedy":
        parts = partition_greedy(table, world_size)
        loads = [sum(table[n] + scale_bytes for n in names) for names in parts]
        return PartitionReport(scheme, world_size, loads, len(table), 0, len(table))
    if scheme not in ("contiguous", "contiguous_whole"):
        raise ValueError(f"unknown partition scheme {scheme!r}: choose 'greedy', 'contiguous' "
                         "or 'contiguous_whole'")
    split = scheme == "contiguous"
    slices = partition_contiguous(table, world_size, split_tensors=split, pad=True)
    loads = [sum(stop - start + scale_bytes for _, start, stop in part) for part in slices]
    padding = 0
    if split:
        shard = max(math.ceil(sum(table.values()) / world_size), 1)
        padding = shard * world_size - sum(table.values())
        # the padded tail lives on the last ranks: each rank allocates a full shard
        used = [sum(stop - start for _, start, stop in part) for part in slices]
        loads = [load + (shard - u) for load, u in zip(loads, used, strict=True)]
    holders: dict[Hashable, int] = {}
    for part in slices:
        for name, _, _ in part:
            holders[name] = holders.get(name, 0) + 1
    cut = sum(1 for c in holders.values() if c > 1)
    return PartitionReport(scheme, world_size, loads, len(table), cut,
                           sum(holders.values()), padding)


def meta_gpt(model: str = "125m", vocab_size: int = 50257, seq_len: int | None = None):
    """The trainer's GPT (:data:`repro.lm.train_gpt.MODELS`, Table 1 sizes: ``"125m"``,
    ``"7b"``, ``"13b"``, ``"175b"``) built on the ``meta`` device: every parameter has its
    shape and dtype but no storage, so a 175B model costs nothing to partition."""
    from repro.lm.train_gpt import MODELS, build_model

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: choose one of {sorted(MODELS)}")
    return build_model(MODELS[model], vocab_size, seq_len=seq_len, device="meta")
