"""Full-scale GPT pre-training in BF16 or FP8 (FP8-LM, Peng et al., arXiv 2310.18313), torchrun.

    torchrun --nproc-per-node 8 -m repro.lm.train_gpt --model 7b --precision fp8-o2 \\
        --data /data/tokens.bin --output runs/gpt7b-o2                  # the paper's GPT-7B
    repro train gpt --model tiny --data pydoc --precision fp8-o2 --max-steps 20 --device cpu

Paper ↔ code:

* Table 1 (model sizes, learning rates, batch tokens, 100B/40B tokens) → :data:`MODELS`, one
  :class:`GPTConfig` per size, the numbers as data with their source;
* §3.1 / §4.3 of our spec (AdamW β 0.9/0.95, weight decay 0.1, cosine to 10 % of the peak,
  1,000 warm-up iterations, sequence length 2048, gradient clipping 1.0) → the defaults below;
* §3 / MS-AMP levels O1, O2, O3 → ``--precision`` (:func:`build_training`):

  ==========  ============================================================================
  fp32        DDP, torch AdamW, everything fp32
  bf16        DDP, torch AdamW, fp32 weights, every op under bf16 autocast (the baseline)
  fp8-o1      + every transformer ``nn.Linear`` an FP8 GEMM (:func:`repro.fp8.convert`),
              gradients all-reduced in FP8 (§2.1, :func:`repro.fp8.register_fp8_comm_hook`),
              :class:`repro.fp8.FP8AdamW` with the O1 formats (FP16-scaled master, fp32 m, v)
  fp8-o2      + the FP8 optimizer of §2.2 (FP16-scaled master, E4M3 m, FP16-scaled v)
  fp8-o3      + optimizer states sharded across ranks (ZeRO-1: torch
              ``ZeroRedundancyOptimizer`` with FP8AdamW as the local optimizer)
  ==========  ============================================================================

The model is a decoder-only transformer with RoPE (transformers ``LlamaForCausalLM``: RMSNorm,
SwiGLU MLP of width 8/3·d rounded up to 256, so 12·d² parameters per layer as in GPT's 4·d GELU
MLP), bias-free ``nn.Linear`` projections, and the output layer tied to the word embedding (as
Megatron's GPT: with GPT-2's 50,257 tokens ``125m`` has 123.6M parameters, GPT-3's 125M less its
learned positions, and ``7b`` 6.68B, MS-AMP-Examples' "6.7B"). Not transformers'
GPT-2: it computes attention and MLP with ``Conv1D`` layers (weight stored (in, out)), not
``nn.Linear``, so an FP8 conversion that swaps linear layers would touch nothing but the output
layer; and GPT-2 has learned absolute positions where the paper's models use RoPE.

Departures from the paper and MS-AMP, all stated, none silent:

* Data parallel only. The paper trains 13B with tensor parallelism 2 and 175B with TP 8 × PP 4
  (Table 1) and FP8 sequence/tensor parallelism (§2.3); those configurations are listed here as
  data, but one 80 GB GPU per rank holds neither.
* The tied output layer stays in high precision (Megatron computes it from the embedding
  weight, which MS-AMP never converts); every other linear layer is FP8.
* Weights are fp32 ``nn.Parameter`` s holding the decoded master value (FP8AdamW updates them
  in place; there is no shadow copy), and gradients are fp32 between the backward and the step:
  DDP's FP8 comm hook and gradient clipping read ``.grad``. FP8 storage is real for the GEMM
  operands, the all-reduce payload and the optimizer's moments, not for the weights and
  gradients, so the paper's memory saving (Table 5, −29 % at 7B) is not realised by this
  trainer. The library has the stored-master path that realises it in one process
  (``repro.fp8.convert(..., store_master=True)``: FP16 + scale weights, FP8 gradients, 6 bytes
  per FP8 linear weight, measured by :func:`repro.fp8.memory.held_bytes`); wiring it into DDP
  (an FP8 gradient bucket instead of ``.grad``) and clipping is not done.
* fp8-o3: the optimizer states (FP16 master, E4M3 m, FP16 v) are sharded by whole tensors
  (torch's greedy partition, by element count: Algorithm 1 of §2.3 by bytes, but applied per
  parameter group), gradients are all-reduced in FP8 (ZeRO-1, where MS-AMP reduce-scatters to
  the owners), and the updated weights are broadcast in fp32. **The FP8 weight storage of O3
  (E4M3 weights, 1 byte per parameter, all-gathered in FP8) is not implemented**: the replicated
  weights stay fp32. The start-up line and ``config.json`` say so.
* Our FP8 path is a readable reference (per-tensor scales computed on the host, one Python
  AdamW loop over parameters), not fused kernels: expect it to be slower than BF16 on GPUs.
* The loop is this module's own, not :func:`repro.train.fit`: fit has no gradient
  accumulation, no DDP ``no_sync``, no per-rank batches and no ZeRO state consolidation. It
  reuses fit's schedule (:func:`repro.train.lr_factor`) and checkpoint format.

Batches are a pure function of (seed, step): the step's global batch of windows is drawn from
``random.Random(seed · 2³² + step)`` (the stream of :func:`repro.lm.batch_at`) and rank r takes
the r-th contiguous slice, micro-batch by micro-batch; the split over ranks and micro-batches does
not change the data. A resumed run (``--resume``) continues with the numbers of an uninterrupted
one: each rank also saves its FP8 scaling state (amax histories, the all-reduce μ).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from repro.distributed import DistInfo, all_reduce_mean, barrier, init_from_env, read_env, shutdown
from repro.errors import CheckpointError, DataUnavailableError, ReproError
from repro.fp8.optim import param_groups  # AdamW groups (FP8 linear weights first)
from repro.train import CHECKPOINT_NAME, History, TrainConfig, lr_factor, resolve_resume

__all__ = ["GPTConfig", "MODELS", "PRECISIONS", "TokenData", "write_token_file",
           "load_token_file", "load_data", "global_batch_starts", "rank_batch", "build_model",
           "build_training", "param_digest", "add_parser", "add_arguments",
           "resolve_args", "main", "cli"]

PRECISIONS = ("fp32", "bf16", "fp8-o1", "fp8-o2", "fp8-o3")
LEVEL_OF = {"fp8-o1": "O1", "fp8-o2": "O2", "fp8-o3": "O3"}
LOG_NAME = "log.jsonl"
O3_LIMITATION = ("fp8-o3: optimizer states sharded (ZeRO-1, FP8AdamW per rank); FP8 weight "
                 "storage NOT implemented, weights stay fp32 and are broadcast in fp32")
# the paper's optimizer (§4.3 of our spec): AdamW β 0.9/0.95, eps 1e-8, weight decay 0.1,
# cosine to 10 % of the peak after 1,000 warm-up iterations, gradient clipping 1.0
BETAS, EPS, WEIGHT_DECAY, MIN_LR_RATIO, GRAD_CLIP = (0.9, 0.95), 1e-8, 0.1, 0.1, 1.0


# ----------------------------------------------------------------------------- model sizes
@dataclass(frozen=True)
class GPTConfig:
    """One model size: shape (Table 1), optimizer and batch (Table 1, §3.1), run length."""

    name: str
    d_model: int
    n_heads: int
    n_layers: int
    mlp: int  # SwiGLU width: 8/3·d_model rounded up to 256 (Llama's rule)
    lr: float  # peak learning rate
    batch_tokens: int  # global batch in tokens
    train_tokens: float  # tokens of the whole run
    seq_len: int = 2048
    micro_batch: int = 1  # sequences per rank per forward (default; --micro-batch)
    warmup_steps: int = 1000
    init_std: float = 0.02
    source: str = ""

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step."""
        return self.batch_tokens // self.seq_len

    @property
    def steps(self) -> int:
        """Optimizer steps to see ``train_tokens``."""
        return math.ceil(self.train_tokens / self.batch_tokens)

    def num_params(self, vocab_size: int) -> int:
        """Parameters with a tied output layer: embedding + layers (4·d² attention, 3·d·mlp
        MLP, two RMSNorm gains) + the final norm."""
        d = self.d_model
        return vocab_size * d + self.n_layers * (4 * d * d + 3 * d * self.mlp + 2 * d) + d


