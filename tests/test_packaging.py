"""Packaging, checked without installing anything: the dependency floors, the imports, the install pins.

- Every floor in ``pyproject.toml`` (``name>=X``) is pinned as ``name==X`` in ``constraints-min.txt``, the
  file ``make test-min`` installs (torch excepted: its floor is stated there on a comment line, see below).
- Every top-level import of ``inr_lightning/`` and ``benchmarks/`` is the standard library, the project
  itself or a declared dependency; every declared dependency is imported (or listed as used indirectly).
- ``make install``/``make test-min`` and ``environment.yml`` install the same torch pin.

How the floors were checked (by hand, on Python 3.11; ``make test-min`` repeats it in .venv-min):
    python3 -m venv /work/minvenv
    /work/minvenv/bin/pip install -c constraints-min.txt torch==2.13.0 -e '.[test]'
    /work/minvenv/bin/python -m pytest -q $MIN_TESTS      (the Makefile's: tests/test_cli.py
        tests/test_configs.py tests/test_errors.py tests/models tests/data tests/test_packaging.py)
    → 134 passed in 7 min (2026-12-03, 2 busy cores); its warnings are other packages' (matplotlib 3.8's
      pyparsing names, deprecated by pyparsing 3.3; kornia 0.7's torch.cuda.amp), none from this project
Floors raised on the way, each by a failure there: lightning 2.4 → 2.6.0 (2.5.5 resumes ``--ckpt_path=last``
with ``weights_only=False``: test_errors.py's malicious ``last.ckpt`` is unpickled), jsonargparse 4.35 → 4.51
(4.47 and 4.50 fail test_bad_values_are_one_line_errors: a model's error is lost behind the union's ``NoneType``
error), wandb 0.17 → 0.19.9 (0.17/0.18 ``wandb.init(tags: Sequence)`` unparseable by jsonargparse; 0.19.0 hangs
logging a ``wandb.Table`` offline; 0.19.5 prints wandb.init's traceback to stderr), nilearn 0.10.0 → 0.10.1
(imports ``pkg_resources``, gone from setuptools); pyarrow < 26 added (26 needs numpy ≥ 2).
"""

from __future__ import annotations

import ast
import re
import sys

import pytest
from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11

# Import name → distribution name, where they differ.
DISTRIBUTIONS = {"yaml": "pyyaml", "PIL": "pillow", "skimage": "scikit-image", "sklearn": "scikit-learn"}
# Declared dependencies that no module imports by name: what uses them instead.
INDIRECT = {"omegaconf": "jsonargparse's omegaconf+ parser mode (cli.py)",
            "pytest-xdist": "the Makefile's pytest -n auto (a plugin: never imported)"}
OWN = {"inr_lightning", "benchmarks", "__future__"}
FLOOR = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=(?P<version>[0-9][0-9A-Za-z.]*)$")
# torch's floor is stated in constraints-min.txt, not installed (only the CPU wheel of 2.13.0 is at hand).
STATED = re.compile(r"^#\s*stated floor, not installed:\s*(?P<name>[A-Za-z0-9_.-]+)==(?P<version>\S+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def floors() -> dict[str, str]:
    """``{distribution: floor}`` of the runtime and test dependencies; each must be a plain ``>=`` floor."""
    project = pyproject()["project"]
    out = {}
    for spec in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        m = FLOOR.match(spec.replace(" ", ""))
        assert m, f"pyproject dependency {spec!r} is not a plain `name>=floor`"
        out[normalize(m["name"])] = m["version"]
    return out


def constraints() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """constraints-min.txt → (``==`` pins, stated-only floors, other constraints with their reasons)."""
    pins, stated, others = {}, {}, {}
    for raw in (ROOT / "constraints-min.txt").read_text().splitlines():
        line = raw.strip()
        if m := STATED.match(line):
            stated[normalize(m["name"])] = m["version"]
            continue
        spec, _, reason = line.partition("#")
        spec = spec.strip()
        if not spec:
            continue
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", spec)
        name, rest = normalize(m[1]), m[2].strip()
        if rest.startswith("==") and "," not in rest:
            pins[name] = rest[2:]
        else:
            others[name] = reason.strip()
    return pins, stated, others


def test_every_floor_is_the_pin_of_constraints_min():
    declared = floors()
    pins, stated, others = constraints()
    assert stated == {"torch": declared["torch"]}
    assert {k: v for k, v in declared.items() if k != "torch"} == {k: v for k, v in pins.items() if k in declared}
    assert set(pins) <= set(declared), f"pinned but not declared: {sorted(set(pins) - set(declared))}"
    for name, reason in others.items():
        # A constraint on a package we do not depend on directly, kept only because a floor needs it.
        assert name not in declared and reason, f"{name}: a transitive constraint needs its reason after '#'"


def top_level_imports(folder: str) -> dict[str, str]:
    """``{top-level module: first file importing it}`` of every absolute import under ``folder``."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path.relative_to(ROOT).as_posix())
    return found


def test_every_import_is_a_declared_dependency():
    declared = set(floors())
    imports = {**top_level_imports("benchmarks"), **top_level_imports("inr_lightning")}
    third_party = {name: where for name, where in imports.items()
                   if name not in sys.stdlib_module_names and name not in OWN}
    undeclared = {name: where for name, where in third_party.items()
                  if normalize(DISTRIBUTIONS.get(name, name)) not in declared}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    used = {normalize(DISTRIBUTIONS.get(name, name)) for name in third_party} | set(INDIRECT)
    unused = declared - used - {"pytest"}
    assert not unused, f"declared but never imported (add to INDIRECT with the reason if used otherwise): {unused}"


def makefile_variable(name: str) -> str:
    m = re.search(rf"^{name}\s*\??=\s*(\S+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert m, f"Makefile sets no {name}"
    return m[1]


def test_makefile_and_environment_yml_install_the_same_torch():
    torch = makefile_variable("TORCH")
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+", torch)
    pip_lines = re.findall(r"^\s*-\s+(\S.*?)\s*$", (ROOT / "environment.yml").read_text(), re.M)
    assert torch in pip_lines and "-e .[test]" in pip_lines
    makefile = (ROOT / "Makefile").read_text()
    # `make install` and `make test-min` pass the pin in the same pip call as the package.
    assert makefile.count('install -q "$(TORCH)" -e ".[test]"') == 1
    assert makefile.count('install -q -c constraints-min.txt "$(TORCH)" -e ".[test]"') == 1
    # The floor-check installs torch at that pin too; constraints-min.txt states the floor it does not install.
    assert f"torch=={constraints()[1]['torch']}" != torch


def test_license_file_matches_pyproject():
    assert pyproject()["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the inr_lightning authors" in text
