"""Manifests and verified fetching (CONTRACT §5): every shipped manifest validates; `fetch`
against a real HTTP server on 127.0.0.1 keeps a file only when its sha256 matches, fails
offline with the manifest's manual steps, and never unpacks outside the data folder."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest
import yaml

from repro.data.manifest import fetch, list_manifests, load_manifest, manifests_dir
from repro.errors import ChecksumError, DataUnavailableError, ReproError

SHIPPED = sorted(manifests_dir().glob("*.yaml"))
PAYLOAD = b"EfficientViT weights, or near enough\n" * 64


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(folder: Path, **fields) -> Path:
    doc = {"name": "toy", "kind": "checkpoint", "description": "a test file",
           "license": "MIT", "citation": "Nobody, 2024.",
           "manual": "Ask the authors for toy.bin and copy it by hand."}
    doc.update(fields)
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """http://127.0.0.1:PORT/ serving a temporary folder, in a thread."""
    root = tmp_path_factory.mktemp("served")
    (root / "toy.bin").write_bytes(PAYLOAD)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# ----------------------------------------------------------------------------- shipped files
def test_the_shipped_manifests_include_imagenet_and_the_six_efficientvit_checkpoints():
    names = {p.stem for p in SHIPPED}
    assert {"imagenet-1k", *(f"efficientvit-m{i}-in1k" for i in range(6))} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_manifest_loads_and_validates(path):
    m = load_manifest(path)
    assert m.name == path.stem  # `repro data fetch NAME` finds it by file name
    assert m.manual.strip() and m.license.strip() and m.citation.strip()
    if m.url:
        assert m.filename and (m.sha256 or m.hash_note)
    if m.sha256:
        assert len(m.sha256) == 64 and int(m.sha256, 16) >= 0


def test_list_manifests_reads_every_shipped_file():
    assert [m.path for m in list_manifests()] == SHIPPED


def test_imagenet_manifest_has_no_url_and_says_how_to_get_it():
    m = load_manifest("imagenet-1k")
    assert m.kind == "dataset" and m.url is None
    assert "Deng" in m.citation and "2009" in m.citation
    assert "train/<wnid>/" in m.layout and "val/<wnid>/" in m.layout
    assert "image-net.org" in m.manual


@pytest.mark.parametrize("i", range(6))
def test_efficientvit_manifests_point_at_the_official_release_and_the_timm_hub_tag(i):
    m = load_manifest(f"efficientvit-m{i}-in1k")
    assert m.kind == "checkpoint" and m.license.startswith("MIT")
    assert m.url == ("https://github.com/xinyuliu-jeffrey/EfficientViT_Model_Zoo/releases/"
                     f"download/v1.0/efficientvit_m{i}.pth")
    assert m.filename == f"efficientvit_m{i}.pth"
    assert m.sha256 is None and "--allow-unpinned" in m.hash_note  # not recorded offline
    assert f"timm/efficientvit_m{i}.r224_in1k" in m.description + m.source + m.manual


def test_a_manifest_missing_a_required_field_is_refused(tmp_path):
    path = write_manifest(tmp_path, license="")
    with pytest.raises(ReproError, match="missing field"):
        load_manifest(path)


# ----------------------------------------------------------------------------- fetch
def test_fetch_keeps_the_file_when_the_hash_matches(server, tmp_path):
    _, url = server
    m = load_manifest(write_manifest(tmp_path, url=f"{url}/toy.bin", filename="toy.bin",
                                     sha256=sha256(PAYLOAD)))
    got = fetch(m, tmp_path / "data")
    assert got == tmp_path / "data" / "toy.bin" and got.read_bytes() == PAYLOAD
    assert fetch(m, tmp_path / "data") == got  # second call: verified, not downloaded