MODELS: dict[str, GPTConfig] = {
    # ours, for smoke tests and the book: the tiny Llama of the FP8 chapter, shorter context
    "tiny": GPTConfig("tiny", 64, 4, 2, 176, lr=1e-3, batch_tokens=8 * 64,
                      train_tokens=200 * 8 * 64, seq_len=64, micro_batch=4, warmup_steps=10,
                      source="ours (smoke runs)"),
    # paper Table 1: d 768, 12 heads, 12 layers, lr 6.0e-4, 1M tokens per batch, 100B tokens
    "125m": GPTConfig("125m", 768, 12, 12, 2048, lr=6.0e-4, batch_tokens=2**20,
                      train_tokens=100e9, micro_batch=8, source="Table 1"),
    # paper Table 1: d 4096, 32 heads, 32 layers, lr 3.0e-4, 4M tokens, 100B tokens; micro-batch
    # 2 (Table 5); init std 0.0099 from MS-AMP-Examples' 6.7B script (2048 × 2048-token batch)
    "7b": GPTConfig("7b", 4096, 32, 32, 11008, lr=3.0e-4, batch_tokens=2**22, train_tokens=100e9,
                    micro_batch=2, init_std=0.0099, source="Table 1, Table 5, MS-AMP-Examples"),
    # paper Table 1: d 5120, 40 heads, 40 layers, TP 2, lr 3.0e-4, 4M tokens, 100B tokens
    "13b": GPTConfig("13b", 5120, 40, 40, 13824, lr=3.0e-4, batch_tokens=2**22,
                     train_tokens=100e9, micro_batch=2, source="Table 1 (TP 2 not implemented)"),
    # paper Table 1: d 12288, 96 heads, 96 layers, TP 8, PP 4, lr 3.0e-5, 1M tokens, 40B tokens
    "175b": GPTConfig("175b", 12288, 96, 96, 32768, lr=3.0e-5, batch_tokens=2**20,
                      train_tokens=40e9, micro_batch=1,
                      source="Table 1 (TP 8, PP 4 not implemented)"),
}


