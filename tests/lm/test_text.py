"""The chapter's documents: clean corpus, junk generators, splits and real-format readers."""

import gzip
import json
from collections import Counter

import pytest

from repro.errors import DataUnavailableError, ParameterError
from repro.lm import text as tx


def test_clean_documents_respect_the_length_bounds_and_name_their_topic():
    from pydoc_data.topics import topics

    docs = tx.clean_documents(200, 800)
    assert len(docs) > 500
    assert all(200 <= len(d.text) <= 800 for d in docs)
    assert all(d.kind == "clean" and d.source in topics for d in docs)
    assert len({d.doc_id for d in docs}) == len(docs)
    assert docs == tx.clean_documents(200, 800)  # deterministic


def test_docstring_documents_come_from_the_named_modules():
    docs = tx.docstring_documents(["json", "textwrap"])
    assert docs and {d.source for d in docs} <= {"module:json", "module:textwrap"}


@pytest.fixture(scope="module")
def parents():
    return tx.clean_documents()[:40]


def test_shuffle_keeps_the_words_of_its_parent(parents):
    (doc,) = tx.make_noise(parents, 1, seed=0, kinds=["shuffle"])
    parent = next(p for p in parents if p.doc_id == doc.source)
    assert Counter(doc.text.split()) == Counter(parent.text.split())
    assert doc.text.split() != parent.text.split()


def test_boilerplate_is_one_sentence_repeated(parents):
    for doc in tx.make_noise(parents, 5, seed=1, kinds=["boilerplate"]):
        parent = next(p for p in parents if p.doc_id == doc.source)
        n = len(doc.text)
        repeats = [k for k in range(3, 60) if (n + 1) % k == 0
                   and " ".join([doc.text[:(n + 1) // k - 1]] * k) == doc.text]
        assert repeats, "not one sentence repeated at least three times"
        unit = doc.text[:(n + 1) // repeats[0] - 1]
        assert unit in parent.text


def test_mash_spam_and_mixed_look_like_their_kind(parents):
    docs = {d.kind: d for d in tx.make_noise(parents, 5, seed=2)}
    assert set(docs["mash"].text) <= set(tx._KEYBOARD + " ")
    assert "www." in docs["spam"].text and ".biz" in docs["spam"].text
    assert sum(ord(c) > 0x36F for c in docs["mixed"].text) > 20  # non-Latin scripts


def test_noise_is_even_over_kinds_seeded_and_refuses_unknown_kinds(parents):
    a = tx.make_noise(parents, 10, seed=3)
    assert Counter(d.kind for d in a) == dict.fromkeys(tx.NOISE_KINDS, 2)
    assert a == tx.make_noise(parents, 10, seed=3)
    assert a != tx.make_noise(parents, 10, seed=4)
    with pytest.raises(ParameterError, match="unknown noise kind"):
        tx.make_noise(parents, 2, kinds=["lorem"])


def test_make_corpus_splits_without_leaks():
    corpus = tx.make_corpus(seed=0, holdout=0.2, noise_ratio=0.6)
    ref_ids = {d.doc_id for d in corpus.reference}
    pool_clean = [d for d in corpus.pool if d.is_clean]
    assert not ref_ids & {d.doc_id for d in pool_clean}
    assert all(d.is_clean for d in corpus.reference)
    # junk of the pool is made from held-out documents only, junk of raw from reference ones
    assert {d.source for d in corpus.pool if not d.is_clean} <= {d.doc_id for d in pool_clean}
    assert {d.source for d in corpus.raw if not d.is_clean} <= ref_ids
    n_junk = sum(not d.is_clean for d in corpus.pool)
    assert n_junk == round(0.6 * len(pool_clean))
    assert len(pool_clean) == round(0.2 * (len(pool_clean) + len(corpus.reference)))
    with pytest.raises(ParameterError, match="holdout"):
        tx.make_corpus(holdout=1.0)


# --------------------------------------------------------------------------- readers
def test_jsonl_and_redpajama_readers_read_their_formats(tmp_path):
    tx.write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}, {"text": "two", "kind": "spam"}])
    rows = [{"raw_content": "héllo wörld", "doc_id": 1}, {"raw_content": "second"}]
    tx.write_jsonl(tmp_path / "b.jsonl.gz", rows)
    with gzip.open(tmp_path / "b.jsonl.gz", "rt") as f:  # a real gzip file
        assert json.loads(f.readline())["raw_content"] == "héllo wörld"
    a = tx.read_documents(tmp_path / "a.jsonl")
    assert [d.text for d in a] == ["one", "two"] and a[1].kind == "spam"
    b = tx.read_documents(tmp_path / "b.jsonl.gz")
    assert [d.text for d in b] == ["héllo wörld", "second"]
    assert len(tx.read_redpajama(tmp_path / "b.jsonl.gz", limit=1)) == 1


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "shard.jsonl.gz"
    tx.write_jsonl(path, [{"raw_content": "x" * 1000 + str(i)} for i in range(200)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(tx.CorruptDataError, match="shard.jsonl.gz is corrupt or truncated"):
        tx.read_redpajama(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(tx.CorruptDataError, match="shard.jsonl.gz"):
        tx.read_redpajama(path)


def test_bad_json_and_missing_field_name_the_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(tx.CorruptDataError, match=r"docs.jsonl, line 2: not valid JSON"):
        tx.read_jsonl(path)
    path.write_text('{"text": "fine"}\n{"content": "wrong field"}\n')
    with pytest.raises(tx.CorruptDataError, match=r"line 2: no string field 'text'"):
        tx.read_jsonl(path)
    # RedPajama's field is raw_content, so a plain-JSONL file read as RedPajama fails clearly
    with pytest.raises(tx.CorruptDataError, match="raw_content"):
        tx.read_redpajama(path)


def test_missing_file_and_unknown_format_are_refused(tmp_path):
    with pytest.raises(DataUnavailableError, match="no such data file"):
        tx.read_jsonl(tmp_path / "absent.jsonl")
    with pytest.raises(ParameterError, match="unknown format"):
        tx.read_documents(tmp_path / "docs.parquet")
