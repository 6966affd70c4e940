"""Byte-level BPE trained locally with tokenizers."""

import pytest

from repro.errors import CheckpointError, ParameterError
from repro.lm.tokenizer import EOS_TOKEN, BPETokenizer, trained_tokenizer

TEXTS = ["The for statement is used to iterate over the elements of a sequence.",
         "The while statement is used for repeated execution as long as an expression is true.",
         "The if statement is used for conditional execution."] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train(TEXTS, vocab_size=300)


def test_vocabulary_is_bytes_eos_and_merges(tokenizer):
    assert tokenizer.vocab_size == 300
    assert tokenizer.decode([tokenizer.eos_id]) == EOS_TOKEN
    # merges compress the training text below one token per byte
    text = TEXTS[0]
    assert len(tokenizer.encode(text)) < len(text.encode("utf-8")) / 2


@pytest.mark.parametrize("text", ["plain ascii", "mixed: Ελληνικά, кириллица, 中文 ✓ 😀",
                                  "  leading spaces\n\ttabs\r\n", ""])
def test_any_string_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_unseen_script_falls_back_to_bytes(tokenizer):
    # three UTF-8 bytes per CJK character, none merged: one token per byte
    assert len(tokenizer.encode("中文字")) == 9


def test_save_load_gives_identical_ids(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "sub" / "tok.json")
    again = BPETokenizer.load(path)
    for text in TEXTS[:3] + ["Ελληνικά"]:
        assert again.encode(text) == tokenizer.encode(text)
    assert [p.name for p in path.parent.iterdir()] == ["tok.json"]  # no temporary left


def test_transformers_view_encodes_the_same_and_pads_with_eos(tokenizer):
    fast = tokenizer.to_transformers()
    assert fast(TEXTS[1], add_special_tokens=False)["input_ids"] == tokenizer.encode(TEXTS[1])
    assert fast.pad_token_id == tokenizer.eos_id == fast.eos_token_id


def test_bad_vocab_size_and_corrupt_file_are_refused(tmp_path):
    with pytest.raises(ParameterError, match="vocab_size must exceed 257"):
        BPETokenizer.train(TEXTS, vocab_size=257)
    bad = tmp_path / "tok.json"
    bad.write_text('{"model": ')
    with pytest.raises(CheckpointError, match="tok.json is not a valid tokenizer file"):
        BPETokenizer.load(bad)
    with pytest.raises(CheckpointError, match="no tokenizer file"):
        BPETokenizer.load(tmp_path / "absent.json")


def test_trained_tokenizer_is_cached_and_a_corrupt_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    first = trained_tokenizer(TEXTS, 290)
    (entry,) = tmp_path.glob("bpe-tokenizer-*.json")

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(BPETokenizer, "train", no_training)
    assert trained_tokenizer(TEXTS, 290).encode(TEXTS[0]) == first.encode(TEXTS[0])
    monkeypatch.undo()
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    entry.write_text("garbage")
    assert trained_tokenizer(TEXTS, 290).encode(TEXTS[0]) == first.encode(TEXTS[0])
    assert BPETokenizer.load(entry).vocab_size == 290