# ----------------------------------------------------------------------------- data
_TOKEN_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


@dataclass
class TokenData:
    """A 1-D token array (numpy memmap for files) and its vocabulary size."""

    tokens: np.ndarray
    vocab_size: int
    name: str

    def __len__(self) -> int:
        return len(self.tokens)

    def windows(self, starts: list[int], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` LongTensors (len(starts), seq_len): the windows and the next tokens."""
        rows = np.stack([np.asarray(self.tokens[s:s + seq_len + 1], dtype=np.int64)
                         for s in starts])
        tokens = torch.from_numpy(rows)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _make_hint(path: Path) -> str:
    return (f"Make one with `python -c \"from repro.lm.train_gpt import write_token_file; "
            f"write_token_file('{path}', ids, vocab_size)\"` (ids: your tokenizer's token ids; "
            "it writes the numpy uint16/uint32 file and its JSON sidecar {\"dtype\", "
            "\"vocab_size\"}), or pass --data pydoc for a character-level smoke run")


def write_token_file(path: str | Path, ids: Any, vocab_size: int, **extra: Any) -> Path:
    """Write ``ids`` as a flat token file ``path`` (uint16 when ``vocab_size`` ≤ 65536, else
    uint32) and its sidecar ``path.with_suffix('.json')`` naming dtype and vocabulary size
    (plus any ``extra`` keys, e.g. ``tokenizer="gpt2"``). Returns ``path``."""
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"{path}: the token file needs a suffix other than .json (use .bin)")
    dtype = "uint16" if vocab_size <= 2**16 else "uint32"
    arr = np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}), got {arr.min()}..{arr.max()}")
    from repro.io import atomic_write_bytes, atomic_write_text

    atomic_write_bytes(path, arr.astype(_TOKEN_DTYPES[dtype]).tobytes())
    meta = {"dtype": dtype, "vocab_size": int(vocab_size), "num_tokens": int(arr.size), **extra}
    atomic_write_text(_sidecar(path), json.dumps(meta, indent=2) + "\n")
    return path


def load_token_file(path: str | Path) -> TokenData:
    """Memory-map a token file written by :func:`write_token_file` (checked, with the fix named
    in every error)."""
    path = Path(path)
    side = _sidecar(path)
    if not path.is_file():
        raise DataUnavailableError(f"data file {path} not found. {_make_hint(path)}")
    if not side.is_file():
        raise DataUnavailableError(f"data file {path} has no sidecar {side} naming its dtype and "
                                   f"vocabulary. {_make_hint(path)}")
    try:
        meta = json.loads(side.read_text())
        dtype, vocab_size = meta["dtype"], int(meta["vocab_size"])
    except (ValueError, KeyError, TypeError) as err:
        raise ReproError(f"{side} must be JSON with \"dtype\" (uint16 or uint32) and "
                         f"\"vocab_size\": {err!r}. {_make_hint(path)}") from err
    if dtype not in _TOKEN_DTYPES:
        raise ReproError(f"{side}: dtype {dtype!r} is not one of {list(_TOKEN_DTYPES)}")
    itemsize = np.dtype(_TOKEN_DTYPES[dtype]).itemsize
    size = path.stat().st_size
    if size % itemsize:
        raise ReproError(f"{path} has {size} bytes, not a whole number of {dtype} tokens: "
                         "truncated? Write it again")
    if vocab_size < 2 or vocab_size > np.iinfo(_TOKEN_DTYPES[dtype]).max + 1:
        raise ReproError(f"{side}: vocab_size {vocab_size} does not fit dtype {dtype}")
    tokens = np.memmap(path, dtype=_TOKEN_DTYPES[dtype], mode="r")
    head = np.asarray(tokens[: 2**20])
    if head.size and int(head.max()) >= vocab_size:
        raise ReproError(f"{path} holds token id {int(head.max())} >= vocab_size {vocab_size} "
                         f"of {side}")
    return TokenData(tokens, vocab_size, str(path))


def load_data(spec: str | Path) -> TokenData:
    """``"pydoc"``: Python's documentation, character-level, the first 90 % (the training split
    of the FP8 chapter); anything else: a token file (:func:`load_token_file`)."""
    if str(spec) == "pydoc":
        from repro.lm.data import CharTokenizer, pydoc_text, train_val_split

        text = pydoc_text()
        tok = CharTokenizer.fit(text)
        train, _ = train_val_split(tok.encode(text), 0.9)
        return TokenData(np.asarray(train, dtype=np.int64), tok.vocab_size, "pydoc")
    return load_token_file(spec)


def global_batch_starts(num_tokens: int, step: int, global_batch: int, seq_len: int,
                        seed: int = 0) -> list[int]:
    """Window starts of step ``step``'s whole global batch: the stream of
    :func:`repro.lm.batch_at` (``random.Random(seed · 2³² + step)``), so that
    ``batch_at(ids, step, global_batch, seq_len, seed)`` draws the same windows."""
    if num_tokens <= seq_len:
        raise ValueError(f"need more than seq_len={seq_len} tokens, got {num_tokens}")
    rng = random.Random(seed * 2**32 + step)
    return [rng.randrange(num_tokens - seq_len) for _ in range(global_batch)]