def test_fetch_with_a_wrong_hash_raises_and_leaves_nothing(server, tmp_path):
    _, url = server
    m = load_manifest(write_manifest(tmp_path, url=f"{url}/toy.bin", filename="toy.bin",
                                     sha256=sha256(b"another file")))
    with pytest.raises(ChecksumError, match="does not match the sha256"):
        fetch(m, tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []  # not even a temporary file


def test_a_corrupt_file_already_on_disk_is_reported_not_used(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "toy.bin").write_bytes(b"truncated")
    m = load_manifest(write_manifest(tmp_path, url="http://127.0.0.1:9/toy.bin",
                                     filename="toy.bin", sha256=sha256(PAYLOAD)))
    with pytest.raises(ChecksumError, match="delete it and fetch again"):
        fetch(m, tmp_path / "data")


def test_unreachable_server_names_the_manifest_and_the_manual_steps(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_manifest(tmp_path, url=f"http://127.0.0.1:{port}/toy.bin", filename="toy.bin",
                          sha256=sha256(PAYLOAD))
    with pytest.raises(DataUnavailableError) as err:
        fetch(load_manifest(path), tmp_path / "data")
    message = str(err.value)
    assert str(path) in message and "Ask the authors for toy.bin" in message
    assert not (tmp_path / "data" / "toy.bin").exists()


def test_a_manifest_without_url_fails_with_its_manual_steps(tmp_path):
    path = write_manifest(tmp_path, name="registered", kind="dataset",
                          manual="Register at example.org, then unpack it here.")
    with pytest.raises(DataUnavailableError, match="no download URL") as err:
        fetch(load_manifest(path), tmp_path / "data")
    assert str(path) in str(err.value) and "Register at example.org" in str(err.value)


def test_an_unpinned_manifest_downloads_only_when_allowed(server, tmp_path, capsys):
    _, url = server
    m = load_manifest(write_manifest(tmp_path, url=f"{url}/toy.bin", filename="toy.bin",
                                     hash_note="not yet recorded"))
    with pytest.raises(ReproError, match="--allow-unpinned"):
        fetch(m, tmp_path / "data")
    assert not (tmp_path / "data" / "toy.bin").exists()
    assert fetch(m, tmp_path / "data", allow_unpinned=True).read_bytes() == PAYLOAD
    assert sha256(PAYLOAD) in capsys.readouterr().out  # printed, to be recorded


# ----------------------------------------------------------------------------- archives
def evil_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("ok.txt", b"fine"), ("../evil", b"escaped")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def evil_zip(member: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(zipfile.ZipInfo(member), b"escaped")
    return buf.getvalue()


@pytest.mark.parametrize("kind, archive", [
    ("tar", evil_tar()),
    ("zip", evil_zip("../evil")),
    ("zip", evil_zip("sub/../../evil")),
], ids=["tar-dotdot", "zip-dotdot", "zip-nested-dotdot"])
def test_archives_with_members_outside_the_folder_are_refused(tmp_path, kind, archive):
    data = tmp_path / "root" / "data"
    data.mkdir(parents=True)
    (data / f"toy.{kind}").write_bytes(archive)  # already downloaded, hash pinned
    m = load_manifest(write_manifest(tmp_path, url=f"http://127.0.0.1:9/toy.{kind}",
                                     filename=f"toy.{kind}", sha256=sha256(archive),
                                     unpack=kind))
    with pytest.raises(ReproError, match="refusing to unpack"):
        fetch(m, data)
    everything = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert everything == sorted(Path(p) for p in ("root", "root/data", f"root/data/toy.{kind}",
                                                  "toy.yaml"))


def test_a_clean_archive_is_unpacked_into_its_own_folder(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("train/a/0.txt", b"zero")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "toy.zip").write_bytes(buf.getvalue())
    m = load_manifest(write_manifest(tmp_path, url="http://127.0.0.1:9/toy.zip",
                                     filename="toy.zip", sha256=sha256(buf.getvalue()),
                                     unpack="zip"))
    out = fetch(m, tmp_path / "data")
    assert out == tmp_path / "data" / "toy" and (out / "train/a/0.txt").read_bytes() == b"zero"


# ----------------------------------------------------------------------------- hardening
def _pinned_archive(tmp_path: Path, kind: str, archive: bytes, **fields):
    """An archive already downloaded into tmp_path/data, with a manifest that pins it."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / f"toy.{kind}").write_bytes(archive)
    fields.setdefault("size", len(archive))
    m = load_manifest(write_manifest(tmp_path, url=f"http://127.0.0.1:9/toy.{kind}",
                                     filename=f"toy.{kind}", sha256=sha256(archive),
                                     unpack=kind, **fields))
    return m, data


def test_an_uppercase_sha256_in_the_manifest_passes_every_fetch(server, tmp_path):
    _, url = server
    m = load_manifest(write_manifest(tmp_path, url=f"{url}/toy.bin", filename="toy.bin",
                                     sha256=sha256(PAYLOAD).upper()))
    assert m.sha256 == sha256(PAYLOAD)  # normalised when the manifest is read
    first = fetch(m, tmp_path / "data")  # downloads
    assert fetch(m, tmp_path / "data") == first  # verifies the file on disk: still fine
    assert first.read_bytes() == PAYLOAD


def test_a_sha256_that_is_not_64_hex_digits_is_refused(tmp_path):
    with pytest.raises(ReproError, match="sha256 must be 64 hex digits, got 'abc'"):
        load_manifest(write_manifest(tmp_path, url="http://127.0.0.1:9/t", filename="t",
                                     sha256="abc"))


@pytest.mark.parametrize("field,value", [
    ("name", "../escape"), ("name", "a/b"), ("name", ".."), ("name", "a\\b"),
    ("filename", "../../toy.bin"), ("filename", "/etc/passwd"), ("filename", "sub/toy.bin"),
    ("filename", ".."), ("filename", "."),
])
def test_name_and_filename_must_be_plain_file_names(tmp_path, field, value):
    fields = {"url": "http://127.0.0.1:9/toy.bin", "filename": "toy.bin",
              "sha256": sha256(PAYLOAD), field: value}
    if field == "name":
        fields["name"] = value
        path = tmp_path / "toy.yaml"
        doc = {"kind": "checkpoint", "description": "d", "license": "MIT",
               "citation": "c", "manual": "m", **fields}
        path.write_text(yaml.safe_dump(doc))
    else:
        path = write_manifest(tmp_path, **fields)
    with pytest.raises(ReproError) as err:
        load_manifest(path)
    assert str(err.value) == (f"{path}: {field} must be a plain file name (no '/', '\\', '..'"
                              f" or '.'), got {value!r}")


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _leftovers(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir())


@pytest.mark.parametrize("kind,archive", [
    ("tar", b"this is not a tar file at all" * 40),
    ("tar", _tar_gz({"a.txt": b"x" * 5000})[:60]),  # truncated gzip stream
    ("zip", b"PK\x03\x04 but nothing after it"),
    ("zip", _zip({"a.txt": bytes(range(256)) * 40})[:-30]),  # central directory cut short
], ids=["tar-garbage", "tar-gz-truncated", "zip-garbage", "zip-truncated"])
def test_a_corrupt_archive_is_a_clear_error_naming_the_file_and_the_manifest(
        tmp_path, kind, archive):
    m, data = _pinned_archive(tmp_path, kind, archive)
    with pytest.raises(ReproError) as err:
        fetch(m, data)
    message = str(err.value)
    assert message.startswith(f"{data / f'toy.{kind}'} is not a readable {kind} archive (")
    assert f"manifest {m.path}" in message and "Delete the file and fetch it again" in message
    assert type(err.value) is ReproError  # not a raw tarfile.ReadError / BadZipFile
    assert "\n" not in message  # one line, even for tarfile's multi-line ReadError
    assert _leftovers(data) == [f"toy.{kind}"]  # no unpacked folder, no temporary


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_compression_bomb_stops_at_the_size_cap_and_leaves_nothing(tmp_path, kind):
    from repro.data.manifest import UNPACK_SIZE_FACTOR, UNPACK_SIZE_FLOOR

    members = {"small.txt": b"fine", "bomb.bin": bytes(4 << 20)}  # 4 MiB of zeros
    archive = _tar_gz(members) if kind == "tar" else _zip(members)
    assert (4 << 20) / len(archive) > 900  # a ~1000x bomb ...
    assert 4 << 20 > max(UNPACK_SIZE_FACTOR * len(archive), UNPACK_SIZE_FLOOR)  # over the cap
    m, data = _pinned_archive(tmp_path, kind, archive)
    limit = max(UNPACK_SIZE_FACTOR * len(archive), UNPACK_SIZE_FLOOR)
    with pytest.raises(ReproError) as err:
        fetch(m, data)
    assert str(err.value).startswith(
        f"refusing to unpack {data / f'toy.{kind}'}: its contents exceed {limit} bytes (the "
        f"cap: {UNPACK_SIZE_FACTOR}x the size {len(archive)} bytes in {m.path}, at least "
        f"{UNPACK_SIZE_FLOOR}); a damaged archive or a compression bomb. Nothing was unpacked.")
    assert "compression bomb" in str(err.value)
    assert _leftovers(data) == [f"toy.{kind}"]


def test_the_same_archive_unpacks_when_the_manifest_states_its_real_size(tmp_path):
    archive = _tar_gz({"big.bin": bytes(4 << 20)})
    m, data = _pinned_archive(tmp_path, "tar", archive, size=64 << 10)  # 64 KiB x 100 > 4 MiB
    assert (fetch(m, data) / "big.bin").stat().st_size == 4 << 20


def test_unpacked_folders_and_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, mode, data in (("sub", 0o700, None), ("sub/a.txt", 0o600, b"a"),
                                 ("sub/run.sh", 0o700, b"#!/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    m, data = _pinned_archive(tmp_path, "tar", buf.getvalue())
    out = fetch(m, data)
    umask = os.umask(0)
    os.umask(umask)

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(out) == mode(out / "sub") == 0o777 & ~umask  # not mkdtemp's 0o700
    assert mode(out / "sub" / "a.txt") == 0o666 & ~umask
    assert mode(out / "sub" / "run.sh") == 0o777 & ~umask  # an executable stays executable
