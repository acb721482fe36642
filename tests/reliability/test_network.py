"""Item 3: faults on the network, against the local Hub: down, slow, cut mid-file, 5xx bursts, a 404 for one file.

Transient faults are retried with backoff and the fetch then succeeds, verified; the others end in one
sentence (a `HarnessError`, one line, naming the entry) without retries. In every case nothing partial is
left under `artifacts/`: the store holds complete, verified artifacts or nothing.
"""

from __future__ import annotations

import json
import time

import pytest

from harness import hub as hub_client
from harness.errors import HarnessError
from harness.fetch import fetch
from harness.hub import NetworkUnavailable
from harness.lock import lock
from harness.registry import Entry, Registry

RUN = "".join(f"q{q} Q0 d{d} {d} {10 - d / 10:.1f} bm25\n" for q in range(1, 40) for d in range(1, 30))
ENTRY = "user/faults/run"
REPO, PATH = "me/fault-runs", "runs/run.trec"
TOKEN = "hf_reliabilitySECRETtoken0123456789"


@pytest.fixture
def hub(local_hub, store, tmp_path, monkeypatch, no_hub_sleep):
    """A repo holding one run file and a registry entry for it; the project lock moved into tmp."""
    monkeypatch.setattr("harness.registry.project_lock", lambda: tmp_path / "registry.lock")
    (tmp_path / "registry.yaml").write_text("version: 1\nentries: []\n")  # the project's is not under test
    monkeypatch.setattr("harness.registry.registry_file", lambda: tmp_path / "registry.yaml")
    local_hub.add_repo(REPO, "dataset", {PATH: RUN, "runs/other.trec": RUN})
    Registry(store.root).add_entry(Entry(id=ENTRY, kind="run", repo=REPO, files=[PATH, "runs/other.trec"],
                                         provenance="reliability test"))
    local_hub.waits = no_hub_sleep
    return local_hub


def quiet(_):
    return None


def assert_store_clean(store):
    """Only complete artifacts under artifacts/: each has a manifest and every file matches it."""
    for key in store.keys():
        assert store.check(key, full=True) == [], f"{key} is incomplete or corrupt"
        listed = set(store.get(key).manifest["files"]) | {"manifest.json", ".verified.json"}
        present = {p.relative_to(store.path(key)).as_posix() for p in store.path(key).rglob("*") if p.is_file()}
        assert present <= listed, f"{key} holds unlisted files {present - listed}"


def one_sentence(exc: Exception, *names: str) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    assert len(text) < 600, f"not one sentence: {text}"
    for name in names:
        assert name in text, f"{name!r} not named in: {text}"
    return text


def fetched_ok(store):
    artifact, fetched = fetch(ENTRY, store, echo=quiet)
    assert fetched and store.check(artifact.key, full=True) == []
    assert (artifact.path / "files" / PATH).read_text() == RUN
    return artifact


def test_server_down(hub, store, reliability):
    with reliability.trial("network", "server down while locking"):
        hub.down()
        started = time.monotonic()
        with pytest.raises(NetworkUnavailable) as exc:
            fetch(ENTRY, store, echo=quiet)
        one_sentence(exc.value, ENTRY)
        assert time.monotonic() - started < 60
        assert store.keys() == []
    with reliability.trial("network", "server down after locking, then up again"):
        hub.up()
        lock(Registry(store.root), ENTRY, store, echo=quiet)
        hub.down()
        with pytest.raises(NetworkUnavailable) as exc:
            fetch(ENTRY, store, echo=quiet)
        one_sentence(exc.value, ENTRY)
        assert_store_clean(store)
        assert store.keys() == []
        hub.up()
        fetched_ok(store)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_error_burst_is_retried(hub, store, reliability, status):
    with reliability.trial("network", f"burst of {status}s, then answers"):
        lock(Registry(store.root), ENTRY, store, echo=quiet)
        before = len(hub.requests)
        hub.fail_next(3, status, match=PATH)
        fetched_ok(store)
        assert sum(1 for _, p in hub.requests[before:] if p.endswith(PATH)) > 3  # the failures were retried
        assert_store_clean(store)


def test_error_burst_longer_than_the_retries(hub, store, reliability):
    with reliability.trial("network", "503s that never stop: bounded retries, backoff, one sentence"):
        lock(Registry(store.root), ENTRY, store, echo=quiet)
        hub.waits.hf.clear()
        hub.waits.harness.clear()
        before = len(hub.requests)
        hub.fail_next(10_000, 503, match=PATH)
        started = time.monotonic()
        with pytest.raises(NetworkUnavailable) as exc:
            fetch(ENTRY, store, echo=quiet)
        one_sentence(exc.value, ENTRY, PATH)
        assert time.monotonic() - started < 60
        tries = sum(1 for _, p in hub.requests[before:] if p.endswith(PATH))
        assert 3 <= tries <= 6 * hub_client.RETRIES, f"{tries} requests: retries not bounded"
        waits = hub.waits.hf + hub.waits.harness
        assert waits, "no backoff between the retries"
        for series in (hub.waits.hf, hub.waits.harness):
            assert all(b >= a for a, b in zip(series, series[1:], strict=False)), f"backoff does not grow: {series}"
        assert store.keys() == []
        hub.reset_faults()
        fetched_ok(store)


def test_slow_server(hub, store, reliability):
    with reliability.trial("network", "slow server (0.2 s per request) within the timeout"):
        hub.slow(0.2)
        fetched_ok(store)


