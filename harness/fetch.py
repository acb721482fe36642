"""Fetching published artifacts from the Hub at locked revisions, verified, into the store; and publishing ours.

A fetch is two artifacts: the download (the repository files exactly as published, each checked
against the lock's sha256) and its conversion into the harness's own format for the stage it stands
in for (`run.trec`, `queries.jsonl`, `triples.jsonl`, `model/`), so a fetched artifact and a
regenerated one are interchangeable downstream. Both keys come from the lock alone, so a second
fetch, or one with `HF_HUB_OFFLINE=1`, is served from the store without any request.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

from harness.errors import HarnessError
from harness.registry import Entry, Lock, LockedFile, Registry, now, safe_relpath
from harness.store import Artifact, Store, artifact_key, sha256_file

FETCH_VERSION = 1
RETRIES = 5
BACKOFF_S = 0.5

# Which entry kinds can stand in for which stage's artifact.
STAGE_KINDS = {
    "retrieve": ("run",),
    "generate": ("queries",),
    "filter": ("queries-filtered", "queries"),
    "negatives": ("triples",),
    "train": ("model",),
}


class NetworkUnavailable(HarnessError):
    """The Hub could not be reached (offline, refused, timed out) after the retries."""

    def __init__(self, message: str):
        super().__init__(
            f"{message}. Check the connection (or HF_ENDPOINT), or run with the artifacts already in the store "
            "(HF_HUB_OFFLINE=1), or use --mode regenerate."
        )


# --- talking to the Hub, with retries ------------------------------------------------------------
def _transient(exc: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        return status is None or status >= 500 or status == 429
    # A connection cut mid-body: huggingface_hub does not retry it, so we do (the download resumes).
    # Timeouts and refused connections are not here: huggingface_hub already retried them with backoff.
    return type(exc).__name__ in ("ReadError", "RemoteProtocolError", "WriteError", "ChunkedEncodingError",
                                  "IncompleteRead", "ProtocolError") or isinstance(exc, ConnectionResetError)


def _unreachable(exc: Exception) -> bool:
    return isinstance(exc, (TimeoutError, ConnectionError)) or type(exc).__name__ in (
        "ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "PoolTimeout")


_REFUSED = {401: "; set HF_TOKEN to a token with access", 403: "; the token has no access to this repository",
            404: "; the repository or file is not there"}


def _call(what: str, fn: Callable, *args, **kwargs):
    """Call the Hub with retries and exponential backoff on transient faults; clear sentences otherwise."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    last: Exception | None = None
    for attempt in range(RETRIES):
        try:
            return fn(*args, **kwargs)
        except LocalEntryNotFoundError:
            # huggingface_hub's word for "could not connect", after its own retries with backoff:
            # retrying again here would only multiply the wait.
            raise NetworkUnavailable(f"{what}: the Hub cannot be reached") from None
        except GatedRepoError:
            raise HarnessError(f"{what}: the repository is gated; accept its terms on the Hub and set HF_TOKEN.") from None
        except RepositoryNotFoundError:
            raise HarnessError(f"{what}: the repository does not exist (or is private: set HF_TOKEN).") from None
        except RevisionNotFoundError:
            raise HarnessError(f"{what}: the locked revision is not on the Hub any more.") from None
        except EntryNotFoundError:
            raise HarnessError(f"{what}: the file is not in the repository at that revision.") from None
        except OfflineModeIsEnabled:
            raise NetworkUnavailable(f"{what}: HF_HUB_OFFLINE is set and the artifact is not in the store") from None
        except Exception as exc:  # noqa: BLE001 - sorted by _transient below
            if _unreachable(exc) and not _transient(exc):
                raise NetworkUnavailable(f"{what}: the Hub did not answer in time ({type(exc).__name__})") from None
            if not _transient(exc):
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if isinstance(status, int):  # e.g. a 401/403/404 without the Hub's error code: no retry
                    raise HarnessError(f"{what}: the Hub refused the request (HTTP {status}"
                                       f"{_REFUSED.get(status, '')}).") from None
                raise
            last = exc
        if attempt < RETRIES - 1:
            time.sleep(BACKOFF_S * 2**attempt)
    raise NetworkUnavailable(f"{what}: the Hub did not answer after {RETRIES} tries ({type(last).__name__})")


