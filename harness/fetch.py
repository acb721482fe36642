"""Fetching published artifacts from the Hub at locked revisions, verified, into the store, and converting them.

A fetch is two artifacts: the download (the repository files exactly as published, each checked
against the lock's sha256) and its conversion into the harness's own format for the stage it stands
in for (`run.trec`, `queries.jsonl`, `triples.jsonl`, `model/`), so a fetched artifact and a
regenerated one are interchangeable downstream. Both keys come from the lock alone, so a second
fetch, or one with `HF_HUB_OFFLINE=1`, is served from the store without any request.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness import hub
from harness.errors import HarnessError
from harness.lock import lock
from harness.registry import Entry, Lock, Registry
from harness.store import Artifact, Store, artifact_key, sha256_file

FETCH_VERSION = 1
# The conversion of a download into a stage's format; 2: fetched triples hold one negative per query.
CONVERT_VERSION = 2
# Seed of the choice of one negative per query among the published ones (see `paper_triples`).
TRIPLES_SEED = 0


def stage_kinds() -> dict[str, tuple[str, ...]]:
    """Which entry kinds can stand in for which stage's artifact (each stage's `published_kinds`)."""
    from harness.stages import STAGE_NAMES, get_stage

    return {name: get_stage(name).published_kinds for name in STAGE_NAMES if get_stage(name).published_kinds}


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
            file = hub.download_file(entry_id, entry.repo, entry.repo_type, locked.revision, path, tmp)
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
              "url": hub.tree_url(entry.repo, entry.repo_type, locked.revision), "registry_id": entry_id}
    artifact, built = store.get_or_build(key, build, kind=f"download:{entry.kind}", stage="fetch",
                                         params={"id": entry_id}, inputs={}, resumable=True, source=source,
                                         on_corrupt=lambda exc: echo(f"{exc} Fetching it again."))
    return artifact, built


def fetch_for_stage(entry_id: str, stage: str, store: Store, echo=print) -> tuple[Artifact, bool]:
    """A fetched entry converted into the artifact format of `stage`; (artifact, fetched or converted now)."""
    registry = Registry(store.root)
    entry = registry.get(entry_id)
    if entry.kind not in stage_kinds().get(stage, ()):
        raise HarnessError(f"Registry entry {entry_id} is a {entry.kind!r}; it cannot stand in for stage {stage!r}.")
    raw, fetched = fetch(entry_id, store, registry, echo)
    key = artifact_key(f"published-{stage}", CONVERT_VERSION, {"id": entry_id}, {"download": raw.key})

    def build(out):
        out.summary.update(convert(entry, raw, out.path))
        out.summary.update({"registry_id": entry_id, "repo": entry.repo, "revision": raw.summary.get("revision")})

    artifact, built = store.get_or_build(key, build, kind=entry.kind, stage=stage, params={"id": entry_id},
                                         inputs={"download": raw.key}, source=raw.manifest.get("source"))
    return artifact, fetched or built


# --- the published formats → ours -------------------------------------------------------------
def convert(entry: Entry, raw: Artifact, dest: Path) -> dict:
    """Write the harness's format of a published entry into `dest`; returns counts for the manifest's summary."""
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

        counted = {"published_triples": 0}

        def published() -> Iterator[dict]:  # streamed: the published files run to gigabytes
            for row in read_published_triples(first):
                counted["published_triples"] += 1
                yield row

        kept = list(paper_triples(published()))  # one row per query is kept in memory
        write_jsonl(kept, dest / "triples.jsonl")
        return {**counted, "triples": len(kept)}
    elif entry.kind == "model":
        model = dest / "model"
        model.mkdir()
        for rel in files:
            target = model / rel.removeprefix("files/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(raw.path / rel, target)
    else:
        raise HarnessError(f"Registry entry {entry.id} ({entry.kind}) is data for a dataset, not a stage artifact.")
    return {}


def paper_triples(rows: Iterable[dict], seed: int = TRIPLES_SEED) -> Iterator[dict]:
    """One triple per query, as the papers train: the published negative chosen by a seeded draw.

    The authors' `triples_train_v2.tsv` hold up to 100 negatives per query: InPars-v2's TPU pipeline
    (zetaalphavector/InPars 9865521, `legacy/inpars-v2/train_inpars.py` line 91) runs
    `legacy/inpars-v1/generate_triples_train.py` with its defaults (lines 17-18: `--max_hits 1000
    --n_samples 100`), which writes one line per rank drawn by `random.sample(range(len(hits)),
    n_samples + 1)` (line 52), in rank order, without a seed. The papers train one
    epoch over the 10k query-document pairs with one negative each (156 steps of 128 sequences; the
    toolkit paper, arXiv 2307.04601 section 3: "From this set, a random document is selected as the
    negative example"). A uniform draw among the published negatives (themselves a uniform sample of
    BM25's top 1,000) is that random negative: the one whose seeded hash of (query, negative) is least, so the
    choice is the same whatever the order of the lines or the machine. Queries keep their first-appearance order.
    """
    def draw(row: dict) -> bytes:
        return hashlib.sha256(f"{seed}\t{row['query']}\t{row['negative']}".encode()).digest()

    chosen: dict[str, dict] = {}
    for row in rows:
        best = chosen.get(row["query"])
        if best is None or draw(row) < draw(best):
            chosen[row["query"]] = row
    yield from chosen.values()


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


