"""FP8 ZeRO whole-tensor partition (FP8-LM §2.3, Algorithm 1)."""

from __future__ import annotations

import random

import pytest
import torch

from repro.fp8.tensor import ScaledTensor
from repro.fp8.zero import partition_contiguous, partition_greedy, partition_report, tensor_sizes

HAND = {"a": 10, "b": 7, "c": 5, "d": 3, "e": 3, "f": 2}


def gpt_block_sizes(layers: int = 12, d: int = 768, vocab: int = 50257) -> dict[str, int]:
    """Parameter sizes of a GPT-125M-like model (shapes only)."""
    sizes = {"wte": vocab * d, "wpe": 2048 * d}
    for i in range(layers):
        sizes |= {f"h{i}.ln1": d, f"h{i}.qkv": 3 * d * d, f"h{i}.proj": d * d,
                  f"h{i}.ln2": d, f"h{i}.fc": 4 * d * d, f"h{i}.fc_out": 4 * d * d}
    sizes["ln_f"] = d
    return sizes


def test_greedy_partition_of_hand_example():
    # by hand: 10→r0 (tie, lower rank), 7→r1, 5→r1 (7<10), 3→r0 (10<12), 3→r1 (12<13),
    # 2→r0 (13<15): r0 = a, d, f = 15; r1 = b, c, e = 15
    assert partition_greedy(HAND, 2) == [["a", "d", "f"], ["b", "c", "e"]]
    assert partition_report(HAND, 2).rank_bytes == [15, 15]


@pytest.mark.parametrize("world_size", [1, 2, 3, 7, 64])
def test_greedy_assigns_every_tensor_exactly_once(world_size):
    rng = random.Random(world_size)
    sizes = {f"t{i}": rng.randint(0, 10_000) for i in range(50)}
    parts = partition_greedy(sizes, world_size)
    assert len(parts) == world_size
    assigned = [name for part in parts for name in part]
    assert sorted(assigned) == sorted(sizes)


def test_greedy_load_never_exceeds_mean_plus_largest_tensor():
    # the classic list-scheduling bound: max load ≤ total/N + largest
    sizes = gpt_block_sizes()
    for n in (2, 4, 8, 16):
        report = partition_report(sizes, n)
        assert report.max_bytes <= sum(sizes.values()) / n + max(sizes.values())


def gpt_linear_sizes(layers: int = 12, d: int = 768) -> dict[str, int]:
    """Only the FP8 Linear weights (MS-AMP partitions these; the rest goes through plain ZeRO)."""
    return {k: v for k, v in gpt_block_sizes(layers, d).items()
            if k.split(".")[-1] in ("qkv", "proj", "fc", "fc_out")}


@pytest.mark.parametrize("world_size", [2, 4, 8])
@pytest.mark.parametrize("sizes", [HAND, gpt_block_sizes(), gpt_linear_sizes()],
                         ids=["hand", "gpt125m", "gpt125m_linears"])
def test_greedy_imbalance_no_worse_than_contiguous_with_whole_tensors(sizes, world_size):
    greedy = partition_report(sizes, world_size, "greedy")
    whole = partition_report(sizes, world_size, "contiguous_whole")
    assert greedy.imbalance <= whole.imbalance
    assert greedy.tensors_cut == whole.tensors_cut == 0
    assert greedy.scales_communicated == len(sizes)


def test_greedy_balances_gpt_linear_weights_where_whole_contiguous_does_not():
    sizes = gpt_linear_sizes()  # 48 tensors of 0.6M–2.4M entries
    greedy = partition_report(sizes, 8, scale_bytes=4)
    assert greedy.imbalance < 1.001
    assert partition_report(sizes, 8, "contiguous_whole", scale_bytes=4).imbalance > 1.1
    split = partition_report(sizes, 8, "contiguous", scale_bytes=4)
    assert split.tensors_cut > 0 and split.scales_communicated > greedy.scales_communicated


def test_contiguous_split_of_hand_example_cuts_one_tensor():
    # total 30 over 2 ranks: shards [0, 15) and [15, 30); "b" occupies [10, 17)
    parts = partition_contiguous(HAND, 2)
    assert parts[0] == [("a", 0, 10), ("b", 0, 5)]
    assert parts[1] == [("b", 5, 7), ("c", 0, 5), ("d", 0, 3), ("e", 0, 3), ("f", 0, 2)]
    report = partition_report(HAND, 2, "contiguous")
    assert report.tensors_cut == 1
    assert report.scales_communicated == 7  # one per slice: 6 tensors + 1 extra slice
    assert report.imbalance == 1.0


def test_contiguous_split_pads_a_total_the_world_size_does_not_divide():
    report = partition_report(HAND, 4, "contiguous")  # 30 → 4 shards of 8, 2 units padding
    assert report.padding == 2
    assert report.rank_bytes == [8, 8, 8, 8]
    with pytest.raises(ValueError, match="not divisible by world_size 4.*pad=True"):
        partition_contiguous(HAND, 4, pad=False)


def test_scale_bytes_travel_with_each_tensor_or_slice():
    greedy = partition_report(HAND, 2, scale_bytes=4)
    assert greedy.rank_bytes == [15 + 3 * 4, 15 + 3 * 4]
    split = partition_report(HAND, 2, "contiguous", scale_bytes=4)
    assert split.rank_bytes == [15 + 2 * 4, 15 + 5 * 4]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_world_size_must_be_a_positive_integer(bad):
    for fn in (partition_greedy, partition_contiguous):
        with pytest.raises(ValueError, match="world_size must be an integer >= 1"):
            fn(HAND, bad)


def test_negative_size_is_rejected():
    with pytest.raises(ValueError, match="non-negative integer"):
        partition_greedy({"a": -1}, 2)


def test_sizes_of_tensors_are_their_bytes_with_scales():
    x = torch.zeros(10, 3)
    sizes = tensor_sizes({"fp32": x, "fp8": ScaledTensor.from_float(x, "e4m3"),
                          "bf16": x.bfloat16()})
    assert sizes == {"fp32": 120, "fp8": 30 + 4, "bf16": 60}
    assert tensor_sizes([5, 6]) == {0: 5, 1: 6}


def test_one_rank_holds_everything():
    assert partition_greedy(HAND, 1) == [["a", "b", "c", "d", "e", "f"]]
    assert partition_report(HAND, 1, "contiguous").tensors_cut == 0