# --- locking -------------------------------------------------------------------------------------
def resolve_files(entry: Entry, revision: str) -> dict[str, int | None]:
    """The repository files the entry names at `revision` (patterns expanded), with sizes when known."""
    from huggingface_hub import HfApi

    api = HfApi()
    items = _call(f"{entry.id}: listing {entry.repo}", lambda: list(
        api.list_repo_tree(entry.repo, repo_type=entry.repo_type, revision=revision, recursive=True)))
    present = {i.path: getattr(i, "size", None) for i in items if type(i).__name__ == "RepoFile"}
    chosen = {p: s for p, s in present.items() if entry.matches(p)}
    if entry.kind == "model" and any(p.endswith(".safetensors") for p in chosen):
        chosen = {p: s for p, s in chosen.items() if not p.endswith(".bin")}  # never pickles when safetensors exist
    exact_missing = [f for f in entry.files if not any(c in f for c in "*?[") and f not in present]
    if exact_missing or not chosen:
        raise HarnessError(f"{entry.id}: {entry.repo}@{revision[:12]} lacks {exact_missing or entry.files}.")
    for path in chosen:
        safe_relpath(path, f"{entry.id} ({entry.repo})")
    return chosen


def resolve_revision(entry: Entry, revision: str = "main") -> str:
    from huggingface_hub import HfApi

    info = _call(f"{entry.id}: resolving {entry.repo}@{revision}",
                 HfApi().repo_info, entry.repo, repo_type=entry.repo_type, revision=revision)
    return info.sha


def lock(registry: Registry, entry_id: str, store: Store, user: bool = False, echo=print) -> Lock:
    """Pin an entry: resolve its branch to a commit, download and hash its files, record the lock."""
    entry = registry.get(entry_id)
    revision = resolve_revision(entry)
    files = resolve_files(entry, revision)
    sums = {}
    with _downloads(entry, revision, list(files), store) as folder:
        for path in files:
            file = folder / path
            sums[path] = LockedFile(sha256=sha256_file(file), size=file.stat().st_size)
    result = Lock(revision=revision, files=sums, locked_at=now())
    where = registry.write_lock(entry_id, result, user=user)
    echo(f"locked {entry_id} at {entry.repo}@{revision} ({len(sums)} file(s)) in {where}")
    return result


class _downloads:
    """A temporary folder with the entry's files downloaded at `revision` (for locking)."""

    def __init__(self, entry: Entry, revision: str, files: list[str], store: Store):
        self.entry, self.revision, self.files, self.store = entry, revision, files, store

    def __enter__(self) -> Path:
        import tempfile

        self.store.root.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="lock-", dir=self.store.root))
        for path in self.files:
            _download_file(self.entry, self.revision, path, self.tmp)
        return self.tmp

    def __exit__(self, *exc):
        shutil.rmtree(self.tmp, ignore_errors=True)


def _download_file(entry: Entry, revision: str, path: str, dest: Path) -> Path:
    """One file into `dest/<path>`; huggingface_hub resumes a partial download kept in dest/.cache."""
    from huggingface_hub import hf_hub_download

    local = _call(
        f"{entry.id}: downloading {entry.repo}/{path}@{revision[:12]}", hf_hub_download, entry.repo, path,
        repo_type=entry.repo_type, revision=revision, local_dir=dest,
    )
    return Path(local)


# --- fetching --------------------------------------------------------------------------------------
def download_key(entry: Entry, lock_: Lock) -> str:
    files = {p: f.sha256 for p, f in sorted(lock_.files.items())}
    return artifact_key("fetch", FETCH_VERSION, {"id": entry.id, "repo": entry.repo, "revision": lock_.revision,
                                                 "files": files}, {})


def fetch(entry_id: str, store: Store, registry: Registry | None = None, echo=print) -> tuple[Artifact, bool]:
    """The entry's files in the store, verified against the lock (pinned on first use); (artifact, fetched now)."""
    registry = registry or Registry(store.root)
    entry = registry.get(entry_id)
    locked = registry.lock_of(entry_id)
    if locked is None:
        echo(f"{entry_id} is not locked yet: pinning it now (recorded in the store's user lock; "
             f"`harness lock {entry_id}` records it in registry.lock)")
        locked = lock(registry, entry_id, store, user=True, echo=echo)
    key = download_key(entry, locked)

    def build(out):
        tmp = out.scratch / "download"
        for path, expected in sorted(locked.files.items()):
            file = _download_file(entry, locked.revision, path, tmp)
            actual = sha256_file(file)
            if actual != expected.sha256 or file.stat().st_size != expected.size:
                file.unlink()
                raise HarnessError(
                    f"{entry_id}: {path} from {entry.repo}@{locked.revision[:12]} has sha256 {actual} "
                    f"({file.stat().st_size if file.exists() else '?'} bytes), the lock says {expected.sha256} "
                    f"({expected.size} bytes): the file changed on the server or the download is damaged; not using it."
                )
            target = out.path / "files" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(file, target)
        out.summary.update({"id": entry_id, "repo": entry.repo, "revision": locked.revision})

    source = {"repo": entry.repo, "repo_type": entry.repo_type, "revision": locked.revision,
              "url": _url(entry, locked.revision), "registry_id": entry_id}
    artifact, built = store.get_or_build(key, build, kind=f"download:{entry.kind}", stage="fetch",
                                         params={"id": entry_id}, inputs={}, resumable=True, source=source,
                                         on_corrupt=lambda exc: echo(f"{exc} Fetching it again."))
    return artifact, built


