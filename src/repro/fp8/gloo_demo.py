"""A real FP8 gradient all-reduce over N local processes on gloo (FP8-LM §2.1, Eqs. 4–6).

The notebooks simulate many ranks in one process
(:func:`repro.fp8.distributed.simulate_all_reduce`); this module runs the library's *real*
collective, :func:`~repro.fp8.distributed.fp8_all_reduce_coalesced`, on separate processes, so
a reader sees the same API a ``torchrun`` job would call::

    result = run_gloo_all_reduce([grads_rank0, grads_rank1], fmt="e4m3", scheme="auto")
    result.fp8[0]["layer.weight"]   # the FP8-averaged gradient as rank 0 received it
    result.error_rows(grads)        # per tensor: error against the fp32 mean

How it runs: every rank's gradients are written to a safetensors file in a temporary folder;
``python -m repro.fp8.gloo_demo worker ...`` is started once per rank (one torch thread each,
a gloo process group on a ``file://`` store in that folder); each worker times a plain fp32
``all_reduce`` of its flattened gradients and the FP8 all-reduce, and writes its results back
as safetensors. The workers need nothing from the caller's globals, so this works from a
notebook, a script or pytest alike. Nothing is unpickled.

gloo has no float8 arithmetic and refuses float8 tensors in every collective, and a uint8
all_reduce adds bytes mod 256, so on gloo the library all-gathers the FP8 payloads *viewed as
uint8* (with the per-tensor scales) and decodes and sums them on every rank; on NCCL with
CUDA tensors the same call sums the payloads natively in FP8. See
:mod:`repro.fp8.distributed`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .distributed import COLLECTIVE_SCHEMES, AutoScaler, fp8_all_reduce_coalesced, snr_db
from .formats import get_format

__all__ = ["GlooAllReduceResult", "run_gloo_all_reduce"]

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class GlooAllReduceResult:
    """What every rank of one :func:`run_gloo_all_reduce` launch returned.

    ``fp8[r]`` and ``fp32[r]`` are rank r's averaged gradients (FP8 all-reduce; fp32
    ``all_reduce`` SUM / N), keyed like the input. Times are medians over the repeats, per
    rank, in milliseconds: wall clock and this process's CPU time, quantisation and decoding
    included for FP8. ``launch_seconds`` is the whole launch, process start-up included.
    """

    world_size: int
    fmt: str
    scheme: str
    accumulate: str
    names: list[str]
    fp8: list[dict[str, torch.Tensor]] = field(repr=False)
    fp32: list[dict[str, torch.Tensor]] = field(repr=False)
    fp8_ms: list[float] = field(default_factory=list)
    fp32_ms: list[float] = field(default_factory=list)
    fp8_cpu_ms: list[float] = field(default_factory=list)
    fp32_cpu_ms: list[float] = field(default_factory=list)
    mu_after: list[float] = field(default_factory=list)
    launch_seconds: float = float("nan")

    @property
    def numel(self) -> int:
        return sum(t.numel() for t in self.fp8[0].values())

    @property
    def fp8_payload_bytes(self) -> int:
        """Bytes of FP8 payload each rank contributes (one byte per entry; scales excluded)."""
        return self.numel

    @property
    def fp32_payload_bytes(self) -> int:
        return 4 * self.numel

    def agree_across_ranks(self) -> bool:
        """True when every rank returned bit-identical tensors (FP8 and fp32)."""
        return all(torch.equal(self.fp8[r][n], self.fp8[0][n])
                   and torch.equal(self.fp32[r][n], self.fp32[0][n])
                   for r in range(1, self.world_size) for n in self.names)

    def error_rows(self, grads_per_rank: Sequence[Mapping[str, torch.Tensor]]
                   ) -> list[dict[str, Any]]:
        """Per tensor, rank 0's results against the float64 mean of the inputs.

        ``amax`` is the largest |entry| over the ranks' inputs (what the per-tensor scales
        come from); ``fp8_err_over_amax`` = max |FP8 result − mean| / amax.
        """
        rows = []
        for name in self.names:
            parts = [g[name].detach().double() for g in grads_per_rank]
            mean = torch.stack(parts).mean(0)
            top = max(float(p.abs().max()) for p in parts) if mean.numel() else 0.0
            fp8 = self.fp8[0][name].double()
            fp32 = self.fp32[0][name].double()
            err = float((fp8 - mean).abs().max()) if mean.numel() else 0.0
            rows.append({"tensor": name, "numel": mean.numel(), "amax": top,
                         "fp8_max_abs_err": err,
                         "fp8_err_over_amax": err / top if top > 0 else 0.0,
                         "fp8_snr_db": snr_db(mean, fp8),
                         "fp32_max_abs_err": float((fp32 - mean).abs().max())
                         if mean.numel() else 0.0})
        return rows


def _check(grads_per_rank: Sequence[Mapping[str, torch.Tensor]], fmt: str, scheme: str,
           accumulate: str, repeats: int, timeout: float) -> list[str]:
    get_format(fmt)
    if scheme not in COLLECTIVE_SCHEMES:
        raise ValueError(f"unknown all-reduce scheme {scheme!r}: choose one of "
                         f"{list(COLLECTIVE_SCHEMES)}")
    if accumulate not in ("fp32", "fp8"):
        raise ValueError(f"accumulate must be 'fp32' or 'fp8', got {accumulate!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    if len(grads_per_rank) < 1:
        raise ValueError("pass one dict of gradients per rank (at least one rank)")
    names = list(grads_per_rank[0])
    if not names:
        raise ValueError("rank 0 has no tensors to all-reduce")
    for r, grads in enumerate(grads_per_rank):
        if list(grads) != names:
            raise ValueError(f"rank {r} has tensors {sorted(grads)}, rank 0 has "
                             f"{sorted(names)}: every rank must hold the same names in the "
                             "same order")
        for name, t in grads.items():
            if not isinstance(t, torch.Tensor) or t.dtype not in _FLOAT_DTYPES:
                raise TypeError(f"rank {r}, {name!r}: expected a float32/float16/bfloat16 "
                                f"tensor, got {getattr(t, 'dtype', type(t).__name__)}")
            if t.shape != grads_per_rank[0][name].shape:
                raise ValueError(f"rank {r}, {name!r}: shape {tuple(t.shape)} differs from "
                                 f"rank 0's {tuple(grads_per_rank[0][name].shape)}")
    return names


def _env() -> dict[str, str]:
    import repro

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               TORCH_CPP_LOG_LEVEL=os.environ.get("TORCH_CPP_LOG_LEVEL", "ERROR"))
    # the same repro as the caller's, wherever it was imported from
    src = str(Path(repro.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    if "GLOO_SOCKET_IFNAME" not in env:  # loopback: no network needed, no DNS lookup
        if sys.platform.startswith("linux"):
            env["GLOO_SOCKET_IFNAME"] = "lo"
        elif sys.platform == "darwin":
            env["GLOO_SOCKET_IFNAME"] = "lo0"
    return env


def run_gloo_all_reduce(
    grads_per_rank: Sequence[Mapping[str, torch.Tensor]],
    fmt: str = "e4m3",
    scheme: str = "auto",
    *,
    accumulate: str = "fp32",
    repeats: int = 3,
    timeout: float = 60.0,
) -> GlooAllReduceResult:
    """All-reduce rank r's gradients ``grads_per_rank[r]`` over N real gloo processes.

    Each worker runs, ``repeats`` times after one warm-up: an fp32 ``all_reduce`` SUM of its
    flattened gradients divided by N, and :func:`fp8_all_reduce_coalesced` (``fmt``,
    ``scheme``, ``accumulate``; ``op="avg"``; for ``"auto"`` a fresh :class:`AutoScaler` each
    time, so μ starts at 1). Raises ``RuntimeError`` with the failing rank's log if a worker
    fails, and ``TimeoutError`` (after killing the workers) if the launch takes longer than
    ``timeout`` seconds.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    names = _check(grads_per_rank, fmt, scheme, accumulate, repeats, timeout)
    world = len(grads_per_rank)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="repro-gloo-") as tmp:
        folder = Path(tmp)
        for r, grads in enumerate(grads_per_rank):
            save_file({n: grads[n].detach().cpu().contiguous() for n in names},
                      str(folder / f"in{r}.safetensors"), metadata={"names": json.dumps(names)})
        procs, logs = [], []
        for r in range(world):
            log = open(folder / f"rank{r}.log", "wb")  # closed below
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "repro.fp8.gloo_demo", "worker", "--rank", str(r),
                 "--world", str(world), "--dir", str(folder), "--fmt", fmt, "--scheme", scheme,
                 "--accumulate", accumulate, "--repeats", str(repeats),
                 "--timeout", str(timeout)],
                env=_env(), stdout=log, stderr=subprocess.STDOUT))
        try:
            failed = _wait(procs, start + timeout)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for log in logs:
                log.close()
        if failed is not None:
            text = (folder / f"rank{failed}.log").read_text(errors="replace")[-3000:]
            if failed == -1:
                raise TimeoutError(f"the gloo all-reduce over {world} processes did not finish "
                                   f"within {timeout:.0f} s; rank 0's log:\n{text}")
            raise RuntimeError(f"rank {failed} of the gloo all-reduce failed "
                               f"(exit {procs[failed].returncode}):\n{text}")
        outputs = []
        for r in range(world):
            path = folder / f"out{r}.safetensors"
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["stats"])
            outputs.append((tensors, meta))
    return GlooAllReduceResult(
        world_size=world, fmt=fmt, scheme=scheme, accumulate=accumulate, names=names,
        fp8=[{n: t[f"fp8/{n}"] for n in names} for t, _ in outputs],
        fp32=[{n: t[f"fp32/{n}"] for n in names} for t, _ in outputs],
        fp8_ms=[m["fp8_ms"] for _, m in outputs], fp32_ms=[m["fp32_ms"] for _, m in outputs],
        fp8_cpu_ms=[m["fp8_cpu_ms"] for _, m in outputs],
        fp32_cpu_ms=[m["fp32_cpu_ms"] for _, m in outputs],
        mu_after=[m["mu_after"] for _, m in outputs],
        launch_seconds=time.perf_counter() - start)


