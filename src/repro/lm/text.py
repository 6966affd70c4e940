"""Documents for the data-filtering chapter: a clean corpus, seeded low-quality kinds, readers.

ScalingFilter (Li et al., EMNLP 2024) filters a Common Crawl pool against what a pair of
meta-models learned on a reference corpus (WebText for the GPT-2 pair). Offline, the stand-ins
are:

* **clean** documents: Python's own documentation, ``pydoc_data.topics`` (79 help topics of
  English prose and code, shipped with CPython), cut into documents of a few hundred characters
  along paragraph boundaries, plus optional standard-library docstrings. Each clean document
  names its *source* (the help topic or the module), which the diversity notebook uses as
  the analogue of the paper's data sources;
* five seeded generators of the junk the paper's filters meet in Common Crawl, each made from a
  clean document of the same split so lengths match: ``shuffle`` (the words of a clean
  document in random order), ``mash`` (keyboard noise), ``boilerplate`` (one sentence
  repeated), ``spam`` (a filled-in advertising template) and ``mixed`` (mixed-script junk).

Every :class:`Document` carries its ``kind``, so a filter's selection can be broken down by
kind. :func:`make_corpus` returns the three splits the chapter needs: the *reference* corpus
(clean training documents), the *raw* corpus (the same plus junk made from them: the analogue
of meta-models trained on unfiltered CC, Table 2) and the held-out *pool* to be filtered.

Readers for the full-scale formats: JSONL with a ``text`` field (the public code's input) and
RedPajama's ``.jsonl.gz`` with ``raw_content``. A corrupt file raises :class:`CorruptDataError`
naming the file and the line.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptDataError, DataUnavailableError, ParameterError

__all__ = ["Document", "Corpus", "CorruptDataError", "NOISE_KINDS", "KINDS", "clean_documents",
           "docstring_documents", "make_noise", "make_corpus", "read_jsonl", "read_redpajama",
           "read_documents", "write_jsonl"]

NOISE_KINDS = ("shuffle", "mash", "boilerplate", "spam", "mixed")
KINDS = ("clean", *NOISE_KINDS)

# A few stdlib modules whose docstrings are long English prose (a second family of sources).
DOCSTRING_MODULES = ("argparse", "collections", "contextlib", "dataclasses", "decimal",
                     "fractions", "functools", "heapq", "itertools", "json", "logging",
                     "pathlib", "random", "statistics", "string", "textwrap", "typing")


@dataclass(frozen=True)
class Document:
    text: str
    kind: str = "clean"  # one of KINDS
    source: str = ""  # pydoc topic or module for clean text; the clean parent for junk
    doc_id: str = ""

    @property
    def is_clean(self) -> bool:
        return self.kind == "clean"


@dataclass
class Corpus:
    """The chapter's three splits (see :func:`make_corpus`)."""

    reference: list[Document]
    raw: list[Document]
    pool: list[Document]
    seed: int = 0
    params: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- clean text
