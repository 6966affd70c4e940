"""Tiny language-model pieces shared by the book's LLM chapters (FP8-LM, ScalingFilter, Xwin).

* :mod:`repro.lm.data` — a character tokenizer, Python's own documentation as a corpus
  (``pydoc_data.topics``), a train/val split and a seeded, resumable batch sampler;
* :mod:`repro.lm.model` — a tiny Llama and a tiny GPT-2 (transformers, random init, no
  download) and the next-token loss;
* :mod:`repro.lm.tokenizer` — a byte-level BPE trained locally with ``tokenizers``;
* :mod:`repro.lm.text` — the clean corpus, seeded generators of low-quality web text, and
  readers for JSONL and RedPajama files;
* :mod:`repro.lm.scoring` — per-document mean token NLL, sharded scoring under torchrun;
* :mod:`repro.lm.scalingfilter`, :mod:`repro.lm.alignment`, :mod:`repro.lm.mathreason` — the
  ScalingFilter, Xwin-LM and Xwin-Math chapters.

Names are exported lazily, so ``import repro.lm`` imports neither torch nor transformers.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "CharTokenizer": "data", "pydoc_text": "data", "train_val_split": "data",
    "batch_at": "data",
    "tiny_llama": "model", "lm_loss": "model", "tiny_gpt2": "model",
    "BPETokenizer": "tokenizer", "trained_tokenizer": "tokenizer",
    "Document": "text", "make_corpus": "text", "read_jsonl": "text", "read_redpajama": "text",
    "doc_mean_nll": "scoring", "score_documents": "scoring", "gpt2_pair": "scoring",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