def _wait(procs: list[subprocess.Popen], deadline: float) -> int | None:
    """Wait for every worker; the first failing rank (-1 on timeout), or None if all passed."""
    while True:
        codes = [p.poll() for p in procs]
        for r, code in enumerate(codes):
            if code not in (None, 0):
                return r  # its peers would otherwise wait for it until gloo's own timeout
        if all(code == 0 for code in codes):
            return None
        if time.perf_counter() > deadline:
            return -1
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# the worker (one process per rank)
# --------------------------------------------------------------------------------------------


def _worker(rank: int, world: int, folder: Path, fmt: str, scheme: str, accumulate: str,
            repeats: int, timeout: float) -> None:
    from datetime import timedelta

    import torch.distributed as dist
    from safetensors import safe_open
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    path = folder / f"in{rank}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        names = json.loads((f.metadata() or {})["names"])
        grads = {n: f.get_tensor(n) for n in names}
    dist.init_process_group("gloo", init_method=f"file://{folder / 'store'}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=timeout))
    try:
        def fp32_once() -> list[torch.Tensor]:
            flat = torch.cat([grads[n].float().reshape(-1) for n in names])
            dist.all_reduce(flat)  # SUM
            flat /= world
            return [p.view(grads[n].shape) for p, n in
                    zip(flat.split([grads[n].numel() for n in names]), names, strict=True)]

        def fp8_once() -> tuple[list[torch.Tensor], float]:
            tensors = [grads[n].clone() for n in names]
            scaler = AutoScaler() if scheme == "auto" else None
            fp8_all_reduce_coalesced(tensors, fmt=fmt, scheme=scheme, op="avg",
                                     autoscaler=scaler, accumulate=accumulate)
            return tensors, (scaler.mu if scaler is not None else 1.0)

        def timed(fn):
            walls, cpus, out = [], [], None
            for i in range(repeats + 1):  # the first call warms the connections up
                dist.barrier()
                w, c = time.perf_counter(), time.process_time()
                out = fn()
                if i:
                    walls.append(1e3 * (time.perf_counter() - w))
                    cpus.append(1e3 * (time.process_time() - c))
            return out, statistics.median(walls), statistics.median(cpus)

        fp32, fp32_ms, fp32_cpu = timed(fp32_once)
        (fp8, mu), fp8_ms, fp8_cpu = timed(fp8_once)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    tensors = {f"fp32/{n}": t.contiguous() for n, t in zip(names, fp32, strict=True)}
    tensors |= {f"fp8/{n}": t.contiguous() for n, t in zip(names, fp8, strict=True)}
    stats = {"fp8_ms": fp8_ms, "fp32_ms": fp32_ms, "fp8_cpu_ms": fp8_cpu,
             "fp32_cpu_ms": fp32_cpu, "mu_after": mu if math.isfinite(mu) else None}
    from repro.io import atomic_save

    atomic_save(folder / f"out{rank}.safetensors",
                lambda tmp: save_file(tensors, tmp, metadata={"stats": json.dumps(stats)}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m repro.fp8.gloo_demo",
                                     description="one rank of run_gloo_all_reduce (internal)")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--rank", type=int, required=True)
    w.add_argument("--world", type=int, required=True)
    w.add_argument("--dir", type=Path, required=True)
    w.add_argument("--fmt", default="e4m3")
    w.add_argument("--scheme", default="auto")
    w.add_argument("--accumulate", default="fp32")
    w.add_argument("--repeats", type=int, default=3)
    w.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    _worker(args.rank, args.world, args.dir, args.fmt, args.scheme, args.accumulate,
            args.repeats, args.timeout)


if __name__ == "__main__":
    main()
