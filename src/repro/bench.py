"""Timing helpers for benchmarks and the notebooks that report speed.

Speed is measured here and reported in the book; tests never assert on time. Models are
interleaved over several rounds and the median is kept, because a shared 2-core machine is
noisy; the thread count is fixed explicitly (the EfficientViT protocol uses 1 thread).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Timing:
    name: str
    seconds: list[float] = field(default_factory=list)  # per call
    items_per_call: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float:
        """Items per second at the median call time."""
        return self.items_per_call / self.median


def time_call(fn: Callable[[], object], *, warmup: int = 2, repeat: int = 5,
              min_seconds: float = 0.0) -> list[float]:
    """Wall time of each of ``repeat`` calls after ``warmup`` calls (and at least
    ``min_seconds`` of measuring, when given)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def throughput(model, batch_size: int = 16, resolution: int = 224, *, threads: int | None = 1,
               warmup: int = 2, repeat: int = 5, channels: int = 3) -> Timing:
    """Images per second of ``model`` in eval mode under ``torch.inference_mode``."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    model.eval()
    x = torch.randn(batch_size, channels, resolution, resolution,
                    generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        times = time_call(lambda: model(x), warmup=warmup, repeat=repeat)
    return Timing(type(model).__name__, times, batch_size)


def interleaved(fns: dict[str, Callable[[], object]], *, items_per_call: int = 1,
                rounds: int = 3, warmup: int = 1, repeat: int = 3) -> dict[str, Timing]:
    """Time several callables round-robin (``rounds`` × ``repeat`` calls each) so that machine
    noise hits all of them alike; returns one :class:`Timing` per name."""
    out = {name: Timing(name, [], items_per_call) for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            out[name].seconds += time_call(fn, warmup=0, repeat=repeat)
    return out


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain-text table of dict rows (benchmarks print it; the book shows it)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [columns] + [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


#: ATen operator name → group, first matching pattern wins. The last four groups are the
#: memory-bound operations EfficientViT (Sec. 2.1) finds dominating small ViTs on real hardware.
OP_GROUPS: dict[str, str] = {
    "matmul / conv": r"mm|matmul|linear|conv",
    "softmax": r"softmax",
    "normalization": r"norm",
    "reshape / copy": r"view|reshape|permute|transpose|contiguous|copy|clone|cat|split|chunk"
                      r"|unbind|select|slice|flatten|expand|pad|index|stack|squeeze|empty|^t$",
    "element-wise": r".",  # add, mul, relu, gelu, ...
}


def classify_op(op: str, groups: dict[str, str] = OP_GROUPS) -> str:
    """The group of an ATen operator name (with or without the ``aten::`` prefix)."""
    import re

    op = op.removeprefix("aten::")
    return next(g for g, pattern in groups.items() if re.search(pattern, op))


def op_time_by_group(fns: dict[str, Callable[[], object]], groups: dict[str, str] = OP_GROUPS,
                     *, calls: int = 5, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Milliseconds of ATen self time per operator group for each callable: the median over
    ``calls`` profiled calls, taken round-robin so machine noise hits every callable alike."""
    import os

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # the profiler's C++ log lines stay quiet
    import torch

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in fns}
    for _ in range(calls):
        for name, fn in fns.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
                fn()
            totals = dict.fromkeys(groups, 0.0)
            for event in p.key_averages():
                if event.key.startswith("aten::"):
                    totals[classify_op(event.key, groups)] += event.self_cpu_time_total / 1e3
            runs[name].append(totals)
    return {name: {g: statistics.median(r[g] for r in rs) for g in groups}
            for name, rs in runs.items()}
