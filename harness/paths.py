"""Where the project's own files are: recipes, the registry, reported tables, pinned results."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout (holding recipes/ and registry.yaml), else the copy packed into the wheel."""
    if env := os.environ.get("HARNESS_PROJECT_DIR"):
        return Path(env)
    checkout = _PACKAGE.parent
    if (checkout / "recipes").is_dir():
        return checkout
    return _PACKAGE / "_project"


def recipes_dir() -> Path:
    return project_root() / "recipes"


def registry_file() -> Path:
    return project_root() / "registry.yaml"


def reported_dir() -> Path:
    return project_root() / "results" / "reported"


def pinned_dir() -> Path:
    return project_root() / "results" / "pinned"
