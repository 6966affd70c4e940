"""An installed repro (a wheel, as on Colab) carries the claims files and the manifests, so a
notebook run alone in an empty folder shows its full claims table and `repro data` finds its
manifests. Builds the wheel from this checkout, installs it without dependencies into a
temporary folder placed first on the path (the environment's other packages stay as they are),
and runs from an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("repro-*.whl"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(target), REPRO_NUM_THREADS="1")
    env.pop("REPRO_MANIFESTS", None)
    return wheel, target, env


def test_the_wheel_carries_every_claims_file_and_manifest(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for claims in ROOT.glob("notebooks/*/claims.yaml"):
        assert f"repro/_resources/claims/{claims.parent.name}.yaml" in names
    for manifest in ROOT.glob("data/manifests/*.yaml"):
        assert f"repro/_resources/manifests/{manifest.name}" in names


def test_installed_repro_lists_its_manifests_from_an_empty_folder(installed, tmp_path):
    _, target, env = installed
    out = subprocess.run([sys.executable, "-c", "import repro; print(repro.__file__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith(str(target)), "the wheel's repro was not imported"
    listing = subprocess.run([sys.executable, "-m", "repro", "data", "list"], cwd=tmp_path,
                             env=env, capture_output=True, text=True)
    assert listing.returncode == 0 and "imagenet-1k" in listing.stdout
    fetch = subprocess.run([sys.executable, "-m", "repro", "data", "fetch", "imagenet-1k"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert fetch.returncode == 2
    assert "known: none" not in fetch.stderr and "_resources/manifests/imagenet-1k.yaml" in \
        fetch.stderr


def test_a_notebook_run_alone_in_an_empty_folder_shows_its_full_claims_table(installed,
                                                                           tmp_path):
    """As a Colab user would: the committed .ipynb, copied alone into an empty folder and run
    top to bottom with the installed package."""
    import nbformat
    from nbclient import NotebookClient

    _, target, env = installed
    src = ROOT / "notebooks" / "fp8_lm" / "05_fp8_zero.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import repro; print(repro.__file__)"))
    lone = tmp_path / src.name
    nbformat.write(nb, lone)
    old = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    html = "\n".join(out.get("data", {}).get("text/html", "") for cell in nb.cells
                     for out in cell.get("outputs", []))
    imported = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert imported.strip().startswith(str(target)), imported
    claims_cell = nb.cells[-1]
    table = "".join(o.get("data", {}).get("text/html", "") for o in claims_cell.outputs)
    assert "Claims recorded by this notebook" in table, html[-2000:]
    assert "FP8-LM" in table  # the chapter was found: its title is in the caption
    # every recorded row found its claim: the scale column holds a scale, not a dash
    import re

    body = table.split("<tbody>", 1)[1]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    assert rows
    for row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        assert cells[5].strip() in ("ci", "local", "full", "gpu"), cells
