"""Build hook: copy the chapters' claims files and the data manifests into the package.

They are edited where the contract puts them (``notebooks/<paper>/claims.yaml``,
``data/manifests/*.yaml``); a wheel carries copies under ``repro/_resources/`` so that an
installed ``repro`` (Colab, a JupyterHub, a notebook run alone) finds them through
``importlib.resources`` (see ``src/repro/resources.py``). Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class build_py_with_resources(build_py):  # noqa: N801 (setuptools' naming)
    def run(self):
        super().run()
        target = Path(self.build_lib) / "repro" / "_resources"
        for sub in ("claims", "manifests"):
            if (target / sub).exists():
                shutil.rmtree(target / sub)
            (target / sub).mkdir(parents=True)
        for claims in sorted(ROOT.glob("notebooks/*/claims.yaml")):
            shutil.copyfile(claims, target / "claims" / f"{claims.parent.name}.yaml")
        for manifest in sorted(ROOT.glob("data/manifests/*.yaml")):
            shutil.copyfile(manifest, target / "manifests" / manifest.name)


setup(cmdclass={"build_py": build_py_with_resources})