def rank_batch(starts: list[int], data: TokenData, rank: int, world_size: int, micro: int,
               micro_batch: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Micro-batch ``micro`` of rank ``rank``: rank r owns the r-th contiguous slice of the
    global batch and walks through it ``micro_batch`` sequences at a time."""
    per_rank = len(starts) // world_size
    first = rank * per_rank + micro * micro_batch
    return data.windows(starts[first:first + micro_batch], seq_len)


# ----------------------------------------------------------------------------- model
def build_model(cfg: GPTConfig, vocab_size: int, *, seq_len: int | None = None, seed: int = 0,
                device: torch.device | str = "cpu") -> nn.Module:
    """A randomly initialised decoder-only GPT (``LlamaForCausalLM``: RoPE, RMSNorm, SwiGLU,
    bias-free linears, tied output layer), built directly on ``device``, seeded."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg.d_model % cfg.n_heads:
        raise ValueError(f"d_model={cfg.d_model} is not divisible by n_heads={cfg.n_heads}")
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.mlp,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads, max_position_embeddings=seq_len or cfg.seq_len,
        initializer_range=cfg.init_std, tie_word_embeddings=True, attention_bias=False,
        mlp_bias=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        attn_implementation="sdpa")
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with device:
            model = LlamaForCausalLM(config)
    return model.train()


class _Checkpointed(nn.Module):
    """What a checkpoint holds of the model: its state without the tied output weight
    (safetensors refuses two names for one storage), restored by re-tying."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._tied = [k for k in ("lm_head.weight",) if _is_tied(model)]

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        state = self.model.state_dict()
        return {k: v for k, v in state.items() if k not in self._tied}

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        result = self.model.load_state_dict(state, strict=False)
        bad = sorted(set(result.missing_keys) - set(self._tied)) + list(result.unexpected_keys)
        if strict and bad:
            raise RuntimeError(f"keys differ between checkpoint and model: {bad[:5]}")
        return result


def _is_tied(model: nn.Module) -> bool:
    head, emb = getattr(model, "lm_head", None), getattr(model, "get_input_embeddings", None)
    return head is not None and emb is not None and head.weight is emb().weight


# ----------------------------------------------------------------------------- precision
class _ZeroCheckpoint:
    """Let :func:`repro.train.save_checkpoint` / ``load_checkpoint`` see one optimizer when the
    states are sharded: ``state_dict`` is ZeRO's consolidated state (call
    ``consolidate_state_dict`` on every rank first), ``load_state_dict`` hands each rank the
    states of the parameters it owns, through FP8AdamW's own ``load_state_dict`` (ZeRO's would
    store FP8AdamW's flat entries without decoding them)."""

    def __init__(self, zero: Any) -> None:
        self.zero = zero

    def state_dict(self) -> dict:
        return self.zero.state_dict()

    def load_state_dict(self, saved: dict) -> None:
        zero, local = self.zero, self.zero.optim
        if len(saved["param_groups"]) != len(zero.param_groups):
            raise CheckpointError("checkpoint and optimizer disagree on parameter groups")
        global_index = {id(p): i for i, p in
                        enumerate(chain.from_iterable(g["params"] for g in zero.param_groups))}
        for group, saved_group in zip(zero.param_groups, saved["param_groups"], strict=True):
            for key, value in saved_group.items():
                if key != "params":
                    group[key] = tuple(value) if key == "betas" else value
        local_groups, local_state, n = [], {}, 0
        for group, saved_group in zip(local.param_groups, saved["param_groups"], strict=True):
            indices = []
            for p in group["params"]:
                local_state[n] = saved["state"][global_index[id(p)]]
                indices.append(n)
                n += 1
            local_groups.append({**{k: v for k, v in saved_group.items() if k != "params"},
                                 "params": indices})
        local.load_state_dict({"state": local_state, "param_groups": local_groups})


def _round_to_master(groups: list[dict], master_format: str) -> None:
    """Give every rank's weights the decoded master value FP8AdamW starts from (under ZeRO only
    the owner's optimizer would write it), so all ranks run step 0 with the same weights."""
    from repro.fp8.tensor import ScaledTensor

    with torch.no_grad():
        for g in groups:
            fmt = g.get("master_format", master_format)
            for p in g["params"]:
                p.copy_(ScaledTensor.from_float(p.detach().float(), fmt).float().to(p.dtype))


@dataclass
class Training:
    """What :func:`build_training` returns: the (wrapped) model, the optimizer, what the
    checkpoint calls the optimizer, and the FP8 all-reduce state (μ), if any."""

    model: nn.Module  # DDP-wrapped when distributed
    module: nn.Module  # the model itself
    optimizer: Any
    checkpoint_optimizer: Any
    comm_state: Any = None

    @property
    def sharded(self) -> bool:
        return self.checkpoint_optimizer is not self.optimizer


