"""Per-document NLL with an explicit mask, the full-scale GPT-2 pair loader, sharded scoring."""

import json
import math

import pytest
import torch
from torch import nn

from repro.errors import DataUnavailableError, ParameterError
from repro.lm import scoring
from repro.lm.model import tiny_gpt2
from repro.lm.text import CorruptDataError, write_jsonl
from repro.lm.tokenizer import BPETokenizer

torch.set_num_threads(1)


class Bigram(nn.Module):
    """A context-free LM: the logits at t depend on the token at t only (a lookup table), so
    every per-token loss can be computed by hand."""

    def __init__(self, vocab: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=g))

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids]})()


def hand_nll(model: Bigram, tokens, skip=()):
    logp = torch.log_softmax(model.table.detach().double(), dim=-1)
    losses = [-float(logp[a, b]) for a, b in zip(tokens[:-1], tokens[1:]) if b not in skip]
    return sum(losses) / len(losses)


DOCS = [[1, 2, 3, 4, 5], [3, 3], [6, 1, 0, 2, 2, 2, 2, 4], [5, 4, 3]]


def test_pad_batch_marks_real_tokens():
    ids, mask = scoring.pad_batch([[4, 5, 6], [7]], pad_id=0)
    assert ids.tolist() == [[4, 5, 6], [7, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    ids, mask = scoring.pad_batch([[4, 5, 6], [7]], pad_id=0, max_len=2)
    assert ids.tolist() == [[4, 5], [7, 0]]


def test_doc_mean_nll_averages_real_labels_only():
    model = Bigram(8)
    ids, mask = scoring.pad_batch(DOCS, pad_id=0)  # 0 is also a real token of DOCS[2]
    got = scoring.doc_mean_nll(model, ids, mask)
    for row, tokens in enumerate(DOCS):
        assert float(got[row]) == pytest.approx(hand_nll(model, tokens), rel=1e-5)
    one, mask1 = scoring.pad_batch([[3]], pad_id=0)
    assert math.isnan(float(scoring.doc_mean_nll(model, one, mask1)[0]))


def test_eos_mask_drops_labels_equal_to_the_pad_id_as_the_public_code():
    model = Bigram(8)
    got = scoring.score_documents(model, DOCS, pad_id=0, mask="eos")
    assert float(got[2]) == pytest.approx(hand_nll(model, DOCS[2], skip={0}), rel=1e-5)
    assert float(got[0]) == pytest.approx(hand_nll(model, DOCS[0]), rel=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_score_documents_is_independent_of_batching_and_order(batch_size):
    model = tiny_gpt2(10, d_model=32, n_layers=1, max_seq=16, seed=1).eval()
    docs = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9]]
    reference = torch.stack([scoring.doc_mean_nll(model, *scoring.pad_batch([d], 0))[0]
                             for d in docs])
    got = scoring.score_documents(model, docs, pad_id=0, batch_size=batch_size)
    torch.testing.assert_close(got.float(), reference, rtol=1e-5, atol=1e-5)


def test_chunked_windows_count_every_label_once():
    # with a context-free model, windows overlapping by one token give the full-length mean
    model = Bigram(8)
    long = [1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2]
    chunked = scoring.score_documents(model, [long], pad_id=0, max_len=4, long_docs="chunk")
    assert float(chunked[0]) == pytest.approx(hand_nll(model, long), rel=1e-6)
    truncated = scoring.score_documents(model, [long], pad_id=0, max_len=4)
    assert float(truncated[0]) == pytest.approx(hand_nll(model, long[:4]), rel=1e-6)
    with pytest.raises(ParameterError, match="long_docs"):
        scoring.score_documents(model, [long], pad_id=0, long_docs="wrap")


# --------------------------------------------------------------------------- full scale
def test_missing_gpt2_weights_name_the_manifest(tmp_path):
    with pytest.raises(DataUnavailableError, match=r"data/manifests/gpt2-124m.yaml"):
        scoring.gpt2_pair(tmp_path / "nothing", tmp_path / "nothing-either")


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory):
    """A random-init GPT-2 pair saved as HF folders (safetensors + tokenizer), standing in
    offline for gpt2 / gpt2-large."""
    root = tmp_path_factory.mktemp("pair")
    tok = BPETokenizer.train(["the quick brown fox jumps over the lazy dog"] * 20, 280)
    for name, (d, layers) in {"small": (32, 1), "large": (64, 2)}.items():
        model = tiny_gpt2(tok.vocab_size, d, layers, max_seq=64, seed=0,
                          eos_token_id=tok.eos_id)
        model.save_pretrained(root / name)
        tok.to_transformers().save_pretrained(root / name)
    return root


def test_saved_pair_loads_and_scores_a_redpajama_fixture_sharded(saved_pair, tmp_path):
    small, large = scoring.gpt2_pair(saved_pair / "small", saved_pair / "large")
    assert (saved_pair / "small" / "model.safetensors").is_file()
    files = []
    for i in range(3):
        path = tmp_path / f"shard{i}.jsonl.gz"
        write_jsonl(path, [{"raw_content": f"the quick brown fox {i} {j}"} for j in range(2)])
        files.append(path)
    out = tmp_path / "scores"
    parts = [scoring.score_files(files, small, large, out, rank=r, world_size=2, max_len=64)
             for r in range(2)]
    rows = [json.loads(line) for p in parts for line in p.read_text().splitlines()]
    assert len(rows) == 6  # files 0 and 2 on rank 0, file 1 on rank 1: every doc once
    assert sorted(r["text"] for r in rows) == sorted(
        f"the quick brown fox {i} {j}" for i in range(3) for j in range(2))
    for r in rows:
        assert r["quality_factor"] == pytest.approx(r["small_ppl"] / r["large_ppl"])
        assert r["small_ppl"] == pytest.approx(math.exp(r["small_loss"]))
    first = rows[0]
    ids = small.encode([first["text"]])
    direct = scoring.score_documents(large.model, ids, large.pad_id, mask="eos")
    assert first["large_loss"] == pytest.approx(float(direct[0]), rel=1e-6)


def test_entry_point_reads_the_torchrun_rank(saved_pair, tmp_path, monkeypatch):
    files = []
    for i in range(2):
        files.append(write_jsonl(tmp_path / f"d{i}.jsonl", [{"text": f"lazy dog {i}"}]))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert scoring.main([*map(str, files), "--output", str(tmp_path / "out"),
                         "--small", str(saved_pair / "small"),
                         "--large", str(saved_pair / "large"), "--max-len", "64"]) == 0
    (part,) = (tmp_path / "out").iterdir()
    assert part.name == "part-00001.jsonl"
    assert [json.loads(x)["text"] for x in part.read_text().splitlines()] == ["lazy dog 1"]


def test_corrupt_input_fails_before_anything_is_written(saved_pair, tmp_path):
    small, large = scoring.gpt2_pair(saved_pair / "small", saved_pair / "large")
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08 truncated")
    out = tmp_path / "scores"
    with pytest.raises(CorruptDataError, match="bad.jsonl.gz"):
        scoring.score_files([bad], small, large, out)
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(ParameterError, match="rank must lie"):
        scoring.shard([bad], rank=2, world_size=2)