def _pack_paragraphs(paragraphs: Sequence[str], min_chars: int, max_chars: int) -> list[str]:
    """Merge consecutive paragraphs into documents of ``min_chars``..``max_chars`` characters;
    a paragraph longer than ``max_chars`` is cut at a sentence or word boundary."""
    pieces: list[str] = []
    for para in paragraphs:
        while len(para) > max_chars:
            cut = para.rfind(". ", min_chars // 2, max_chars)
            cut = cut + 1 if cut > 0 else para.rfind(" ", min_chars // 2, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(para[:cut].strip())
            para = para[cut:].strip()
        if para:
            pieces.append(para)
    docs, current = [], ""
    for piece in pieces:
        candidate = f"{current}\n\n{piece}" if current else piece
        if len(candidate) > max_chars and current:
            if len(current) >= min_chars:
                docs.append(current)
            current = piece
        else:
            current = candidate
        if len(current) >= min_chars:
            docs.append(current)
            current = ""
    if len(current) >= min_chars:
        docs.append(current)
    return docs


def _paragraphs(text: str) -> list[str]:
    paras = [re.sub(r"[ \t]+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return [p for p in paras if len(p) >= 20]


def clean_documents(min_chars: int = 200, max_chars: int = 800) -> list[Document]:
    """Python's documentation topics cut into documents (in sorted topic order, deterministic).

    Each document names its topic as ``source``. Only characters of the topics appear (ASCII
    plus a few typographic symbols).
    """
    from pydoc_data.topics import topics

    if not 0 < min_chars <= max_chars:
        raise ParameterError(f"need 0 < min_chars <= max_chars, got {min_chars}, {max_chars}")
    docs = []
    for key in sorted(topics):
        for i, text in enumerate(_pack_paragraphs(_paragraphs(topics[key]), min_chars,
                                                  max_chars)):
            docs.append(Document(text, "clean", key, f"pydoc/{key}/{i}"))
    return docs


def docstring_documents(modules: Sequence[str] = DOCSTRING_MODULES, min_chars: int = 200,
                        max_chars: int = 800) -> list[Document]:
    """Docstrings of standard-library modules (module, classes, functions), as documents.

    The text depends on the Python version; within one interpreter it is deterministic.
    """
    import importlib
    import inspect

    docs = []
    for name in modules:
        module = importlib.import_module(name)
        texts = [inspect.getdoc(module) or ""]
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            texts.append(inspect.getdoc(obj) or "")
        paras = [p for t in texts for p in _paragraphs(t)]
        for i, text in enumerate(_pack_paragraphs(paras, min_chars, max_chars)):
            docs.append(Document(text, "clean", f"module:{name}", f"doc/{name}/{i}"))
    return docs


# --------------------------------------------------------------------------- junk
_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm1234567890;,./[]"
_SCRIPTS = [(0x0400, 0x04FF), (0x0370, 0x03FF), (0x4E00, 0x4FFF), (0x0600, 0x06FF),
            (0x3040, 0x309F), (0x0E00, 0x0E7F), (0x2500, 0x257F)]
_SPAM_TEMPLATES = [
    "BUY {item} NOW!!! Best price {price} only today. Click here {url} for FREE shipping. "
    "Limited offer, {item} cheap cheap cheap. ",
    "Hot deal: {item} for just {price}! Visit {url} now. Don't miss out, order {item} today "
    "and save! ",
    "CLICK HERE >>> {url} <<< {item} {item} {item} lowest price {price} guaranteed!!! ",
]
_SPAM_ITEMS = ["watches", "pills", "casino chips", "loans", "sneakers", "crypto coins",
               "phone cases", "diet tea", "followers"]


def _target_length(parent: str, rng: random.Random) -> int:
    return max(80, int(len(parent) * rng.uniform(0.8, 1.2)))


def _shuffle(parent: str, rng: random.Random) -> str:
    words = parent.split()
    rng.shuffle(words)
    return " ".join(words)


def _mash(parent: str, rng: random.Random) -> str:
    n, out = _target_length(parent, rng), []
    while sum(map(len, out)) < n:
        out.append("".join(rng.choice(_KEYBOARD) for _ in range(rng.randint(2, 9))) + " ")
    return "".join(out).strip()[:n]


def _boilerplate(parent: str, rng: random.Random) -> str:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", parent) if len(s.strip()) > 20]
    sentence = rng.choice(sentences) if sentences else parent[:80]
    n, out = _target_length(parent, rng), []
    while sum(len(s) + 1 for s in out) < n or len(out) < 3:
        out.append(sentence)
    return " ".join(out)


def _spam(parent: str, rng: random.Random) -> str:
    n, out = _target_length(parent, rng), []
    while sum(map(len, out)) < n:
        template = rng.choice(_SPAM_TEMPLATES)
        out.append(template.format(item=rng.choice(_SPAM_ITEMS),
                                   price=f"${rng.randint(1, 99)}.{rng.randint(0, 99):02d}",
                                   url=f"www.{rng.choice(_SPAM_ITEMS).replace(' ', '')}"
                                       f"-{rng.randint(1, 999)}.biz"))
    return "".join(out).strip()


def _mixed(parent: str, rng: random.Random) -> str:
    n, out = _target_length(parent, rng), []
    words = parent.split() or ["x"]
    while sum(map(len, out)) < n:
        if rng.random() < 0.3:
            out.append(rng.choice(words) + " ")
        else:
            lo, hi = rng.choice(_SCRIPTS)
            out.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(2, 7)))
                       + rng.choice([" ", " ", "|", "… ", "@"]))
    return "".join(out).strip()[:n]


_GENERATORS = {"shuffle": _shuffle, "mash": _mash, "boilerplate": _boilerplate,
               "spam": _spam, "mixed": _mixed}


def make_noise(parents: Sequence[Document], n: int, seed: int = 0,
               kinds: Sequence[str] = NOISE_KINDS) -> list[Document]:
    """``n`` junk documents spread evenly over ``kinds``, each made from a random clean
    parent (its length, its words); deterministic in ``seed``."""
    unknown = [k for k in kinds if k not in _GENERATORS]
    if unknown:
        raise ParameterError(f"unknown noise kind(s) {unknown}; known: {', '.join(NOISE_KINDS)}")
    if n and not parents:
        raise ParameterError("make_noise needs at least one clean parent document")
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        parent = parents[rng.randrange(len(parents))]
        docs.append(Document(_GENERATORS[kind](parent.text, rng), kind, parent.doc_id,
                             f"{kind}/{seed}/{i}"))
    return docs


def make_corpus(seed: int = 0, holdout: float = 0.2, noise_ratio: float = 0.6,
                min_chars: int = 200, max_chars: int = 800, docstrings: bool = False,
                max_clean: int | None = None) -> Corpus:
    """The chapter's data: reference (clean train), raw (clean train + junk) and pool
    (held-out clean + junk made from held-out documents), ``noise_ratio`` junk documents per
    clean one, spread evenly over the five kinds. The clean documents are split at random
    (``seed``) so every source appears in both splits."""
    if not 0.0 < holdout < 1.0:
        raise ParameterError(f"holdout is the pool's share and must lie in (0, 1), got {holdout}")
    if noise_ratio < 0:
        raise ParameterError(f"noise_ratio must be >= 0, got {noise_ratio}")
    clean = clean_documents(min_chars, max_chars)
    if docstrings:
        clean += docstring_documents(min_chars=min_chars, max_chars=max_chars)
    rng = random.Random(seed)
    order = list(range(len(clean)))
    rng.shuffle(order)
    if max_clean is not None:
        order = order[:max_clean]
    n_pool = int(round(len(order) * holdout))
    pool_clean = [clean[i] for i in sorted(order[:n_pool])]
    train_clean = [clean[i] for i in sorted(order[n_pool:])]
    raw = train_clean + make_noise(train_clean, int(round(noise_ratio * len(train_clean))),
                                   seed=2 * seed)
    pool = pool_clean + make_noise(pool_clean, int(round(noise_ratio * len(pool_clean))),
                                   seed=2 * seed + 1)
    params = dict(seed=seed, holdout=holdout, noise_ratio=noise_ratio, min_chars=min_chars,
                  max_chars=max_chars, docstrings=docstrings, max_clean=max_clean)
    return Corpus(train_clean, raw, pool, seed, params)


# --------------------------------------------------------------------------- readers
def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from enumerate(f, 1)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        # gzip.BadGzipFile is an OSError; a truncated member ends in EOFError
        raise CorruptDataError(
            f"{path} is corrupt or truncated ({type(err).__name__}: {err}). Download it again "
            "(check its size and hash against the manifest).") from err


def _read(path: str | Path, field_name: str, limit: int | None) -> list[Document]:
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"no such data file: {path}")
    docs = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorruptDataError(f"{path}, line {number}: not valid JSON ({err.msg}); the "
                                   "file is corrupt or not JSON Lines") from err
        if not isinstance(row, dict) or not isinstance(row.get(field_name), str):
            raise CorruptDataError(f"{path}, line {number}: no string field {field_name!r} "
                                   f"(this reader expects one JSON object per line with "
                                   f"{field_name!r})")
        kind = row.get("kind", "unknown") if isinstance(row.get("kind"), str) else "unknown"
        docs.append(Document(row[field_name], kind, str(row.get("source", path.name)),
                             str(row.get("id", f"{path.name}:{number}"))))
        if limit is not None and len(docs) >= limit:
            break
    return docs


