"""repro.cache: an entry is built once, reused while intact, and rebuilt (never trusted) when it
is unreadable, altered, written for another key, or lacks its content hash."""

from __future__ import annotations

import pytest
import torch

from repro import cache


@pytest.fixture
def counted(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4),
                "ids": torch.tensor([3, 1, 2])}

    return build, calls


def _entry(tmp_path):
    (path,) = (tmp_path / "cache").glob("*.safetensors")
    return path


def _expected():
    return torch.arange(12, dtype=torch.float32).reshape(3, 4), torch.tensor([3, 1, 2])


def test_an_intact_entry_is_built_once_and_reused(counted, tmp_path):
    build, calls = counted
    first = cache.cached_tensors("toy", {"n": 3}, build)
    again = cache.cached_tensors("toy", {"n": 3}, build)
    assert len(calls) == 1
    w, ids = _expected()
    assert torch.equal(again["w"], w) and torch.equal(again["ids"], ids)
    assert torch.equal(first["w"], w)
    cache.cached_tensors("toy", {"n": 4}, build)  # other params: another entry
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["flip-a-bit", "truncate", "garbage"])
def test_a_corrupt_or_altered_entry_is_rebuilt_never_trusted(counted, tmp_path, damage):
    build, calls = counted
    cache.cached_tensors("toy", {}, build)
    path = _entry(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "flip-a-bit":
        data[-5] ^= 0x10  # still a valid safetensors file, with one value changed
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"not safetensors at all")
    path.write_bytes(bytes(data))
    got = cache.cached_tensors("toy", {}, build)
    assert len(calls) == 2  # rebuilt
    w, ids = _expected()
    assert torch.equal(got["w"], w) and torch.equal(got["ids"], ids)
    assert cache.cached_tensors("toy", {}, build)["ids"].tolist() == [3, 1, 2]
    assert len(calls) == 2  # and the rebuilt entry is trusted again
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporaries


def test_an_entry_without_a_content_hash_or_for_another_key_is_rebuilt(counted, tmp_path):
    from safetensors.torch import save_file

    build, calls = counted
    cache.cached_tensors("toy", {}, build)
    path = _entry(tmp_path)
    save_file({"w": torch.zeros(3, 4), "ids": torch.zeros(3, dtype=torch.long)}, str(path))
    assert cache.cached_tensors("toy", {}, build)["ids"].tolist() == [3, 1, 2]
    assert len(calls) == 2
    other = cache.cache_dir() / f"{cache.cache_key('other', {})}.safetensors"
    other.write_bytes(path.read_bytes())  # a valid entry, but renamed to another key
    cache.cached_tensors("other", {}, build)
    assert len(calls) == 3
