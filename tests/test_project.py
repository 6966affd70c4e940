"""Project-level consistency: environment.yml agrees with pyproject.toml, the README's two
commands are what .ci/run calls, lazy imports stay lazy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[;@]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_installs_this_package_with_its_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(line.startswith("-e .[") or line.startswith(".[") for line in pip)
    extras = re.search(r"\[(.*)\]", next(x for x in pip if x.lstrip("-e ").startswith(".[")))
    assert set(extras.group(1).split(",")) >= {"book", "dev"}
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    declared = {_name(d) for d in py["dependencies"]}
    assert conda <= declared | {"python", "pip"}, conda - declared
    pyver = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert pyver.split(">=")[-1].strip() >= py["requires-python"].lstrip(">=")


def test_library_declares_lower_bounds_only():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in py["dependencies"]:
        assert "==" not in req and "<" not in req, f"pin in a user-facing dependency: {req}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = re.search(r"<!-- test-command -->\s*```(?:console|bash)?\n\$?\s*(.+?)\n```",
                    readme).group(1)
    assert cmd.strip() in ci


def test_importing_repro_does_not_import_torch_timm_or_transformers():
    code = ("import sys, repro, repro.fp8, repro.lm; repro.__version__; "
            "print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_nothing_below_the_command_line_imports_it():
    """repro.cli is the top layer: library modules (trainers included) never import it."""
    offenders = []
    for path in sorted((ROOT / "src" / "repro").rglob("*.py")):
        if path.name in ("cli.py", "__main__.py"):
            continue
        text = path.read_text()
        if re.search(r"^\s*(from repro\.cli|from \.+cli|import repro\.cli)\b", text, re.M):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these modules import repro.cli: {offenders}"
