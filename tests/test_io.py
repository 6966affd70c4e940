"""Files the library writes appear complete or not at all (repro.io): here through the writers
that use it, CharTokenizer.save among them. A failure while writing (a full disk, simulated by
an fsync that fails) keeps the previous file and leaves no temporary beside it."""

from __future__ import annotations

import os

import pytest

from repro.lm.data import CharTokenizer


def _disk_full(fd):
    raise OSError(28, "No space left on device")


def test_tokenizer_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "tok.json"
    CharTokenizer.fit("abc").save(path)
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        CharTokenizer.fit("a longer vocabulary").save(path)
    assert path.read_bytes() == before and CharTokenizer.load(path).chars == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok.json"]


def test_tokenizer_save_creates_the_folder_and_load_names_a_damaged_file(tmp_path):
    path = tmp_path / "sub" / "tok.json"
    CharTokenizer.fit("hello").save(path)
    assert CharTokenizer.load(path).chars == ["e", "h", "l", "o"]
    path.write_text('{"type": "char", "chars": ["a"')  # cut short
    with pytest.raises(ValueError, match=f"{path} is not a CharTokenizer file"):
        CharTokenizer.load(path)
