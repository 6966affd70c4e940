"""The one training loop of the book (nanoGPT-sized): seeded, device-aware, tqdm progress,
learning-rate warm-up and cosine decay, gradient clipping, safetensors checkpoints, and resume
that ends with exactly the numbers of an uninterrupted run.

Determinism across a resume rests on two rules: the batch at a step is a pure function of the
step (``batch_fn(step)``, see :func:`repro.data.batch_indices`), and the checkpoint holds
everything else that changes (model, optimizer state, torch's RNG state, the history).

Checkpoints (format ``repro-ckpt-2``) are written atomically (:func:`repro.io.atomic_save`)
and carry a content hash in their safetensors metadata (``sha256``, see
:func:`content_sha256`): a file whose tensor bytes or metadata changed after it was written,
or that lacks a metadata key, is refused with a :class:`~repro.errors.CheckpointError` naming
it. Under ``torch.distributed`` only rank 0 writes; the other ranks wait at a barrier.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .io import atomic_save
from .progress import progress as progress_bar

CHECKPOINT_NAME = "last.safetensors"
CHECKPOINT_FORMAT = "repro-ckpt-2"
_CHECKPOINT_KEYS = ("format", "step", "optimizer", "history", "aliases", "sha256")


@dataclass
class TrainConfig:
    steps: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | constant | linear
    min_lr_ratio: float = 0.1
    grad_clip: float | None = None
    eval_every: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    progress: bool = True
    desc: str = "train"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.schedule not in ("cosine", "constant", "linear"):
            raise ValueError(f"unknown schedule {self.schedule!r}: use cosine, constant or "
                             "linear")


@dataclass
class History:
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    evals: list[dict[str, float]] = field(default_factory=list)
    skipped_steps: int = 0
    seconds: float = 0.0

    def last(self, n: int = 50) -> float:
        """Mean training loss over the last ``n`` steps."""
        tail = self.loss[-n:]
        return sum(tail) / len(tail)

    def diverged(self, window: int = 50, margin: float = 0.05) -> bool:
        """True if a loss was non-finite, or the mean of the last ``window`` losses ended more
        than ``margin`` above the best ``window``-step moving average of the run."""
        if not all(math.isfinite(x) for x in self.loss):
            return True
        window = min(window, len(self.loss))
        sums = [sum(self.loss[i - window:i]) / window for i in range(window, len(self.loss) + 1)]
        return self.last(window) > min(sums) + margin


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then cosine/linear decay to
    ``min_lr_ratio`` (or constant)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    if cfg.schedule == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        decay = 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay


def default_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on norms, biases or gains)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _is_main() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _save_on_main(path: Path, model: torch.nn.Module, optimizer, step: int,
                  history: History) -> None:
    """Rank 0 writes the checkpoint; under torch.distributed every rank then waits for it."""
    import torch.distributed as dist

    if _is_main():
        save_checkpoint(path, model, optimizer, step, history)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], Any],
    batch_fn: Callable[[int], Any],
    config: TrainConfig,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    device: torch.device | str | None = None,
) -> History:
    """Train ``model`` for ``config.steps`` steps and return the :class:`History`.

    ``loss_fn(model, batch)`` returns a scalar loss or ``(loss, {name: value})``;
    ``batch_fn(step)`` returns the batch of that step; ``eval_fn(model)`` returns metrics,
    called every ``eval_every`` steps and at the end (in eval mode, without gradients).
    With ``checkpoint_dir`` set, a checkpoint is written every ``checkpoint_every`` steps and
    at the end (by rank 0 only under torch.distributed), and an existing one is resumed from.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    optimizer = optimizer or default_optimizer(model, config)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    history = History()
    start_step = 0
    ckpt = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        start_step, history = load_checkpoint(ckpt, model, optimizer)

    def evaluate(step: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        history.evals.append({"step": step, **metrics})

    bar = progress_bar(total=config.steps, initial=start_step, desc=config.desc, unit="steps",
                       enabled=config.progress and _is_main())
    t0 = time.perf_counter()
    model.train()
    for step in range(start_step, config.steps):
        factor = lr_factor(step, config)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        out = loss_fn(model, _to(batch_fn(step), device))
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            history.skipped_steps += 1  # never step on a non-finite loss
        else:
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            result = optimizer.step()
            if result is False:  # optimizers that skip on overflow say so
                history.skipped_steps += 1
        history.step.append(step)
        history.loss.append(float(loss.detach()))
        history.lr.append(optimizer.param_groups[0]["lr"])
        for k, v in metrics.items():
            history.metrics.setdefault(k, []).append(float(v))
        bar.update(1)
        if step % 10 == 0 or step == config.steps - 1:
            bar.set_postfix(loss=f"{history.loss[-1]:.4f}", refresh=False)
        done = step + 1
        if config.eval_every and done % config.eval_every == 0 and done < config.steps:
            evaluate(done)
        if (ckpt is not None and config.checkpoint_every and done % config.checkpoint_every == 0
                and done < config.steps):  # the last step's checkpoint is written below
            _save_on_main(ckpt, model, optimizer, done, history)
    bar.close()
    history.seconds += time.perf_counter() - t0
    if not history.evals or history.evals[-1]["step"] != config.steps:
        evaluate(config.steps)
    if ckpt is not None and start_step < config.steps:
        _save_on_main(ckpt, model, optimizer, config.steps, history)
    return history


# --------------------------------------------------------------------------- checkpoints
def resolve_resume(output: Path, resume: str | Path | None) -> Path | None:
    """Where a run writing to ``output`` resumes from (the ``--resume [PATH]`` rule of every
    ``repro train`` task): refuse to overwrite an earlier run silently, and refuse to resume
    from nothing. ``resume="auto"`` means ``output/last.safetensors``."""
    last = Path(output) / CHECKPOINT_NAME
    if resume is None:
        if last.exists():
            raise CheckpointError(f"{last} exists from an earlier run: pass --resume to "
                                  "continue it, or choose another --output")
        return None
    path = last if resume == "auto" else Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint at {path}")
    return path


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    skeleton: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, slots in state["state"].items():
        skeleton["state"][str(idx)] = {}
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                name = f"optim.{idx}.{key}"
                tensors[name] = value.detach().cpu().contiguous()
                skeleton["state"][str(idx)][key] = {"tensor": name}
            else:
                skeleton["state"][str(idx)][key] = {"value": value}
    return tensors, skeleton


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], skeleton: dict) -> dict:
    state = {}
    for idx, slots in skeleton["state"].items():
        state[int(idx)] = {k: tensors[v["tensor"]] if "tensor" in v else v["value"]
                           for k, v in slots.items()}
    return {"state": state, "param_groups": skeleton["param_groups"]}


