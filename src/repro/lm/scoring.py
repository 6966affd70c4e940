"""Per-document perplexity under a meta-model, and the scoring entry point of ScalingFilter.

The public code (``scalingfilter/utils.py``, ``quality_factor.py``) pads every document to
1024 GPT-2 tokens with ``pad = eos`` (id 50256), runs the model in fp16 under DDP, and takes
the mean token cross-entropy over the positions whose label is not 50256. That mask also drops
genuine EOS tokens inside a text. Here the mask is explicit:

* :func:`pad_batch` returns the ids and a ``mask`` that is True on real tokens (padding is
  told apart by the lengths, not by the token id), and :func:`doc_mean_nll` averages the
  shifted token cross-entropy over ``mask[:, 1:]``;
* ``mask="eos"`` in :func:`score_documents` reproduces the public code's rule instead
  (ignore every label equal to the EOS id).

Documents longer than ``max_len`` are truncated (``long_docs="truncate"``, the public code's
choice at 1024) or scored in consecutive windows whose token losses are pooled
(``long_docs="chunk"``: the token-weighted mean, used at ci where the tiny models see 128
positions).

Full scale: :func:`load_meta_model` loads a GPT-2 checkpoint from a local folder through
transformers (``GPT2LMHeadModel.from_pretrained``, never ``trust_remote_code``); the HF pair
``gpt2`` (124M) and ``gpt2-large`` (774M) is described by ``data/manifests/gpt2-124m.yaml`` and
``gpt2-774m.yaml``. A missing folder raises :class:`DataUnavailableError` naming the manifest.
:func:`score_files` shards input files across ranks (``RANK``/``WORLD_SIZE`` from torchrun;
inference needs no process group) and writes one JSONL part per rank with the public code's
columns ``text, small_loss, large_loss, small_ppl, large_ppl, quality_factor``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, DataUnavailableError, ParameterError

__all__ = ["pad_batch", "doc_mean_nll", "score_documents", "MetaModel", "load_meta_model",
           "gpt2_pair", "GPT2_PAIR", "shard", "score_files", "main"]

GPT2_PAIR = {"small": "gpt2-124m", "large": "gpt2-774m"}  # manifest names (Hugging Face gpt2,
# gpt2-large)


def pad_batch(token_lists: Sequence[Sequence[int]], pad_id: int,
              max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``token_lists`` to one length; return ``(ids, mask)`` with ``mask`` True on
    real tokens. Lists longer than ``max_len`` are truncated."""
    if not token_lists:
        raise ParameterError("pad_batch needs at least one token list")
    lists = [list(t)[:max_len] if max_len else list(t) for t in token_lists]
    length = max(len(t) for t in lists)
    ids = torch.full((len(lists), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lists), length), dtype=torch.bool)
    for row, tokens in enumerate(lists):
        ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, :len(tokens)] = True
    return ids, mask


