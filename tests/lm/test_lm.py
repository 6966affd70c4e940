"""Tiny LM pieces: tokenizer, corpus, batches, model size and loss."""

import math

import pytest
import torch

from repro.lm.data import CharTokenizer, batch_at, pydoc_text, train_val_split
from repro.lm.model import lm_loss, tiny_llama

torch.set_num_threads(1)


def test_tokenizer_round_trip_and_save_load(tmp_path):
    text = pydoc_text()[:20_000]
    tok = CharTokenizer.fit(text)
    ids = tok.encode(text)
    assert tok.vocab_size == len(set(text))
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text
    assert sorted(tok.chars) == tok.chars and max(ids) == tok.vocab_size - 1
    tok.save(tmp_path / "tok.json")
    again = CharTokenizer.load(tmp_path / "tok.json")
    assert again.chars == tok.chars and again.encode(text) == ids


def test_tokenizer_rejects_unknown_characters_and_bad_files(tmp_path):
    tok = CharTokenizer.fit("abc")
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("abz")
    (tmp_path / "bad.json").write_text('{"type": "bpe"}')
    with pytest.raises(ValueError, match="not a CharTokenizer"):
        CharTokenizer.load(tmp_path / "bad.json")


def test_pydoc_text_concatenates_topics_in_sorted_order():
    from pydoc_data.topics import topics

    text = pydoc_text()
    keys = sorted(topics)
    assert text.startswith(topics[keys[0]]) and text.endswith(topics[keys[-1]])
    assert len(text) == sum(len(v) for v in topics.values()) + 2 * (len(keys) - 1)
    assert pydoc_text() == text


def test_train_val_split_is_contiguous():
    ids = torch.arange(1000)
    train, val = train_val_split(ids, 0.9)
    assert torch.equal(train, torch.arange(900)) and torch.equal(val, torch.arange(900, 1000))
    with pytest.raises(ValueError, match="training fraction"):
        train_val_split(ids, 1.5)


def test_batch_at_is_a_pure_function_of_step_and_seed():
    ids = torch.arange(10_000)  # token value = position, so windows are easy to check
    x, y = batch_at(ids, step=3, batch_size=8, seq_len=16, seed=0)
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.long
    assert torch.equal(x - x[:, :1], torch.arange(16).expand(8, 16))  # contiguous windows
    assert torch.equal(y, x + 1)  # next tokens
    x2, y2 = batch_at(ids, step=3, batch_size=8, seq_len=16, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(batch_at(list(range(10_000)), 3, 8, 16, seed=0)[0], x)
    assert not torch.equal(batch_at(ids, 4, 8, 16, seed=0)[0], x)
    assert not torch.equal(batch_at(ids, 3, 8, 16, seed=1)[0], x)
    assert int(y.max()) < 10_000
    with pytest.raises(ValueError, match="seq_len"):
        batch_at(ids[:16], 0, 2, 16)


def hand_param_count(vocab, d, layers, mlp):
    embedding = vocab * d
    attention = 4 * d * d  # q, k, v, o projections, as many KV heads as heads, no bias
    mlp_params = 3 * d * mlp  # gate, up, down
    norms = 2 * d  # input and post-attention RMSNorm weights
    final_norm, lm_head = d, vocab * d
    return embedding + layers * (attention + mlp_params + norms) + final_norm + lm_head


@pytest.mark.parametrize("d, layers, heads, mlp", [(128, 2, 4, 336), (64, 3, 2, 96)])
def test_tiny_llama_parameter_count_matches_hand_count(d, layers, heads, mlp):
    model = tiny_llama(103, d_model=d, n_layers=layers, n_heads=heads, mlp=mlp)
    assert sum(p.numel() for p in model.parameters()) == hand_param_count(103, d, layers, mlp)
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # untied
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_tiny_llama_default_is_416k_parameters():
    model = tiny_llama(103)
    assert sum(p.numel() for p in model.parameters()) == 416_128


def test_tiny_llama_init_depends_only_on_the_seed():
    state = torch.get_rng_state()
    a, b, c = (tiny_llama(50, d_model=32, n_layers=1, mlp=64, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)  # global RNG restored
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_lm_loss_at_init_is_close_to_log_vocab():
    model = tiny_llama(103, d_model=64, n_layers=1, mlp=96)
    x, y = batch_at(torch.randint(0, 103, (5000,)), 0, 4, 32)
    with torch.no_grad():
        loss = lm_loss(model, (x, y))
    assert loss.shape == ()
    assert abs(loss.item() - math.log(103)) < 0.1  # near-uniform predictions at init
