"""Atomic file writes: every file the library writes appears complete or not at all.

The data goes to a temporary file in the destination's own folder (so the final rename stays
on one file system), is flushed and fsynced, and only then replaces the destination with
``os.replace``. A crash, a full disk or an exception half-way leaves the previous file (or no
file) at the path and no stray temporary behind.

    with atomic_write("out/table.md") as f:        # text; "wb" for bytes
        f.write(text)
    atomic_write_text("tok.json", json.dumps(vocab))
    atomic_save("model.safetensors", lambda tmp: save_file(tensors, tmp))  # a writer that
                                                                             # wants a path
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "atomic_save"]


def _tmp_name(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not allow opening a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_destination(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a file: give a file path")
    parent = path.parent
    for p in (parent, *parent.parents):
        if p.exists():
            if not p.is_dir():
                raise NotADirectoryError(f"cannot write {path}: {p} is a file, not a folder")
            break


def _prepare(path: Path, mkdir: bool) -> Path:
    """Check the destination, make its folder, and return a fresh temporary sibling."""
    _check_destination(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    return _tmp_name(path)


def _commit(tmp: Path, path: Path) -> None:
    """Give the fsynced temporary ordinary permissions and move it into place."""
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                 mkdir: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = _prepare(path, mkdir)
    try:
        kwargs = {"encoding": encoding} if mode == "w" else {}
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_write(path, "wb", encoding=None) as f:
        f.write(data)
    return Path(path)


def atomic_save(path: str | Path, writer: Callable[[str], Any], mkdir: bool = True) -> Path:
    """Call ``writer(tmp_path)`` (a function that writes a file at a path, such as
    ``safetensors.torch.save_file`` or ``torch.onnx.export``), fsync it, then move it to
    ``path``. Nothing is left at ``path`` or beside it if ``writer`` raises."""
    path = Path(path)
    tmp = _prepare(path, mkdir)
    try:
        writer(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _commit(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
