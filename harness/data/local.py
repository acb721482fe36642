"""The user's own corpus: a folder in BEIR layout or a corpus file (TSV or JSONL), named by the folder or file.

A folder holds `corpus.jsonl` (or `.gz`), and optionally `queries.jsonl` and `qrels/<split>.tsv`: with
judgments it is scored like a BEIR dataset; without, a pipeline trains a reranker on it and stops. A
corpus file is read as the InPars toolkit reads one: a TSV of id and text (no header, or a header
`doc_id`/`id`/`_id` and `text`), or JSON lines with `_id` (or `doc_id`), `text` and an optional `title`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from harness.data import beir
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.data.catalog import Dataset

CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".tsv", ".tsv.gz")
# Evaluation split of a folder with several: the first of these it has, else the first by name.
SPLIT_PREFERENCE = ("test", "dev", "validation")

_KNOWN: dict[str, Dataset] = {}  # name → dataset, for the folders given by path in this process


def looks_like_path(name: str) -> bool:
    return os.sep in name or name.startswith((".", "~")) or Path(name).exists()


def describe(name: str) -> Dataset | None:
    """The dataset for a path (registered under its folder's name), a name registered earlier, or None."""
    from harness.data.catalog import DATASETS, Dataset

    if name in _KNOWN:
        return _KNOWN[name]
    if not looks_like_path(name):
        return None
    path = Path(name).expanduser().resolve()
    if not path.exists():
        raise HarnessError(f"Dataset path {name!r} does not exist: give a folder in BEIR layout (corpus.jsonl, "
                           "optionally queries.jsonl and qrels/<split>.tsv) or a corpus file (.tsv or .jsonl).")
    corpus = corpus_file(path)
    short = dataset_name(path)
    if short in DATASETS:
        raise HarnessError(f"{path} is named like the catalog dataset {short!r}: to score it as that dataset run "
                           f"with `-d {short} --data-dir {path.parent}`, else rename the folder.")
    if short in _KNOWN and _KNOWN[short].location != str(path):
        raise HarnessError(f"{path} and {_KNOWN[short].location} would both be dataset {short!r}: rename one.")
    splits = beir.BeirFolder(path).splits() if path.is_dir() else []
    split = next((s for s in SPLIT_PREFERENCE if s in splits), splits[0] if splits else "test")
    if splits and not (path / "queries.jsonl").is_file() and not (path / "queries.jsonl.gz").is_file():
        raise HarnessError(f"{path} has qrels but no queries.jsonl: add the queries the judgments name, or remove "
                           "the qrels folder to train without evaluating.")
    dataset = Dataset(short, f"{short} ({corpus})", split=split, in_beir18=False, kind="path", location=str(path),
                      has_qrels=bool(splits), how_to_get=f"your own corpus at {path}")
    _KNOWN[short] = dataset
    return dataset


def dataset_name(path: Path) -> str:
    """A folder's name, or a corpus file's name without its suffixes (`my-docs.tsv.gz` → `my-docs`)."""
    if path.is_dir():
        return path.name
    name = path.name
    for suffix in CORPUS_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def corpus_file(path: Path) -> Path:
    """The corpus of a dataset folder or corpus file, or one sentence saying what is missing."""
    if path.is_dir():
        for stem in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / stem).is_file():
                return path / stem
        raise HarnessError(f"{path} holds no corpus.jsonl (nor corpus.jsonl.gz): a dataset folder needs one, "
                           "with a JSON object per line holding `_id` and `text`.")
    if not path.name.endswith(CORPUS_SUFFIXES):
        raise HarnessError(f"{path}: a corpus file must be .tsv (id, text) or .jsonl (`_id` or `doc_id`, `text`), "
                           "optionally gzipped.")
    return path


def iter_docs(path: Path) -> Iterator[beir.Doc]:
    """The documents of a corpus file, checked: string ids, unique, a text each, at least one."""
    reader = _tsv if ".tsv" in path.name else _jsonl
    seen: set[str] = set()
    for number, doc in reader(path):
        if not doc.id:
            raise HarnessError(f"{path} line {number}: empty document id.")
        if doc.id in seen:
            raise HarnessError(f"{path} line {number}: duplicate document id {doc.id!r}.")
        seen.add(doc.id)
        yield doc
    if not seen:
        raise HarnessError(f"{path} holds no documents: a corpus needs at least one.")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line, decoded line by line so that bad bytes name their line."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with beir._decoding(path), opener(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise HarnessError(f"{path} line {number}: not UTF-8 text ({exc.reason} at byte {exc.start + 1} of "
                                   "the line); convert the file to UTF-8.") from None
            if line.strip():
                yield number, line.removeprefix("\ufeff") if number == 1 else line


def _jsonl(path: Path) -> Iterator[tuple[int, beir.Doc]]:
    for number, line in _lines(path):
        row = beir.json_object(path, number, line)
        key = "_id" if "_id" in row else "doc_id" if "doc_id" in row else None
        if key is None:
            raise HarnessError(f"{path} line {number}: no `_id` (nor `doc_id`) field (fields: {sorted(row)}).")
        values = {}
        for field in (key, "title", "text"):
            value = row.get(field)
            if value is None and field == "title":
                value = ""
            if not isinstance(value, str):
                got = "nothing" if value is None else type(value).__name__
                raise HarnessError(f"{path} line {number}: field {field!r} must be a string, got {got}.")
            values[field] = value
        yield number, beir.Doc(values[key], values["title"], values["text"])


def _tsv(path: Path) -> Iterator[tuple[int, beir.Doc]]:
    for number, line in _lines(path):
        doc_id, tab, text = line.partition("\t")
        if number == 1 and doc_id.strip().lower() in ("doc_id", "docid", "id", "_id") and text.lower() == "text":
            continue  # a header
        if not tab:
            raise HarnessError(f"{path} line {number}: expected `id<TAB>text`, found no tab.")
        yield number, beir.Doc(doc_id.strip(), "", text)


def write(path: Path, dest: Path) -> dict:
    """A corpus without judgments (folder or file) into `dest` in canonical BEIR form; returns counts."""
    count = beir.write_jsonl(({"_id": d.id, "title": d.title, "text": d.text} for d in iter_docs(corpus_file(path))),
                             dest / "corpus.jsonl")
    summary: dict = {"documents": count, "queries": 0, "splits": {}}
    if path.is_dir() and any((path / f).is_file() for f in ("queries.jsonl", "queries.jsonl.gz")):
        queries = beir.read_queries(beir.find(path, "queries.jsonl"))
        beir.write_jsonl(({"_id": q, "text": t} for q, t in queries.items()), dest / "queries.jsonl")
        summary["queries"] = len(queries)
    return summary


def fingerprint_files(path: Path) -> list[Path]:
    """The files whose content identifies the dataset at `path`."""
    files = [corpus_file(path)]
    if path.is_dir():
        files += [p for p in (path / "queries.jsonl", path / "queries.jsonl.gz") if p.is_file()]
        files += sorted((path / "qrels").glob("*.tsv*"))
    return files
