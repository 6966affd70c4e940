from __future__ import annotations

import pytest
import torch

from repro.bench import classify_op, format_table, interleaved, op_time_by_group


@pytest.mark.parametrize("op,group", [
    ("aten::mm", "matmul / conv"), ("aten::addmm", "matmul / conv"),
    ("aten::convolution", "matmul / conv"), ("aten::_softmax", "softmax"),
    ("aten::native_layer_norm", "normalization"), ("aten::view", "reshape / copy"),
    ("aten::permute", "reshape / copy"), ("aten::t", "reshape / copy"),
    ("aten::add", "element-wise"), ("aten::relu", "element-wise"),
])
def test_operators_fall_into_the_memory_bound_groups_of_the_paper(op, group):
    assert classify_op(op) == group


def test_profile_attributes_a_pure_matmul_to_matmul_and_a_copy_to_copies():
    a = torch.randn(256, 256)
    prof = op_time_by_group({"mm": lambda: a @ a, "copy": lambda: a.t().contiguous()}, calls=2)
    assert prof["mm"]["matmul / conv"] > 0 and prof["mm"]["softmax"] == 0
    assert prof["copy"]["reshape / copy"] > 0 and prof["copy"]["matmul / conv"] == 0


def test_interleaved_timings_count_every_call():
    calls = []
    out = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                      items_per_call=4, rounds=2, warmup=1, repeat=3)
    assert len(out["a"].seconds) == 6 and calls.count("b") == 7
    assert out["a"].throughput == 4 / out["a"].median


def test_format_table_aligns_columns():
    text = format_table([{"model": "m0", "img/s": 1.23456}, {"model": "m5", "img/s": 12.0}])
    lines = text.splitlines()
    assert lines[0].startswith("model") and "1.235" in lines[2] and len(lines) == 4