def read_jsonl(path: str | Path, field_name: str = "text",
               limit: int | None = None) -> list[Document]:
    """Documents of a JSON Lines file (plain or ``.gz``) with a ``text`` field."""
    return _read(path, field_name, limit)


def read_redpajama(path: str | Path, limit: int | None = None) -> list[Document]:
    """Documents of a RedPajama(-V2) ``.jsonl.gz`` file, whose text is in ``raw_content``."""
    return _read(path, "raw_content", limit)


def read_documents(path: str | Path, limit: int | None = None) -> list[Document]:
    """Dispatch on the name: ``*.jsonl.gz`` / ``*.json.gz`` is RedPajama (``raw_content``),
    ``*.jsonl`` / ``*.json`` is plain JSONL (``text``), as in the public scoring script."""
    name = Path(path).name
    if name.endswith((".jsonl.gz", ".json.gz")):
        return read_redpajama(path, limit)
    if name.endswith((".jsonl", ".json")):
        return read_jsonl(path, limit=limit)
    raise ParameterError(f"{path}: unknown format; expected .jsonl (field 'text') or "
                         ".jsonl.gz (RedPajama, field 'raw_content')")


def write_jsonl(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write rows as JSON Lines atomically (gzip-compressed when the name ends in .gz)."""
    from ..io import atomic_write_bytes

    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data)