def build_training(model: nn.Module, precision: str, info: DistInfo, lr: float,
                   comm_scheme: str = "auto") -> Training:
    """Convert, wrap and give an optimizer to ``model`` (already on ``info.device``) for one
    of :data:`PRECISIONS` (see the module docstring's table)."""
    from torch.nn.parallel import DistributedDataParallel

    distributed = info.distributed and torch.distributed.is_initialized()
    opt_kwargs = dict(lr=lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    level = LEVEL_OF.get(precision)
    if level is None:
        groups = param_groups(model, WEIGHT_DECAY)
        optimizer = torch.optim.AdamW(groups, **opt_kwargs)
        wrapped = (DistributedDataParallel(model, device_ids=_device_ids(info))
                   if distributed else model)
        return Training(wrapped, model, optimizer, optimizer)

    from repro.fp8 import FP8AdamW, convert, get_level, register_fp8_comm_hook

    lvl = get_level(level)
    convert(model, lvl, skip=["lm_head"])  # the tied output layer stays high precision
    groups = param_groups(model, WEIGHT_DECAY, fp8=True)
    formats = dict(master_format=lvl.master_format, exp_avg_format=lvl.exp_avg_format,
                   exp_avg_sq_format=lvl.exp_avg_sq_format, grad_format=lvl.grad_format)
    _round_to_master(groups, lvl.master_format)
    comm_state = None
    wrapped: nn.Module = model
    if distributed:
        wrapped = DistributedDataParallel(model, device_ids=_device_ids(info))
        comm_state = register_fp8_comm_hook(wrapped, fmt=lvl.grad_format, scheme=comm_scheme)
    if lvl.zero:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        zero = ZeroRedundancyOptimizer(groups, optimizer_class=FP8AdamW, **opt_kwargs, **formats)
        return Training(wrapped, model, zero, _ZeroCheckpoint(zero), comm_state)
    optimizer = FP8AdamW.from_level(groups, lvl, **opt_kwargs)
    return Training(wrapped, model, optimizer, optimizer, comm_state)


def _device_ids(info: DistInfo) -> list[int] | None:
    return [info.device.index] if info.device.type == "cuda" else None


def optimizer_state_bytes(training: Training) -> int | None:
    """Bytes of this rank's optimizer states (FP8AdamW measures its real tensors; torch AdamW:
    its state tensors), or None when unknown."""
    opt = getattr(training.optimizer, "optim", training.optimizer)  # ZeRO: the local shard
    if hasattr(opt, "state_bytes"):
        return int(opt.state_bytes())
    total = 0
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                total += v.element_size() * v.numel()
    return total


def param_digest(model: nn.Module) -> str:
    """A digest of every parameter's exact bits, computed on its device: per tensor the sum and
    the sum of squares of the bit patterns as int64 (wrapping, so order-free), hashed. Equal
    digests on two ranks mean equal weights (up to a 2⁻¹²⁸-ish collision)."""
    sums = []
    with torch.no_grad():
        for p in model.parameters():
            bits = p.detach().contiguous().view({4: torch.int32, 2: torch.int16,
                                                 1: torch.int8}[p.element_size()]).long()
            sums.append(torch.stack([bits.sum(), (bits * bits).sum()]))
    values = torch.stack(sums).cpu().numpy().tobytes() if sums else b""
    return hashlib.sha256(values).hexdigest()[:16]


# ----------------------------------------------------------------------------- arguments
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``gpt`` to ``repro train``'s sub-commands."""
    parser = subparsers.add_parser(
        "gpt", help="pre-train a GPT in BF16 or FP8 (FP8-LM; torchrun, DDP/ZeRO)",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options; defaults are the paper's (Table 1 per --model, §3.1 optimizer)."""
    a = parser.add_argument
    a("--model", default="125m", help=f"one of {', '.join(MODELS)} (Table 1; tiny: ours)")
    a("--precision", default="fp8-o2", help=(
        f"one of {', '.join(PRECISIONS)}:\n"
        "  fp32, bf16 (autocast): DDP + torch AdamW\n"
        "  fp8-o1: FP8 GEMMs, FP8 gradient all-reduce, FP16-scaled master, fp32 m/v\n"
        "  fp8-o2: + FP8 optimizer (E4M3 m, FP16-scaled v)\n"
        "  fp8-o3: + ZeRO-1 sharded FP8 optimizer states (needs torchrun); the FP8 weight\n"
        "          storage of O3 is NOT implemented: weights stay fp32"))
    a("--data", required=True, help="token file (.bin, numpy uint16/uint32) with a .json "
      "sidecar\n{dtype, vocab_size} (see write_token_file), or 'pydoc' (char-level smoke data)")
    a("--output", type=Path, default=None, help="checkpoints and log.jsonl (default "
      "runs/gpt-MODEL-PRECISION)")
    a("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
      help=f"continue from CHECKPOINT (default OUTPUT/{CHECKPOINT_NAME})")
    a("--device", default="auto", help="auto (cuda:LOCAL_RANK if CUDA, else cpu), cpu, cuda")
    a("--max-steps", type=int, default=None, help="stop after this many optimizer steps in all"
      "\n(the schedule still spans --steps)")
    a("--micro-batch", type=int, default=None, help="sequences per rank per forward (default: "
      "the model's)")
    a("--grad-accum", type=int, default=None, help="micro-batches per optimizer step\n"
      "(default: global batch / (world size x micro-batch))")
    a("--global-batch", type=int, default=None, help="sequences per optimizer step\n"
      "(default: the model's batch tokens / seq len)")
    a("--seq-len", type=int, default=None, help="default: 2048 (paper), 64 for tiny")
    a("--steps", type=int, default=None, help="schedule length (default: the model's tokens "
      "/ batch tokens)")
    a("--lr", type=float, default=None, help="peak learning rate (default: the model's)")
    a("--warmup-steps", type=int, default=None, help="default: 1000 (paper), 10 for tiny")
    a("--comm-scheme", default="auto", help="FP8 all-reduce: auto (paper, μ), msamp (1/sqrt N),"
      " shared, gather")
    a("--log-every", type=int, default=10, help="steps between log lines")
    a("--save-every", type=int, default=1000, help="steps between checkpoints (and at the end)")
    a("--seed", type=int, default=0)
    parser.set_defaults(func=main)


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check every input and fill the derived values, before any compute (errors exit 2)."""
    from repro.fp8.distributed import COLLECTIVE_SCHEMES

    args = argparse.Namespace(**vars(args))
    args.model, args.precision = str(args.model).lower(), str(args.precision).lower()
    if args.model not in MODELS:
        raise ReproError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    if args.precision not in PRECISIONS:
        raise ReproError(f"unknown precision {args.precision!r}; choose one of "
                         f"{', '.join(PRECISIONS)}")
    if args.comm_scheme not in COLLECTIVE_SCHEMES:
        raise ReproError(f"unknown --comm-scheme {args.comm_scheme!r}; choose one of "
                         f"{', '.join(COLLECTIVE_SCHEMES)}")
    cfg = MODELS[args.model]
    for name in ("max_steps", "micro_batch", "grad_accum", "global_batch", "seq_len", "steps",
                 "log_every", "save_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ReproError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        raise ReproError("--warmup-steps must be >= 0")
    if args.lr is not None and not args.lr > 0:
        raise ReproError("--lr must be > 0")
    if args.device not in ("auto", "cpu", "cuda") and not str(args.device).startswith("cuda:"):
        raise ReproError(f"unknown --device {args.device!r}; use auto, cpu or cuda")
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise ReproError(f"--device {args.device} but CUDA is not available; use --device cpu")
    ranks = read_env()
    args.world_size = ranks[1] if ranks else 1
    if args.precision == "fp8-o3" and ranks is None:
        raise ReproError("--precision fp8-o3 shards the optimizer states with torch's "
                         "ZeroRedundancyOptimizer and needs a process group: run under torchrun "
                         "(`torchrun --nproc-per-node 1 -m repro.lm.train_gpt ...` works)")

    args.seq_len = args.seq_len or cfg.seq_len
    _resolve_batch(args, cfg)
    args.steps = args.steps or math.ceil(cfg.train_tokens / (args.global_batch * args.seq_len))
    args.lr = args.lr if args.lr is not None else cfg.lr
    args.warmup_steps = cfg.warmup_steps if args.warmup_steps is None else args.warmup_steps
    args.output = args.output or Path("runs") / f"gpt-{args.model}-{args.precision}"

    args.token_data = load_data(args.data)
    if len(args.token_data) <= args.seq_len:
        raise ReproError(f"{args.token_data.name} has {len(args.token_data)} tokens, not more "
                         f"than --seq-len {args.seq_len}")

    args.resume = resolve_resume(args.output, args.resume)
    if args.resume is not None:
        _check_resumable(args)
    return args


def _resolve_batch(args: argparse.Namespace, cfg: GPTConfig) -> None:
    """global batch = world size × micro-batch × grad-accum, whichever two are given."""
    world = args.world_size
    what = "--global-batch" if args.global_batch is not None else None
    if args.global_batch is None and args.micro_batch and args.grad_accum:
        args.global_batch = world * args.micro_batch * args.grad_accum
    if args.global_batch is None:
        args.global_batch = (cfg.global_batch if args.seq_len == cfg.seq_len
                             else max(cfg.batch_tokens // args.seq_len, 1))
    what = what or f"the {cfg.name} global batch"
    if args.micro_batch is None and args.grad_accum:
        if args.global_batch % (world * args.grad_accum):
            raise ReproError(
                f"{what} of {args.global_batch} sequences is not divisible by world size "
                f"{world} x --grad-accum {args.grad_accum}: choose a --global-batch, "
                "--grad-accum or number of processes that divide")
        args.micro_batch = args.global_batch // (world * args.grad_accum)
    if args.micro_batch is None:
        args.micro_batch = min(cfg.micro_batch, max(args.global_batch // world, 1))
    per_rank, rest = divmod(args.global_batch, world * args.micro_batch)
    if rest or per_rank == 0:
        raise ReproError(
            f"{what} of {args.global_batch} sequences is not divisible by world size {world} x "
            f"micro-batch {args.micro_batch} = {world * args.micro_batch}: choose a "
            "--global-batch, --micro-batch or number of processes that divide")
    if args.grad_accum is None:
        args.grad_accum = per_rank
    elif args.grad_accum != per_rank:
        raise ReproError(
            f"--grad-accum {args.grad_accum} x --micro-batch {args.micro_batch} x world size "
            f"{world} = {args.grad_accum * args.micro_batch * world} sequences, but the global "
            f"batch is {args.global_batch}; give two of the three")


_RESUME_KEYS = ("model", "precision", "seq_len", "global_batch", "world_size", "seed")


def _check_resumable(args: argparse.Namespace) -> None:
    config = args.resume.parent / "config.json"
    if not config.is_file():
        return
    saved = json.loads(config.read_text())
    diff = [f"{k} {saved.get(k)!r} -> {getattr(args, k)!r}" for k in _RESUME_KEYS
            if k in saved and saved[k] != getattr(args, k)]
    if diff:
        raise CheckpointError(f"--resume: {args.resume} was written with other settings "
                              f"({'; '.join(diff)}); resume with the same ones, or start a new "
                              "--output")


# ----------------------------------------------------------------------------- loop
def _autocast(precision: str, device: torch.device):
    """bf16 and fp8-*: non-FP8 ops under bf16 autocast (fp32 weights); fp32: none."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision != "fp32")


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu_max_rss"


def _fp8_state_path(output: Path, rank: int) -> Path:
    return output / f"fp8_state.rank{rank}.json"


def _save_fp8_state(output: Path, rank: int, step: int, training: Training) -> None:
    from repro.fp8.conversion import fp8_scaling_state

    state = {"step": step, "scaling": fp8_scaling_state(training.module),
             "autoscaler": asdict(training.comm_state.autoscaler) if training.comm_state else None}
    from repro.io import atomic_write_text

    atomic_write_text(_fp8_state_path(output, rank), json.dumps(state))


def _load_fp8_state(output: Path, rank: int, step: int, training: Training) -> None:
    from repro.fp8.conversion import load_fp8_scaling_state

    path = _fp8_state_path(output, rank)
    if not path.is_file():
        raise CheckpointError(f"--resume: {path} (this rank's FP8 scaling state) is missing")
    state = json.loads(path.read_text())
    if state["step"] != step:
        raise CheckpointError(f"--resume: checkpoint at step {step} but {path} at step "
                              f"{state['step']}: the run stopped while saving; start over")
    load_fp8_scaling_state(training.module, state["scaling"])
    if training.comm_state is not None and state.get("autoscaler"):
        for key, value in state["autoscaler"].items():
            setattr(training.comm_state.autoscaler, key, value)


def _save(args: argparse.Namespace, info: DistInfo, training: Training, step: int,
          history: History) -> None:
    from repro.train import save_checkpoint

    if args.precision in LEVEL_OF:
        _save_fp8_state(args.output, info.rank, step, training)
    if training.sharded:
        training.optimizer.consolidate_state_dict(to=0)  # a collective: every rank
    if info.is_main:
        save_checkpoint(args.output / CHECKPOINT_NAME, _Checkpointed(training.module),
                        training.checkpoint_optimizer, step, history)
    barrier()


def _log(output: Path, row: dict[str, Any]) -> None:
    with open(output / LOG_NAME, "a") as f:
        f.write(json.dumps(row) + "\n")


def _write_config(args: argparse.Namespace, info: DistInfo, n_params: int, step: int) -> None:
    args.output.mkdir(parents=True, exist_ok=True)
    skip = ("func", "token_data", "resume")
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
              if k not in skip}
    config.update(vocab_size=args.token_data.vocab_size, num_params=n_params,
                  device=str(info.device), limitation=O3_LIMITATION
                  if args.precision == "fp8-o3" else None)
    from repro.io import atomic_write_text

    atomic_write_text(args.output / "config.json", json.dumps(config, indent=2) + "\n")
    print(f"gpt-{args.model} ({n_params / 1e6:.1f}M params, vocab {args.token_data.vocab_size}) "
          f"{args.precision} on {info.world_size} x {info.device}: {args.global_batch} x "
          f"{args.seq_len} tokens/step = {info.world_size} ranks x {args.micro_batch} x "
          f"{args.grad_accum} accum; lr {args.lr:g}, steps {step}..{_last_step(args)} of "
          f"{args.steps}", flush=True)
    if args.precision == "fp8-o3":
        print(f"note: {O3_LIMITATION}", flush=True)
    if args.model in ("13b", "175b"):
        print(f"note: the paper trains {args.model} with tensor/pipeline parallelism (Table 1);"
              " this entry point is data-parallel only", flush=True)


def _last_step(args: argparse.Namespace) -> int:
    return args.steps if args.max_steps is None else min(args.steps, args.max_steps)


def train(args: argparse.Namespace, info: DistInfo) -> History:
    """The loop: per step, ``grad_accum`` micro-batches (DDP ``no_sync`` but the last),
    gradient clipping, the optimizer step (skipped on a non-finite gradient norm)."""
    from repro.lm.model import lm_loss
    from repro.train import load_checkpoint

    cfg, data = MODELS[args.model], args.token_data
    model = build_model(cfg, data.vocab_size, seq_len=args.seq_len, seed=args.seed,
                        device=info.device)
    n_params = sum(p.numel() for p in model.parameters())
    training = build_training(model, args.precision, info, args.lr, args.comm_scheme)
    schedule = TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=args.warmup_steps,
                           schedule="cosine", min_lr_ratio=MIN_LR_RATIO, progress=False)
    start, history = 0, History()
    if args.resume is not None:
        start, history = load_checkpoint(args.resume, _Checkpointed(training.module),
                                        training.checkpoint_optimizer)
        if args.precision in LEVEL_OF:
            _load_fp8_state(args.resume.parent, info.rank, start, training)
    if info.is_main:
        _write_config(args, info, n_params, start)
    barrier()
    if info.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(info.device)
    optimizer, model_w = training.optimizer, training.model
    params = [p for p in training.module.parameters() if p.requires_grad]
    tokens_per_step = args.global_batch * args.seq_len
    last = _last_step(args)
    t_log, steps_since_log = time.perf_counter(), 0
    for step in range(start, last):
        factor = lr_factor(step, schedule)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * factor
        starts = global_batch_starts(len(data), step, args.global_batch, args.seq_len, args.seed)
        total = torch.zeros((), device=info.device)
        for micro in range(args.grad_accum):
            x, y = rank_batch(starts, data, info.rank, info.world_size, micro, args.micro_batch,
                              args.seq_len)
            sync = micro == args.grad_accum - 1 or not hasattr(model_w, "no_sync")
            with contextlib.nullcontext() if sync else model_w.no_sync():
                with _autocast(args.precision, info.device):
                    loss = lm_loss(model_w, (x.to(info.device), y.to(info.device)))
                (loss / args.grad_accum).backward()
            total += loss.detach()
        mean_loss = float(all_reduce_mean(total / args.grad_accum))
        if not math.isfinite(mean_loss):
            raise ReproError(f"training diverged: loss {mean_loss} at step {step}; lower --lr, "
                             f"or resume from the last checkpoint in {args.output}")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP))
        if math.isfinite(grad_norm):  # identical on every rank: the gradients are all-reduced
            optimizer.step()
        else:
            history.skipped_steps += 1
        optimizer.zero_grad(set_to_none=True)
        history.step.append(step)
        history.loss.append(mean_loss)
        history.lr.append(args.lr * factor)
        history.metrics.setdefault("grad_norm", []).append(grad_norm)
        steps_since_log += 1
        done = step + 1
        if done % args.log_every == 0 or done == last:
            if info.device.type == "cuda":
                torch.cuda.synchronize(info.device)
            elapsed = time.perf_counter() - t_log
            peak, kind = _peak_memory(info.device)
            row = {"step": done, "loss": mean_loss, "lr": args.lr * factor,
                   "grad_norm": grad_norm, "tokens_per_s": tokens_per_step * steps_since_log
                   / max(elapsed, 1e-9), "step_s": elapsed / steps_since_log,
                   "peak_mem_bytes": peak, "peak_mem_kind": kind,
                   "optimizer_state_bytes": optimizer_state_bytes(training),
                   "skipped_steps": history.skipped_steps}
            if training.comm_state is not None:
                row["mu"] = training.comm_state.autoscaler.mu
            if info.is_main:
                _log(args.output, row)
                print(f"step {done}: loss {mean_loss:.4f} lr {row['lr']:.3g} "
                      f"{row['tokens_per_s']:.4g} tok/s peak {peak / 2**30:.2f} GiB", flush=True)
            t_log, steps_since_log = time.perf_counter(), 0
        if done % args.save_every == 0 or done == last:
            _save(args, info, training, done, history)
    _finish(args, info, training, last)
    return history