def registry_files(ref: str, store: Store, echo=print) -> Path:
    """The folder of files of `registry:<id>[@<commit>]`, fetched at its locked commit, every file checked.

    A commit in the reference (pinned when the step was planned) must be the locked one still.
    """
    from harness.models.loading import REGISTRY_PREFIX

    entry_id, _, expected = ref.removeprefix(REGISTRY_PREFIX).partition("@")
    artifact, _ = fetch(entry_id, store, echo=echo)
    revision = artifact.summary.get("revision")
    if expected and revision != expected:
        raise HarnessError(
            f"{entry_id} is locked at {revision}, but this step was planned with {expected}: "
            "the lock changed during the run; run again."
        )
    return artifact.path / "files"


def _url(entry: Entry, revision: str) -> str:
    from huggingface_hub import constants

    prefix = "datasets/" if entry.repo_type == "dataset" else ""
    return f"{constants.ENDPOINT}/{prefix}{entry.repo}/tree/{revision}"


def fetch_for_stage(entry_id: str, stage: str, store: Store, echo=print) -> tuple[Artifact, bool]:
    """A fetched entry converted into the artifact format of `stage`; (artifact, fetched or converted now)."""
    registry = Registry(store.root)
    entry = registry.get(entry_id)
    if entry.kind not in STAGE_KINDS.get(stage, ()):
        raise HarnessError(f"Registry entry {entry_id} is a {entry.kind!r}; it cannot stand in for stage {stage!r}.")
    raw, fetched = fetch(entry_id, store, registry, echo)
    key = artifact_key(f"published-{stage}", FETCH_VERSION, {"id": entry_id}, {"download": raw.key})

    def build(out):
        convert(entry, raw, out.path)
        out.summary.update({"registry_id": entry_id, "repo": entry.repo, "revision": raw.summary.get("revision")})

    artifact, built = store.get_or_build(key, build, kind=entry.kind, stage=stage, params={"id": entry_id},
                                         inputs={"download": raw.key}, source=raw.manifest.get("source"))
    return artifact, fetched or built


