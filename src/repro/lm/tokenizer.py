"""A byte-level BPE tokenizer trained locally with Hugging Face ``tokenizers`` (GPT-2's scheme).

GPT-2, the paper's meta-model pair, reads text through a byte-level BPE with one special
token, ``<|endoftext|>``, which the public ScalingFilter code also uses as the padding token.
:class:`BPETokenizer` is the same construction at toy size: ByteLevel pre-tokenizer and
decoder (every string round-trips, any script included), a vocabulary of 256 bytes plus the
learned merges plus ``<|endoftext|>``, trained on the chapter's clean corpus.

:func:`trained_tokenizer` caches the trained tokenizer on disk (``repro.cache``), keyed by the
training texts and the vocabulary size, so the chapter's notebooks train it once.
Files are written atomically through :mod:`repro.io`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import CheckpointError, ParameterError

__all__ = ["EOS_TOKEN", "BPETokenizer", "trained_tokenizer"]

EOS_TOKEN = "<|endoftext|>"
BYTE_ALPHABET = 256


class BPETokenizer:
    """A thin wrapper over a ``tokenizers.Tokenizer`` with byte-level BPE and one EOS token."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        eos = tokenizer.token_to_id(EOS_TOKEN)
        if eos is None:
            raise ParameterError(f"the tokenizer has no {EOS_TOKEN!r} token")
        self.eos_id: int = eos

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 512) -> BPETokenizer:
        """Learn ``vocab_size - 257`` merges on ``texts`` (256 bytes + EOS come first)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size <= BYTE_ALPHABET + 1:
            raise ParameterError(f"vocab_size must exceed {BYTE_ALPHABET + 1} (the byte "
                                 f"alphabet and {EOS_TOKEN}), got {vocab_size}")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[EOS_TOKEN], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
        tokenizer.train_from_iterator(list(texts), trainer=trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()  # type: ignore[union-attr]
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str, origin: str = "<string>") -> BPETokenizer:
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_str(text))
        except Exception as err:  # tokenizers raises a bare Exception on bad JSON
            raise CheckpointError(f"{origin} is not a valid tokenizer file ({err}); delete it "
                                  "and train the tokenizer again") from err

    def save(self, path: str | Path) -> Path:
        from ..io import atomic_write_text

        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no tokenizer file at {path}")
        return cls.from_json(path.read_text("utf-8"), origin=str(path))

    def to_transformers(self):
        """The same tokenizer as a ``transformers.PreTrainedTokenizerFast`` (EOS = pad, as the
        public code sets for GPT-2), e.g. to ``save_pretrained`` next to a model."""
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_object=self.tokenizer, eos_token=EOS_TOKEN,
                                       bos_token=EOS_TOKEN, pad_token=EOS_TOKEN)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def trained_tokenizer(texts: Sequence[str], vocab_size: int = 512) -> BPETokenizer:
    """:meth:`BPETokenizer.train` on ``texts``, cached on disk by a hash of the texts and the
    vocabulary size (and the library version, through :func:`repro.cache.cache_key`)."""
    from ..cache import cache_dir, cache_key

    digest = hashlib.sha256(json.dumps(list(texts)).encode("utf-8")).hexdigest()
    key = cache_key("bpe-tokenizer", {"texts": digest, "vocab": vocab_size})
    path = cache_dir() / f"{key}.json"
    if path.is_file():
        try:
            return BPETokenizer.load(path)
        except CheckpointError:  # a corrupt cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    tokenizer = BPETokenizer.train(texts, vocab_size)
    tokenizer.save(path)
    return tokenizer
