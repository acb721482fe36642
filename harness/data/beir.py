"""Reading and writing BEIR-layout folders (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), strictly."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.errors import HarnessError

log = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    text: str


def _open_text(path: Path) -> IO[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8")


@contextlib.contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Text that is not UTF-8, or a damaged gzip stream, as one sentence naming the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); convert it to UTF-8.") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise HarnessError(f"{path}: damaged gzip file ({exc}).") from None


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; one clear error for bad JSON or encoding."""
    with _decoding(path), _open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                yield number, json_object(path, number, line)


def json_object(path: Path, number: int, line: str) -> dict:
    """One JSON-lines line as an object; one sentence naming the file and line when it is not one."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path} line {number}: not valid JSON ({exc.msg}).") from None
    except RecursionError:
        raise HarnessError(f"{path} line {number}: JSON nested too deeply.") from None
    if not isinstance(row, dict):
        raise HarnessError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}.")
    return row


def _field(path: Path, number: int, row: dict, name: str, required: bool = True) -> str:
    value = row.get(name)
    if value is None:
        if required:
            raise HarnessError(f"{path} line {number}: missing field {name!r} (fields: {sorted(row)}).")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and name == "_id":
        return str(value)
    if not isinstance(value, str):
        raise HarnessError(f"{path} line {number}: field {name!r} must be a string, got {type(value).__name__}.")
    return value


def find(folder: Path, stem: str) -> Path:
    """`folder/stem` or its `.gz` twin."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise HarnessError(f"{folder} has no {stem} (nor {stem}.gz): is it a BEIR dataset folder?")


def iter_corpus(path: Path) -> Iterator[Doc]:
    """The documents of a corpus.jsonl, checked: `_id` and `text` required, ids unique."""
    seen: set[str] = set()
    count = 0
    for number, row in _jsonl(path):
        doc_id = _field(path, number, row, "_id")
        if doc_id in seen:
            raise HarnessError(f"{path} line {number}: duplicate document id {doc_id!r}.")
        seen.add(doc_id)
        count += 1
        yield Doc(doc_id, _field(path, number, row, "title", required=False), _field(path, number, row, "text"))
    if count == 0:
        raise HarnessError(f"{path} holds no documents.")


def read_queries(path: Path) -> dict[str, str]:
    """Query id → text from a queries.jsonl, checked like the corpus."""
    queries: dict[str, str] = {}
    for number, row in _jsonl(path):
        qid = _field(path, number, row, "_id")
        if qid in queries:
            raise HarnessError(f"{path} line {number}: duplicate query id {qid!r}.")
        queries[qid] = _field(path, number, row, "text")
    if not queries:
        raise HarnessError(f"{path} holds no queries.")
    return queries


def read_qrels(path: Path) -> Qrels:
    """Relevance judgments from a BEIR qrels TSV (`query-id corpus-id score`, header optional) or TREC qrels."""
    qrels: Qrels = {}
    with _decoding(path), _open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if number == 1 and parts[0] == "query-id":
                continue
            if len(parts) == 4:  # TREC: qid iteration docid rel
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise HarnessError(
                    f"{path} line {number}: expected `query-id corpus-id score` (3 columns), got {len(parts)}."
                )
            qid, docid, score = parts
            try:
                rel = int(score)
            except ValueError:
                raise HarnessError(f"{path} line {number}: score {score!r} is not an integer.") from None
            qrels.setdefault(qid, {})[docid] = rel
    if not qrels:
        raise HarnessError(f"{path} holds no judgments.")
    return qrels


def write_qrels(qrels: Qrels, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid in sorted(qrels):
            for docid in sorted(qrels[qid]):
                fh.write(f"{qid}\t{docid}\t{qrels[qid][docid]}\n")


def write_jsonl(rows: Iterable[dict], path: Path) -> int:
    """Write rows as JSON lines; returns the count."""
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> Iterator[dict]:
    for _, row in _jsonl(path):
        yield row


@dataclass(frozen=True)
class BeirFolder:
    """A dataset folder in BEIR layout."""

    path: Path

    @property
    def corpus(self) -> Path:
        return find(self.path, "corpus.jsonl")

    @property
    def queries(self) -> Path:
        return find(self.path, "queries.jsonl")

    def qrels(self, split: str) -> Path:
        folder = self.path / "qrels"
        try:
            return find(folder, f"{split}.tsv")
        except HarnessError:
            have = sorted(p.name.split(".")[0] for p in folder.glob("*.tsv*")) if folder.is_dir() else []
            raise HarnessError(f"{self.path} has no qrels for split {split!r} (it has: {have or 'none'}).") from None

    def splits(self) -> list[str]:
        folder = self.path / "qrels"
        return sorted({p.name.split(".")[0] for p in folder.glob("*.tsv*")}) if folder.is_dir() else []


def data_dirs(explicit: Path | None = None, home: Path | None = None) -> list[Path]:
    """Where dataset folders are looked for: `--data-dir`, else `$HARNESS_BEIR_DIR` (os.pathsep-separated),
    else `<harness home>/beir`, where datasets fetched by name go by default."""
    if explicit:
        return [Path(explicit)]
    env = os.environ.get("HARNESS_BEIR_DIR", "")
    if dirs := [Path(p) for p in env.split(os.pathsep) if p]:
        return dirs
    from harness.store import default_home

    return [Path(home or default_home()) / "beir"]


def locate(name: str, explicit: Path | None = None, home: Path | None = None) -> BeirFolder | None:
    """The folder of dataset `name` (`cqadupstack/android` → `<dir>/cqadupstack/android`), or None."""
    for root in data_dirs(explicit, home):
        candidate = root / name
        if (candidate / "corpus.jsonl").is_file() or (candidate / "corpus.jsonl.gz").is_file():
            return BeirFolder(candidate)
    return None


def limit_queries(qids: Iterable[str], limit: int | None) -> list[str]:
    """A deterministic subset of `limit` query ids (by a hash of the id, so stable across machines)."""
    import hashlib

    ordered = sorted(qids, key=lambda q: (hashlib.sha1(q.encode()).hexdigest(), q))
    return sorted(ordered if limit is None else ordered[:limit])


def doc_text(title: str, text: str) -> str:
    """A document as rerankers and LLM prompts see it: title and text joined, as BEIR's rerankers do."""
    return f"{title} {text}".strip() if title else text


def iter_docs_dict(path: Path) -> dict[str, Doc]:
    """The whole corpus by id (for stages that look documents up at random: negatives, reranking)."""
    return {doc.id: doc for doc in iter_corpus(path)}
