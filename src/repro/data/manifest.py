"""Manifests of real data sets and checkpoints, and verified fetching (CONTRACT §5).

One YAML file per item in ``data/manifests/``::

    name: efficientvit_m0_in1k
    kind: checkpoint                 # dataset | checkpoint
    description: ...
    url: https://...                 # null when the data must be obtained by hand
    filename: efficientvit_m0.pth
    sha256: 3f2a...                  # null only with `hash_note` saying why
    size: 9437184                    # bytes, informative
    unpack: none                     # none | tar | zip
    license: ...
    citation: ...
    layout: |                        # what the unpacked folder looks like
      ...
    manual: |                        # how to get it by hand (always present)
      ...

:func:`fetch` downloads through pooch (hash checked, written to a temporary name and moved
into place only when complete), unpacks archives with path-traversal protection, and when the
machine is offline fails with a message naming the manifest and how to get the file by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ChecksumError, DataUnavailableError, ReproError

REQUIRED = ("name", "kind", "description", "license", "citation", "manual")


@dataclass
class Manifest:
    name: str
    kind: str
    description: str
    license: str
    citation: str
    manual: str
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None
    unpack: str = "none"
    layout: str = ""
    hash_note: str = ""
    source: str = ""
    path: Path | None = None

    @property
    def pinned(self) -> bool:
        return bool(self.sha256)


def manifests_dir() -> Path:
    """``$REPRO_MANIFESTS``, else ``data/manifests`` of the repository this package sits in,
    else ``./data/manifests``."""
    env = os.environ.get("REPRO_MANIFESTS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3] / "data" / "manifests"
    if repo.is_dir():
        return repo
    return Path.cwd() / "data" / "manifests"


def data_root() -> Path:
    """Where fetched data goes: ``$REPRO_DATA`` or ``~/.cache/repro/data``."""
    return Path(os.environ.get("REPRO_DATA", Path.home() / ".cache" / "repro" / "data"))


def load_manifest(name_or_path: str | Path, directory: Path | None = None) -> Manifest:
    """Load one manifest by name (``data/manifests/<name>.yaml``) or path, and validate it."""
    import yaml

    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        directory = directory or manifests_dir()
        path = directory / f"{name_or_path}.yaml"
        if not path.exists():
            known = ", ".join(m.name for m in list_manifests(directory)) or "none"
            raise ReproError(f"no manifest named {name_or_path!r} in {directory}; known: {known}")
    try:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ReproError(f"{path}: not valid YAML ({err})") from err
    missing = [k for k in REQUIRED if not doc.get(k)]
    if missing:
        raise ReproError(f"{path}: missing field(s) {', '.join(missing)}")
    if doc.get("kind") not in ("dataset", "checkpoint"):
        raise ReproError(f"{path}: kind must be 'dataset' or 'checkpoint'")
    if doc.get("url") and not doc.get("filename"):
        raise ReproError(f"{path}: a manifest with a url needs a filename")
    if doc.get("url") and not doc.get("sha256") and not doc.get("hash_note"):
        raise ReproError(f"{path}: give sha256, or a hash_note saying why it is not pinned yet")
    if doc.get("unpack", "none") not in ("none", "tar", "zip"):
        raise ReproError(f"{path}: unpack must be none, tar or zip")
    fields = {k: v for k, v in doc.items() if k in Manifest.__dataclass_fields__}
    return Manifest(**fields, path=path)


def list_manifests(directory: Path | None = None) -> list[Manifest]:
    directory = directory or manifests_dir()
    return [load_manifest(p) for p in sorted(Path(directory).glob("*.yaml"))]


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _manual_help(m: Manifest, target: Path) -> str:
    return (f"Manifest: {m.path}. To get it by hand: {m.manual.strip()} "
            f"Then place it at {target}" + (f" (sha256 {m.sha256})." if m.sha256 else "."))


def fetch(name: str | Manifest, dest: str | Path | None = None, *,
          allow_unpinned: bool = False, progressbar: bool = False) -> Path:
    """Return the local path of a manifest's file (or unpacked folder), downloading if needed."""
    m = name if isinstance(name, Manifest) else load_manifest(name)
    folder = Path(dest) if dest is not None else data_root() / m.name
    if not m.url:
        target = folder / (m.filename or "")
        if m.filename and target.exists():
            return _verified(m, target)
        raise DataUnavailableError(
            f"{m.name} has no download URL (license or registration required). "
            + _manual_help(m, target))
    target = folder / m.filename
    if target.exists():
        path = _verified(m, target)
    else:
        if not m.pinned and not allow_unpinned:
            raise ReproError(
                f"{m.name}: the manifest has no sha256 yet ({m.hash_note.strip()}). Rerun with "
                "--allow-unpinned to download it and print its hash, then record the hash in "
                f"{m.path}")
        path = _download(m, folder, progressbar)
    if m.unpack != "none":
        return _unpack(m, path, folder / m.name)
    return path


def _verified(m: Manifest, target: Path) -> Path:
    if m.sha256:
        got = sha256_of(target)
        if got != m.sha256:
            raise ChecksumError(
                f"{target} does not match the sha256 in {m.path} (expected {m.sha256}, got "
                f"{got}). The file is corrupt or from another release: delete it and fetch "
                "again.")
    return target


def _download(m: Manifest, folder: Path, progressbar: bool) -> Path:
    import pooch
    import requests

    folder.mkdir(parents=True, exist_ok=True)
    known = f"sha256:{m.sha256}" if m.sha256 else None
    try:
        path = pooch.retrieve(m.url, known_hash=known, fname=m.filename, path=folder,
                              progressbar=progressbar)
    except ValueError as err:  # pooch's hash mismatch; it has already removed the download
        if "hash" in str(err).lower():
            raise ChecksumError(
                f"the download of {m.name} from {m.url} does not match the sha256 in {m.path}:"
                f" {err}. Nothing was kept. The file on the server changed or the transfer was"
                " corrupted; check the manifest and try again.") from err
        raise
    except (requests.exceptions.RequestException, OSError) as err:
        raise DataUnavailableError(
            f"could not download {m.name} from {m.url} ({type(err).__name__}; offline?). "
            + _manual_help(m, folder / m.filename)) from err
    path = Path(path)
    if not m.sha256:
        print(f"{m.name}: downloaded {path} with sha256 {sha256_of(path)}; record it in "
              f"{m.path}")
    return path


def _safe_members_zip(zf: zipfile.ZipFile, root: Path) -> None:
    for name in zf.namelist():
        target = (root / name).resolve()
        if not str(target).startswith(str(root.resolve()) + os.sep) and target != root.resolve():
            raise ReproError(f"refusing to unpack {name!r}: it would land outside {root}")


def _unpack(m: Manifest, archive: Path, out: Path) -> Path:
    """Unpack into ``out`` atomically (a temporary sibling folder renamed at the end)."""
    if out.exists():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if m.unpack == "tar":
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")  # blocks absolute paths, .., links out
        else:
            with zipfile.ZipFile(archive) as zf:
                _safe_members_zip(zf, tmp)
                zf.extractall(tmp)
        os.replace(tmp, out)
    except tarfile.FilterError as err:
        raise ReproError(f"refusing to unpack {archive}: {err}") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