def _token_nll(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
               label_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of shifted token cross-entropies per row and the number of counted labels."""
    logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1].float()
    labels = ids[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                          reduction="none").view_as(labels)
    counted = label_mask[:, 1:]
    return (nll * counted).sum(dim=1), counted.sum(dim=1)


@torch.no_grad()
def doc_mean_nll(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) of each row over its real tokens.

    ``mask`` (True on real tokens) marks padding explicitly; the label at position t+1 counts
    when ``mask[:, t + 1]`` is True, so a row of n tokens averages n − 1 losses. A row with
    fewer than two real tokens has no label and gets NaN.
    """
    total, count = _token_nll(model, ids, mask, mask)
    return total / count.clamp_min(1) + torch.where(count > 0, 0.0, float("nan"))


def _windows(tokens: list[int], max_len: int, long_docs: str) -> list[list[int]]:
    if len(tokens) <= max_len or long_docs == "truncate":
        return [tokens[:max_len]]
    # consecutive windows overlapping by one token, so every next-token label is counted once
    step = max_len - 1
    return [tokens[i:i + max_len] for i in range(0, len(tokens) - 1, step)]


@torch.no_grad()
def score_documents(model: torch.nn.Module, token_lists: Sequence[Sequence[int]], pad_id: int,
                    *, max_len: int = 1024, batch_size: int = 12, long_docs: str = "truncate",
                    mask: str = "padding", device: torch.device | str | None = None,
                    desc: str = "score") -> torch.Tensor:
    """Mean token NLL (nats) of every document, in input order, as a float64 tensor.

    Batches group windows of similar length (less padding); results do not depend on
    ``batch_size``. ``mask="padding"`` counts every real token; ``mask="eos"`` also drops
    labels equal to ``pad_id`` (the public code's ``labels != 50256``).
    """
    from ..progress import progress

    if long_docs not in ("truncate", "chunk"):
        raise ParameterError(f"long_docs must be 'truncate' or 'chunk', got {long_docs!r}")
    if mask not in ("padding", "eos"):
        raise ParameterError(f"mask must be 'padding' or 'eos', got {mask!r}")
    if max_len < 2 or batch_size < 1:
        raise ParameterError(f"need max_len >= 2 and batch_size >= 1, got {max_len}, "
                             f"{batch_size}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    windows = [(doc, w) for doc, tokens in enumerate(token_lists)
               for w in _windows(list(tokens), max_len, long_docs)]
    order = sorted(range(len(windows)), key=lambda i: len(windows[i][1]))
    totals = torch.zeros(len(token_lists), dtype=torch.float64)
    counts = torch.zeros(len(token_lists), dtype=torch.float64)
    starts = range(0, len(order), batch_size)
    for start in progress(starts, total=len(starts), desc=desc, unit="batches"):
        chunk = [windows[i] for i in order[start:start + batch_size]]
        ids, real = pad_batch([w for _, w in chunk], pad_id)
        label_mask = real & (ids != pad_id) if mask == "eos" else real
        total, count = _token_nll(model, ids.to(device), real.to(device), label_mask.to(device))
        index = torch.tensor([doc for doc, _ in chunk])
        totals.index_add_(0, index, total.double().cpu())
        counts.index_add_(0, index, count.double().cpu())
    model.train(was_training)
    return torch.where(counts > 0, totals / counts.clamp_min(1), float("nan"))


# --------------------------------------------------------------------------- full scale
@dataclass
class MetaModel:
    """A causal LM with the tokenizer it reads (for the full-scale pair)."""

    model: torch.nn.Module
    tokenizer: object  # transformers tokenizer (fast) with pad = eos
    name: str = ""

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def load_meta_model(path: str | Path, manifest: str | None = None, *,
                    dtype: torch.dtype | None = None,
                    device: torch.device | str = "cpu") -> MetaModel:
    """A GPT-2-style checkpoint folder (``config.json``, ``model.safetensors``, tokenizer
    files) through transformers, offline. A missing folder raises DataUnavailableError naming
    ``data/manifests/<manifest>.yaml``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    needed = ("config.json", "model.safetensors")
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        where = f"data/manifests/{manifest}.yaml" if manifest else "its manifest"
        raise DataUnavailableError(
            f"meta-model weights not found: {path} lacks {', '.join(missing)}. See {where} for "
            "how to download them (e.g. `hf download openai-community/gpt2 --local-dir DIR`), "
            "then pass that folder or place it under $REPRO_DATA/<manifest name>.")
    try:
        kwargs = {"dtype": dtype} if dtype is not None else {}  # transformers >= 4.56 name
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                     use_safetensors=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"cannot load the meta-model at {path}: {err}") from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # the public code's pad = eos
    return MetaModel(model.to(device).eval(), tokenizer, name=path.name)


def gpt2_pair(small: str | Path | None = None, large: str | Path | None = None, *,
              dtype: torch.dtype | None = None,
              device: torch.device | str = "cpu") -> tuple[MetaModel, MetaModel]:
    """The paper's default meta-models, GPT-2 124M (small) and 774M (large), from local
    folders (default ``$REPRO_DATA/gpt2-124m`` and ``$REPRO_DATA/gpt2-774m``)."""
    from ..data.manifest import data_root

    folders = {"small": small, "large": large}
    models = []
    for role, manifest in GPT2_PAIR.items():
        folder = Path(folders[role]) if folders[role] is not None else data_root() / manifest
        models.append(load_meta_model(folder, manifest, dtype=dtype, device=device))
    small_model, large_model = models
    if small_model.tokenizer.get_vocab() != large_model.tokenizer.get_vocab():
        raise CheckpointError("the two meta-models must share one tokenizer (same vocabulary)")
    return small_model, large_model


def shard(files: Sequence[str | Path], rank: int, world_size: int) -> list[Path]:
    """Rank ``rank``'s share of ``files`` (sorted, then every ``world_size``-th one)."""
    if not 0 <= rank < world_size:
        raise ParameterError(f"rank must lie in [0, world_size), got {rank}, {world_size}")
    return [Path(f) for f in sorted(map(str, files))][rank::world_size]


def score_files(files: Sequence[str | Path], small: MetaModel, large: MetaModel,
                output_dir: str | Path, *, rank: int = 0, world_size: int = 1,
                max_len: int = 1024, batch_size: int = 12, mask: str = "eos",
                long_docs: str = "truncate", device: torch.device | str | None = None,
                ) -> Path:
    """Score this rank's share of ``files`` with both meta-models and write
    ``output_dir/part-{rank:05d}.jsonl`` (atomically) with one row per document."""
    from .text import read_documents, write_jsonl

    mine = shard(files, rank, world_size)
    for f in mine:  # check every input before any compute
        if not Path(f).is_file():
            raise DataUnavailableError(f"input file not found: {f}")
    docs = [d for f in mine for d in read_documents(f)]
    texts = [d.text for d in docs]
    rows = []
    if texts:
        ids = small.encode(texts)
        losses = {}
        for role, meta in (("small", small), ("large", large)):
            losses[role] = score_documents(meta.model, ids, meta.pad_id, max_len=max_len,
                                           batch_size=batch_size, mask=mask,
                                           long_docs=long_docs, device=device,
                                           desc=f"rank {rank}: {role}")
        for i, text in enumerate(texts):
            ls, ll = float(losses["small"][i]), float(losses["large"][i])
            rows.append({"text": text, "small_loss": ls, "large_loss": ll,
                         "small_ppl": math.exp(ls), "large_ppl": math.exp(ll),
                         "quality_factor": math.exp(ls - ll)})  # Eq. 1, natural base as code
    return write_jsonl(Path(output_dir) / f"part-{rank:05d}.jsonl", rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun --nproc-per-node N -m repro.lm.scoring FILES... --output DIR``."""
    from ..distributed import read_env

    parser = argparse.ArgumentParser(prog="python -m repro.lm.scoring",
                                     description="ScalingFilter quality factors of documents")
    parser.add_argument("files", nargs="+", help=".jsonl (text) or .jsonl.gz (raw_content)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--small", default=None, help="folder of the small meta-model")
    parser.add_argument("--large", default=None, help="folder of the large meta-model")
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--fp16", action="store_true", help="half precision, as the code")
    args = parser.parse_args(argv)
    env = read_env()
    rank, world_size, local_rank = env if env is not None else (0, 1, 0)
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if args.fp16 else None
    small, large = gpt2_pair(args.small, args.large, dtype=dtype, device=device)
    path = score_files(args.files, small, large, args.output, rank=rank, world_size=world_size,
                       max_len=args.max_len, batch_size=args.batch_size, device=device)
    print(f"rank {rank}/{world_size}: wrote {path}")
    return 0


if __name__ == "__main__":
    from ..entry import report_error
    from ..errors import ReproError

    try:
        raise SystemExit(main())
    except ReproError as err:
        raise SystemExit(report_error(err)) from None
