"""Shared fixtures: an empty store per test, the bundled sample, and the real SciFact when available."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.localhub import configure_clients, local_hub  # noqa: F401  - the local Hub fixture, for every test module


@pytest.hookimpl(trylast=True)  # after pytest's own tmpdir plugin has set up the session's temporary folder
def pytest_configure(config: pytest.Config) -> None:
    """Point the Hub clients (and torch's compile cache) into the session's temporary folder through their
    public environment variables, before any test module imports them; subprocesses inherit the same."""
    # The factory behind the `tmp_path_factory` fixture: fixtures do not exist yet when this hook runs.
    session_tmp = config._tmp_path_factory.mktemp("clients", numbered=False)
    # torch makes <system temp>/torchinductor_<user> at import unless told where its compile cache goes.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(session_tmp / "torchinductor")
    configure_clients(session_tmp / "hf_home")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh artifact store in a temporary folder (also set as HARNESS_HOME for CLI calls)."""
    from harness.store import Store

    home = tmp_path / "home"
    monkeypatch.setenv("HARNESS_HOME", str(home))
    return Store(home)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The bundled sample written as a BEIR folder: `<dir>/sample/{corpus.jsonl,...}`."""
    from harness.data import sample

    root = tmp_path_factory.mktemp("beir")
    sample.build(root / "sample")
    return root


@pytest.fixture
def beir_dir() -> Path:
    """The folder of real BEIR datasets (`HARNESS_BEIR_DIR`), or skip: tests never download data."""
    env = os.environ.get("HARNESS_BEIR_DIR")
    if not env or not (Path(env) / "scifact" / "corpus.jsonl").is_file():
        pytest.skip("real SciFact not available (set HARNESS_BEIR_DIR to a folder holding scifact/)")
    return Path(env)

