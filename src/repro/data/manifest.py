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

Checks made when a manifest is loaded: ``sha256`` is 64 hex digits (compared in lower case,
however the manifest spells it); ``name`` and ``filename`` are plain file names (no ``/``, no
``\\``, not ``.`` or ``..``), so nothing is ever written outside the data folder.

Unpacking (``unpack: tar | zip``) goes to a temporary sibling folder renamed at the end, and
refuses: members that would land outside the folder or links (tarfile's ``data`` filter,
checked zip names); an archive that cannot be read (one clear error naming the file and the
manifest); and contents larger than :data:`UNPACK_SIZE_FACTOR` times the manifest's ``size``
(the archive's size on disk when ``size`` is not given), with a floor of
:data:`UNPACK_SIZE_FLOOR`, so a compression bomb stops there. Unpacked folders and files get
ordinary permissions (``0o777`` / ``0o666`` less the umask, executables keep their x bits).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ChecksumError, DataUnavailableError, ReproError

REQUIRED = ("name", "kind", "description", "license", "citation", "manual")
#: unpacked contents may be at most this many times the manifest's ``size`` ...
UNPACK_SIZE_FACTOR = 100
#: ... and never less than this (bytes), so that a tiny archive of small files unpacks
UNPACK_SIZE_FLOOR = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    else the manifests packaged with an installed ``repro``, else ``./data/manifests``
    (see :mod:`repro.resources`)."""
    from ..resources import manifests_dir as _find

    return _find()


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
    for key in ("name", "filename"):
        if doc.get(key) is not None:
            _check_plain_name(path, key, doc[key])
    if doc.get("sha256") is not None:
        doc["sha256"] = _normal_sha256(path, doc["sha256"])
    size = doc.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ReproError(f"{path}: size must be a whole number of bytes, got {size!r}")
    fields = {k: v for k, v in doc.items() if k in Manifest.__dataclass_fields__}
    return Manifest(**fields, path=path)


def _check_plain_name(path: Path, key: str, value: Any) -> None:
    """``name`` and ``filename`` become path parts under the data folder: one plain name."""
    bad = (not isinstance(value, str) or value.strip() in ("", ".", "..")
           or any(sep in value for sep in ("/", "\\", os.sep, os.altsep or "/", "\0")))
    if bad:
        raise ReproError(f"{path}: {key} must be a plain file name (no '/', '\\', '..' or '.'),"
                         f" got {value!r}")


def _normal_sha256(path: Path, value: Any) -> str:
    if not isinstance(value, str):
        raise ReproError(f"{path}: sha256 must be a quoted string of 64 hex digits, got "
                         f"{value!r}")
    digest = value.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise ReproError(f"{path}: sha256 must be 64 hex digits, got {value!r}")
    return digest


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
        if got != m.sha256.lower():
            raise ChecksumError(
                f"{target} does not match the sha256 in {m.path} (expected {m.sha256}, got "
                f"{got}). The file is corrupt or from another release: delete it and fetch "
                "again.")
    return target


def _download(m: Manifest, folder: Path, progressbar: bool) -> Path:
    import pooch
    import requests

    folder.mkdir(parents=True, exist_ok=True)
    known = f"sha256:{m.sha256.lower()}" if m.sha256 else None
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


class _TooBig(Exception):
    pass


def unpack_limit(m: Manifest, archive: Path) -> int:
    """The most bytes an archive may unpack to (see the module docstring)."""
    basis = m.size if m.size else archive.stat().st_size
    return max(UNPACK_SIZE_FACTOR * basis, UNPACK_SIZE_FLOOR)


def _extract_tar(archive: Path, tmp: Path, limit: int) -> None:
    with tarfile.open(archive) as tf:
        total = 0
        for member in tf:  # headers declare each member's size: refuse before writing
            total += member.size if member.isfile() else 0
            if total > limit:
                raise _TooBig
        tf.extractall(tmp, filter="data")  # blocks absolute paths, .., links out


def _extract_zip(archive: Path, tmp: Path, limit: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        _safe_members_zip(zf, tmp)
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > limit:  # declared sizes first ...
            raise _TooBig
        total = 0
        for info in infos:  # ... then the bytes really written, which a header cannot fake
            target = tmp / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                while block := src.read(1 << 20):
                    total += len(block)
                    if total > limit:
                        raise _TooBig
                    dst.write(block)


def _ordinary_permissions(root: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for folder, _dirs, files in os.walk(root):  # links are not followed, nor changed
        os.chmod(folder, 0o777 & ~umask)
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            executable = path.lstat().st_mode & stat.S_IXUSR
            os.chmod(path, (0o777 if executable else 0o666) & ~umask)


def _unpack(m: Manifest, archive: Path, out: Path) -> Path:
    """Unpack into ``out`` atomically (a temporary sibling folder renamed at the end)."""
    if out.exists():
        return out
    limit = unpack_limit(m, archive)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if m.unpack == "tar":
            _extract_tar(archive, tmp, limit)
        else:
            _extract_zip(archive, tmp, limit)
        _ordinary_permissions(tmp)
        os.replace(tmp, out)
    except tarfile.FilterError as err:
        raise ReproError(f"refusing to unpack {archive}: {err}") from err
    except _TooBig:
        basis = m.size or archive.stat().st_size
        raise ReproError(
            f"refusing to unpack {archive}: its contents exceed {limit} bytes (the cap: "
            f"{UNPACK_SIZE_FACTOR}x the size {basis} bytes in {m.path}, at least "
            f"{UNPACK_SIZE_FLOOR}); a damaged archive or a compression bomb. Nothing was "
            "unpacked. If the archive is genuine, correct `size` in the manifest.") from None
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError,
            NotImplementedError, OSError) as err:
        if isinstance(err, OSError) and not _is_format_error(err):
            raise
        detail = " ".join(str(err).split())
        detail = detail if len(detail) <= 160 else detail[:159] + "…"
        raise ReproError(
            f"{archive} is not a readable {m.unpack} archive ({type(err).__name__}: "
            f"{detail}); manifest {m.path}. Nothing was unpacked. Delete the file and fetch it "
            "again; if it matches the manifest's sha256, the manifest points at a broken "
            "release.") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _is_format_error(err: OSError) -> bool:
    """gzip and bz2 report a damaged stream as a bare OSError (gzip.BadGzipFile, "Invalid data
    stream"); a full disk or a permission problem is a different, real OSError."""
    import gzip

    return isinstance(err, gzip.BadGzipFile) or (err.errno is None and not err.filename)