@pytest.mark.slow  # ~75 s: every layer's retries wait out the timeout (see the report)
def test_server_slower_than_the_timeout(hub, store, reliability, monkeypatch):
    from huggingface_hub import constants

    lock(Registry(store.root), ENTRY, store, echo=quiet)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    with reliability.trial("network", "server slower than the timeout: bounded, one sentence"):
        hub.slow(3)
        started = time.monotonic()
        with pytest.raises(NetworkUnavailable) as exc:
            fetch(ENTRY, store, echo=quiet)
        one_sentence(exc.value, ENTRY)
        assert time.monotonic() - started < 120
        assert store.keys() == []
        hub.slow(0)


@pytest.mark.parametrize("cut", [0, 1, 100, len(RUN) // 2, len(RUN) - 1])
def test_cut_mid_file(hub, store, reliability, cut):
    with reliability.trial("network", f"connection cut mid-file (after {'n-1' if cut == len(RUN) - 1 else cut} bytes)"):
        lock(Registry(store.root), ENTRY, store, echo=quiet)
        hub.cut_after(PATH, cut)
        fetched_ok(store)
        assert_store_clean(store)


def test_cut_twice_in_a_row(hub, store, reliability):
    with reliability.trial("network", "connection cut on two downloads in a row"):
        lock(Registry(store.root), ENTRY, store, echo=quiet)
        hub.cut_after(PATH, 10)
        hub.cut_after(PATH, 500)
        fetched_ok(store)


def test_404_for_one_file_is_not_retried(hub, store, reliability):
    registry = Registry(store.root)
    lock(registry, ENTRY, store, echo=quiet)
    with reliability.trial("network", "404 (entry not found) for one file of a locked entry"):
        # The file disappears from the locked commit: the server answers 404 EntryNotFound.
        commit = hub._repo(REPO, "dataset").resolve(registry.lock_of(ENTRY).revision)
        blob = commit.tree.pop(PATH)
        before = len(hub.requests)
        with pytest.raises(HarnessError) as exc:
            fetch(ENTRY, store, echo=quiet)
        text = one_sentence(exc.value, ENTRY, PATH)
        assert "not in the repository" in text
        assert not isinstance(exc.value, NetworkUnavailable)
        assert sum(1 for _, p in hub.requests[before:] if p.endswith(PATH)) <= 2, "a 404 was retried"
        assert store.keys() == []
        commit.tree[PATH] = blob
    with reliability.trial("network", "bare 404 (no Hub error code) for one file"):
        hub.fail_next(1, 404, match=PATH)
        with pytest.raises(HarnessError) as exc:
            fetch(ENTRY, store, echo=quiet)
        one_sentence(exc.value, ENTRY, PATH)
        assert store.keys() == []
        fetched_ok(store)


@pytest.mark.parametrize("status", [400, 401, 403])
def test_other_client_errors_get_one_sentence(hub, store, reliability, status):
    lock(Registry(store.root), ENTRY, store, echo=quiet)
    with reliability.trial("network", f"{status} for one file: no retry, one sentence"):
        before = len(hub.requests)
        hub.fail_next(1, status, match=PATH)
        with pytest.raises(HarnessError) as exc:
            fetch(ENTRY, store, echo=quiet)
        one_sentence(exc.value, ENTRY, PATH)
        assert sum(1 for _, p in hub.requests[before:] if p.endswith(PATH)) <= 2
        assert store.keys() == []


def test_tokens_never_leak(hub, store, reliability, monkeypatch, caplog, capsys, tmp_path):
    """HF_TOKEN set: errors, echoes, logs, manifests, locks and the store never contain it."""
    import logging

    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    caplog.set_level(logging.DEBUG)
    said: list[str] = []
    errors: list[str] = []
    registry = Registry(store.root)
    faults = [
        ("404", lambda: hub.fail_next(1, 404, match=PATH)),
        ("401", lambda: hub.fail_next(1, 401, match=PATH)),
        ("403", lambda: hub.fail_next(1, 403, match=PATH)),
        ("503 forever", lambda: hub.fail_next(10_000, 503, match=PATH)),
        ("down", hub.down),
    ]
    lock(registry, ENTRY, store, echo=said.append)
    for name, inject in faults:
        with reliability.trial("security", f"token kept out of the error for a {name}"):
            inject()
            with pytest.raises(HarnessError) as exc:
                fetch(ENTRY, store, echo=said.append)
            errors.append(str(exc.value))
            assert TOKEN not in str(exc.value) and TOKEN[3:] not in str(exc.value)
            hub.reset_faults()
            if name == "down":
                hub.up()
    with reliability.trial("security", "token kept out of logs, output, manifests, locks, store files"):
        fetched_ok(store)
        assert any(r.headers.get("authorization", "").endswith(TOKEN) for r in hub.request_log), \
            "the token was not even sent: this test would prove nothing"
        out = capsys.readouterr()
        texts = [*said, *errors, out.out, out.err, caplog.text]
        assert not any(TOKEN in t for t in texts)
        for path in [*store.root.rglob("*"), *tmp_path.glob("registry.lock*")]:
            if path.is_file() and "hf_home" not in path.parts:
                assert TOKEN.encode() not in path.read_bytes(), f"token written into {path}"
        manifests = [json.loads((store.path(k) / "manifest.json").read_text()) for k in store.keys()]
        assert manifests and not any(TOKEN in json.dumps(m) for m in manifests)