# --- the published formats → ours -------------------------------------------------------------
def convert(entry: Entry, raw: Artifact, dest: Path) -> None:
    """Write the harness's format of a published entry into `dest`."""
    from harness.data.beir import write_jsonl

    files = sorted(p for p in raw.manifest["files"] if p.startswith("files/"))
    first = raw.path / files[0]
    if entry.kind == "run":
        from harness.data.trec import read_run, write_run

        write_run(read_run(first), dest / "run.trec", tag=entry.id)
    elif entry.kind in ("queries", "queries-filtered"):
        rows = list(published_queries(first))
        write_jsonl(rows, dest / "queries.jsonl")
        examples = sorted({e for r in rows for e in r.get("example_ids", [])})
        (dest / "examples.json").write_text(json.dumps({"query_ids": examples, "doc_ids": []}))
    elif entry.kind == "triples":
        from harness.stages.negatives import read_published_triples

        write_jsonl(read_published_triples(first), dest / "triples.jsonl")
    elif entry.kind == "model":
        model = dest / "model"
        model.mkdir()
        for rel in files:
            target = model / rel.removeprefix("files/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(raw.path / rel, target)
    else:
        raise HarnessError(f"Registry entry {entry.id} ({entry.kind}) is data for a dataset, not a stage artifact.")


def published_queries(path: Path):
    """Rows of the authors' synthetic query files (v1: `question`; v2: `query`) in the harness's row format."""
    from harness.data.beir import read_jsonl

    for n, row in enumerate(read_jsonl(path), 1):
        query = row.get("query", row.get("question"))
        doc_id = row.get("doc_id")
        if query is None or doc_id is None:
            raise HarnessError(f"{path} line {n}: a synthetic query row needs `doc_id` and `query` (or `question`).")
        log_probs = row.get("log_probs") or []
        out = {"query_id": f"syn-{doc_id}", "doc_id": str(doc_id), "query": query, "log_probs": log_probs,
               "n_tokens": len(log_probs),
               "example_ids": [str(e.get("query_id", e)) if isinstance(e, dict) else str(e)
                               for e in row.get("fewshot_examples") or []]}
        if "score" in row:
            out["score"] = float(row["score"])
        yield out


# --- the BEIR Hub copies, for `--source hub` ---------------------------------------------------------
def beir_entries(dataset: str) -> tuple[str, str]:
    return f"beir/{dataset}/corpus", f"beir/{dataset}/qrels"


def beir_revision(dataset: str, store: Store) -> str:
    """The fingerprint of a Hub copy: the locked revisions of its corpus and qrels repos (pinned if needed)."""
    registry = Registry(store.root)
    parts = []
    for entry_id in beir_entries(dataset):
        locked = registry.lock_of(entry_id) or lock(registry, entry_id, store, user=True)
        parts.append(f"{entry_id}@{locked.revision}")
    return ";".join(parts)


def download_beir(dataset: str, store: Store, dest: Path) -> Path:
    """A BEIR-layout folder (corpus.jsonl.gz, queries.jsonl.gz, qrels/<split>.tsv) built from the Hub copies."""
    corpus_id, qrels_id = beir_entries(dataset)
    corpus, _ = fetch(corpus_id, store)
    qrels, _ = fetch(qrels_id, store)
    dest.mkdir(parents=True, exist_ok=True)
    for rel in corpus.manifest["files"]:
        if rel.startswith("files/"):
            shutil.copyfile(corpus.path / rel, dest / Path(rel).name)
    (dest / "qrels").mkdir(exist_ok=True)
    for rel in qrels.manifest["files"]:
        if rel.endswith(".tsv"):
            shutil.copyfile(qrels.path / rel, dest / "qrels" / Path(rel).name)
    return dest


# --- verify and publish -----------------------------------------------------------------------------
def verify(store: Store, keys: list[str] | None = None, evict: bool = False, echo=print) -> int:
    """Re-hash artifacts against their manifests; report (and optionally evict) the corrupt ones."""
    bad = 0
    for key in keys or store.keys():
        problems = store.check(key, full=True)
        if problems:
            bad += 1
            echo(f"corrupt {key}: {'; '.join(problems)}" + ("  (evicted)" if evict else ""))
            if evict:
                store.evict(key)
    leftovers = sorted(p.name for p in store.partial.iterdir()) if store.partial.is_dir() else []
    echo(f"verified {len(keys or store.keys()) if not evict else '…'} artifact(s): {bad} corrupt"
         + (f"; {len(leftovers)} unfinished build(s) in {store.partial} (resumed by the next run)" if leftovers else ""))
    return bad


def publish(store: Store, key: str, repo: str, *, repo_type: str = "dataset", entry_id: str | None = None,
            private: bool = False, echo=print) -> Entry:
    """Upload an artifact to a Hub repo and record it (with its commit and sums) in the user registry."""
    from huggingface_hub import HfApi

    artifact = store.get(key)
    if artifact is None:
        raise HarnessError(f"No artifact {key} in the store {store.root} (see `harness list artifacts`).")
    kind = {"run": "run", "queries": "queries-filtered" if artifact.manifest["stage"] == "filter" else "queries",
            "triples": "triples", "model": "model"}.get(artifact.manifest["kind"])
    if kind is None:
        raise HarnessError(f"Artifact {key} is a {artifact.manifest['kind']!r}; publishable kinds: run, queries, triples, model.")
    files = {p: m for p, m in artifact.manifest["files"].items()}
    # A model is uploaded as a plain checkpoint at the repo root, so from_pretrained(repo) works.
    upload = {(p.removeprefix("model/") if kind == "model" else p): p for p in files}
    api = HfApi()
    _call(f"creating {repo}", api.create_repo, repo, repo_type=repo_type, private=private, exist_ok=True)
    from huggingface_hub import CommitOperationAdd

    ops = [CommitOperationAdd(path_in_repo=dst, path_or_fileobj=str(artifact.path / src)) for dst, src in upload.items()]
    ops.append(CommitOperationAdd(path_in_repo="harness-manifest.json", path_or_fileobj=str(artifact.path / "manifest.json")))
    info = _call(f"uploading {key} to {repo}", api.create_commit, repo, ops, repo_type=repo_type,
                 commit_message=f"harness publish {key}")
    revision = info.oid
    entry = Entry(id=entry_id or f"user/{repo.lower().replace('/', '--')}/{kind}", kind=kind, repo=repo,
                  repo_type=repo_type, files=sorted(upload), provenance=f"published by harness from artifact {key}")
    registry = Registry(store.root)
    registry.add_entry(entry)
    registry.write_lock(entry.id, Lock(revision=revision, files={
        dst: LockedFile(sha256=files[src]["sha256"], size=files[src]["size"]) for dst, src in upload.items()
    }, locked_at=now()), user=True)
    echo(f"published {key} to {repo}@{revision} as registry entry {entry.id}")
    return entry