def _finish(args: argparse.Namespace, info: DistInfo, training: Training, step: int) -> None:
    """Every rank's parameter digest, gathered into the log's last line: equal digests show the
    replicas (DDP, ZeRO's broadcast) hold identical weights."""
    digest = param_digest(training.module)
    digests = [digest]
    if info.distributed and torch.distributed.is_initialized():
        digests = [None] * info.world_size
        torch.distributed.all_gather_object(digests, digest)
    if info.is_main:
        _log(args.output, {"event": "end", "step": step, "param_digests": digests,
                           "replicas_equal": len(set(digests)) == 1})


def main(args: argparse.Namespace) -> int:
    """``repro train gpt``: check the input, then train under torchrun (or alone)."""
    args = resolve_args(args)
    info = init_from_env(device=args.device)
    try:
        train(args, info)
        return 0
    finally:
        shutdown()


def cli(argv: list[str] | None = None) -> int:
    """``python -m repro.lm.train_gpt``: the options of ``repro train gpt``, the same exit
    status 2 on bad input."""
    from repro.entry import standalone

    return standalone("python -m repro.lm.train_gpt", __doc__.split("\n\n")[0], add_arguments,
                      main, argv, formatter_class=argparse.RawTextHelpFormatter)


if __name__ == "__main__":
    raise SystemExit(cli())
