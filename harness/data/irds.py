"""ir_datasets collections (`-d irds:<id>`): corpus, queries and qrels through ir_datasets' public API.

ir_datasets names, downloads (into `$IR_DATASETS_HOME`, default `~/.ir_datasets`) and checks its data;
the harness writes what it yields into a corpus artifact in BEIR layout, so every later stage reads one
form. The id names the split (`beir/scifact/test`, `msmarco-passage/dev/small`): its judgments go to
`qrels/<split>.tsv`, the split being the last of test/dev/train/validation in the id (else `test`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data import beir
from harness.errors import HarnessError, close_matches

if TYPE_CHECKING:
    from harness.data.catalog import Dataset

PREFIX = "irds:"
SPLITS = ("test", "dev", "train", "validation")


def dataset_id(name: str) -> str:
    """`irds:beir/scifact/test` → `beir/scifact/test`."""
    return name.removeprefix(PREFIX)


def load(name: str) -> Any:
    """The ir_datasets dataset of `irds:<id>`, or one sentence (ir_datasets missing, unknown id)."""
    try:
        import ir_datasets
    except ImportError:
        raise HarnessError(f"Dataset {name!r} needs ir_datasets: pip install 'ir_datasets>=0.6.3'.") from None
    ident = dataset_id(name)
    try:
        return ir_datasets.load(ident)
    except KeyError:
        raise HarnessError(
            f"ir_datasets has no dataset {ident!r}.{close_matches(ident, list(ir_datasets.registry))} "
            "See https://ir-datasets.com for the ids."
        ) from None


def split_of(name: str) -> str:
    parts = dataset_id(name).split("/")
    return next((p for p in reversed(parts) if p in SPLITS), "test")


@functools.cache
def describe(name: str) -> Dataset:
    """The catalog entry of an ir_datasets id: its split, and whether it has documents and judgments."""
    from harness.data.catalog import Dataset

    ds = load(name)
    if not ds.has_docs():
        raise HarnessError(f"ir_datasets' {dataset_id(name)!r} has no documents: name a dataset with a corpus "
                           "(e.g. irds:beir/scifact/test).")
    has_qrels = bool(ds.has_qrels() and ds.has_queries())
    return Dataset(name, dataset_id(name), split=split_of(name), in_beir18=False, kind="irds", has_qrels=has_qrels,
                   how_to_get="downloaded by ir_datasets on first use")


def fingerprint(name: str) -> str:
    """ir_datasets gives changed data a new id; its version is recorded too, as its loaders may change."""
    import ir_datasets

    return f"{dataset_id(name)}@ir_datasets-{ir_datasets.__version__}"


def _text(item: Any) -> tuple[str, str]:
    """(title, text) of a document or query: its `text` field (and `title`), else ir_datasets' default_text()."""
    fields = type(item)._fields
    if "text" in fields:
        title = getattr(item, "title", "") if "title" in fields else ""
        return (title if isinstance(title, str) else ""), item.text
    return "", item.default_text()


def write(name: str, dest: Path, progress=None) -> dict:
    """Documents, queries and judgments of `irds:<id>` into `dest` in BEIR layout; returns counts."""
    try:
        return _write(name, dest, progress)
    except OSError as exc:  # ir_datasets' downloads (requests' errors are OSErrors), or a full disk
        detail = str(exc) if len(str(exc)) < 200 else f"{str(exc)[:200]}..."
        raise HarnessError(f"ir_datasets could not provide {dataset_id(name)!r} ({type(exc).__name__}: {detail}): "
                           "check the network, or place its files by hand as https://ir-datasets.com says "
                           "(under $IR_DATASETS_HOME, default ~/.ir_datasets).") from None


def _write(name: str, dest: Path, progress=None) -> dict:
    ds = load(name)
    seen: set[str] = set()

    def docs():
        for number, doc in enumerate(ds.docs_iter(), 1):
            if doc.doc_id in seen:
                raise HarnessError(f"ir_datasets' {dataset_id(name)!r}: document {number} repeats id {doc.doc_id!r}.")
            seen.add(doc.doc_id)
            title, text = _text(doc)
            if progress is not None:
                progress.update(1)
            yield {"_id": str(doc.doc_id), "title": title, "text": text}

    count = beir.write_jsonl(docs(), dest / "corpus.jsonl")
    if not count:
        raise HarnessError(f"ir_datasets' {dataset_id(name)!r} yields no documents.")
    summary: dict = {"documents": count, "queries": 0, "splits": {}, "ir_datasets_id": dataset_id(name)}
    if ds.has_queries():
        queries = {str(q.query_id): _text(q)[1] for q in ds.queries_iter()}
        beir.write_jsonl(({"_id": q, "text": t} for q, t in queries.items()), dest / "queries.jsonl")
        summary["queries"] = len(queries)
    if ds.has_qrels() and ds.has_queries():
        qrels: beir.Qrels = {}
        for qrel in ds.qrels_iter():
            qrels.setdefault(str(qrel.query_id), {})[str(qrel.doc_id)] = int(qrel.relevance)
        split = split_of(name)
        beir.write_qrels(qrels, dest / "qrels" / f"{split}.tsv")
        summary["splits"][split] = {"queries": len(qrels), "judgments": sum(map(len, qrels.values())),
                                    "unknown_documents": sum(1 for q in qrels.values() for d in q if d not in seen)}
    return summary
