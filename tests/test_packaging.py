"""Packaging metadata: `constraints-lowest.txt` (the `tox -e lowest` environment) pins every direct dependency
at the lower bound `pyproject.toml` declares, so the oldest versions the package claims to support are tested."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _lower_bounds() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(lower) == 1, f"pyproject.toml: {line!r} needs exactly one '>=' lower bound"
        bounds[canonicalize_name(requirement.name)] = lower[0]
    return bounds


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_lowest_constraints_pin_each_direct_dependency_at_its_lower_bound():
    assert _pins(ROOT / "constraints-lowest.txt") == _lower_bounds()


def test_tested_constraints_satisfy_the_lower_bounds():
    tested = _pins(ROOT / "constraints.txt")
    tomllib = pytest.importorskip("tomllib")
    for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name in tested:  # torch is installed before the constraints, so it is not among them
            assert requirement.specifier.contains(tested[name]), f"constraints.txt {name}=={tested[name]} vs {line!r}"