def content_sha256(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """sha256 over ``metadata`` (as sorted JSON, any ``sha256`` key left out) and then every
    tensor in sorted key order: its name, dtype and shape, then its bytes. Each part is
    length-prefixed, so no two different contents hash alike by concatenation."""
    h = hashlib.sha256()

    def part(data: bytes | memoryview) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    meta = {k: v for k, v in metadata.items() if k != "sha256"}
    part(json.dumps(meta, sort_keys=True).encode())
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        part(json.dumps([key, str(t.dtype), list(t.shape)]).encode())
        part(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer, step: int,
                    history: History | None = None) -> Path:
    """Write model + optimizer + RNG + history to one safetensors file, atomically, with a
    content hash in its metadata. Call it from one process (``fit`` does so on rank 0)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}  # tied weights (e.g. lm_head = embedding) are stored once
    seen: dict[tuple, str] = {}
    for k, v in model.state_dict().items():
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape),
                 tuple(v.stride()), v.dtype)
        if v.numel() and ident in seen:
            aliases[f"model.{k}"] = seen[ident]
            continue
        seen[ident] = f"model.{k}"
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    opt_tensors, skeleton = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": str(step), "optimizer": json.dumps(skeleton),
            "history": json.dumps(asdict(history or History())), "format": CHECKPOINT_FORMAT,
            "aliases": json.dumps(aliases)}
    meta["sha256"] = content_sha256(tensors, meta)
    return atomic_save(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a repro checkpoint, refused with a CheckpointError unless its
    format tag, metadata keys and content hash hold (for readers that need no model)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error type on a bad header
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({err}). Delete it to start over, or "
            "point checkpoint_dir at an intact copy.") from err
    fmt = meta.get("format")
    if fmt != CHECKPOINT_FORMAT:
        what = ("an older repro format without a content hash" if fmt == "repro-ckpt-1"
                else "not a repro training checkpoint")
        raise CheckpointError(f"{path} is {what} (format tag {fmt!r}, expected "
                              f"{CHECKPOINT_FORMAT!r}). Delete it to start over.")
    missing = [k for k in _CHECKPOINT_KEYS if k not in meta]
    if "rng.torch" not in tensors:
        missing.append("rng.torch (tensor)")
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: it was altered "
                              "or not written by repro.train.save_checkpoint. Delete it to "
                              "start over.")
    got = content_sha256(tensors, meta)
    if got != meta["sha256"]:
        raise CheckpointError(
            f"checkpoint {path} fails its content check (sha256 {got[:16]}…, recorded "
            f"{meta['sha256'][:16]}…): its tensors or metadata changed after it was written. "
            "Delete it to start over, or point checkpoint_dir at an intact copy.")
    return tensors, meta


def load_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer=None) -> tuple[int, History]:
    """Restore model (and optimizer, RNG) from :func:`save_checkpoint`; return (step, history).

    The content hash is checked before anything is restored."""
    path = Path(path)
    tensors, meta = read_checkpoint(path)
    try:
        aliases = json.loads(meta["aliases"])
        skeleton = json.loads(meta["optimizer"])
        hist = History(**json.loads(meta["history"]))
        step = int(meta["step"])
        for alias, source in aliases.items():
            tensors[alias] = tensors[source]
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} has malformed metadata ({err!r}). Delete it "
                              "to start over.") from err
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {err}") from err
    if optimizer is not None:
        try:
            optimizer.load_state_dict(_unflatten_optimizer(tensors, skeleton))
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"checkpoint {path} does not fit this optimizer: "
                                  f"{err}") from err
    torch.set_rng_state(tensors["rng.torch"])
    return step, hist
