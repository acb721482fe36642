"""Stage `corpus`: bring a dataset into the store, checked, in BEIR layout.

Sources: a BEIR folder in the data folder (fetched there by name on first use, see
`harness.data.download`), the Hub copy, the bundled sample, an ir_datasets id, or the user's own folder
or corpus file given by path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from harness.atomic import write_text_atomic
from harness.data import beir
from harness.data.catalog import get_dataset
from harness.errors import HarnessError
from harness.stages import Stage, StageParams

log = logging.getLogger(__name__)


class Params(StageParams):
    dataset: str
    source: Literal["folder", "hub", "builtin", "irds", "path"] = "folder"
    # What the source holds: sha256 of its files (folder, path), repo@revision (hub), generator version
    # (builtin), id and ir_datasets version (irds). Part of the key, so changed data changes every key downstream.
    fingerprint: str = ""
    # Source `path`: where the user's folder or file is; not in the key (the fingerprint says what it holds).
    location: str = ""
    not_in_key = frozenset({"location"})


def source_of(dataset: str, default: str) -> str:
    """The source of a dataset's corpus: its kind decides, except for catalog datasets (`default`)."""
    kind = get_dataset(dataset).kind
    if dataset == "sample":
        return "builtin"
    return {"irds": "irds", "path": "path"}.get(kind, default)


def run(inputs: dict, params: Params, out, ctx) -> None:
    if params.source == "builtin":
        from harness.data import sample

        folder = beir.BeirFolder(out.scratch / "sample")
        sample.build(folder.path)
    elif params.source == "irds":
        from harness.data import irds

        with ctx.bar(None, "corpus (ir_datasets)") as bar:
            out.summary.update(irds.write(params.dataset, out.path, progress=bar))
        return
    elif params.source == "path":
        from harness.data import local

        where = Path(params.location or get_dataset(params.dataset).location)
        if where.is_dir() and beir.BeirFolder(where).splits():
            out.summary.update(normalize(beir.BeirFolder(where), out.path, local.iter_docs(local.corpus_file(where))))
        else:
            out.summary.update(local.write(where, out.path))
        return
    elif params.source == "hub":
        from harness.fetch import download_beir

        folder = beir.BeirFolder(download_beir(get_dataset(params.dataset).name, ctx.store, out.scratch / "hub"))
    else:
        found = beir.locate(get_dataset(params.dataset).name, ctx.data_dir, ctx.store.root)
        if found is None:
            raise missing_folder(params.dataset, ctx.data_dir, ctx.store.root)
        folder = found
    out.summary.update(normalize(folder, out.path))


def normalize(folder: beir.BeirFolder, dest: Path, documents: Iterable[beir.Doc] | None = None) -> dict:
    """Copy a BEIR folder into `dest` in canonical form, validating every line; returns counts.

    `documents`: the corpus as read by another reader (the user's own corpus is held to string ids).
    """
    doc_ids: set[str] = set()

    def docs():
        for doc in beir.iter_corpus(folder.corpus) if documents is None else documents:
            doc_ids.add(doc.id)
            yield {"_id": doc.id, "title": doc.title, "text": doc.text}

    n_docs = beir.write_jsonl(docs(), dest / "corpus.jsonl")
    queries = beir.read_queries(folder.queries)
    beir.write_jsonl(({"_id": q, "text": t} for q, t in queries.items()), dest / "queries.jsonl")
    splits = {}
    for split in folder.splits():
        qrels = beir.read_qrels(folder.qrels(split))
        unknown_docs = sum(1 for q in qrels.values() for d in q if d not in doc_ids)
        unknown_queries = sum(1 for q in qrels if q not in queries)
        if unknown_docs or unknown_queries:
            # BEIR's own qrels name a few documents missing from their corpora: warn, keep the judgment
            # (it counts in nDCG's ideal ranking exactly as trec_eval counts it).
            log.warning(
                "%s: %d judgment(s) name documents not in the corpus, %d name unknown queries",
                folder.qrels(split), unknown_docs, unknown_queries,
            )
        beir.write_qrels(qrels, dest / "qrels" / f"{split}.tsv")
        splits[split] = {"queries": len(qrels), "judgments": sum(map(len, qrels.values())),
                         "unknown_documents": unknown_docs, "unknown_queries": unknown_queries}
    if not splits:
        raise HarnessError(f"{folder.path}/qrels holds no <split>.tsv file.")
    return {"documents": n_docs, "queries": len(queries), "splits": splits}


def missing_folder(name: str, data_dir: Path | None, home: Path | None = None) -> HarnessError:
    dataset = get_dataset(name)
    where = f"--data-dir {data_dir}" if data_dir else ", ".join(map(str, beir.data_dirs(None, home)))
    return HarnessError(
        f"No folder for dataset {name!r} in {where}: {dataset.download_hint()}; the folder must hold "
        f"corpus.jsonl, queries.jsonl and qrels/{dataset.split}.tsv."
    )


def fingerprint(name: str, source: str, data_dir: Path | None, store) -> str:
    """What identifies the dataset's content, cheaply: file hashes cached by size and mtime."""
    if source == "builtin":
        from harness.data import sample

        return f"sample-seed{sample.SEED}-{sample.N_DOCS}"
    if source == "hub":
        from harness.fetch import beir_revision

        return beir_revision(name, store)
    if source == "irds":
        from harness.data import irds

        return irds.fingerprint(name)
    if source == "path":
        from harness.data import local

        files = local.fingerprint_files(Path(get_dataset(name).location))
        return _hash_files(files, store.root / "fingerprints.json")
    found = beir.locate(name, data_dir, store.root)
    if found is None:
        raise missing_folder(name, data_dir, store.root)
    files = [found.corpus, found.queries, *sorted((found.path / "qrels").glob("*.tsv*"))]
    return _hash_files(files, store.root / "fingerprints.json")


def _hash_files(files: list[Path], cache: Path) -> str:
    import hashlib
    import json

    from harness.store import sha256_file

    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        stamp = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if stamp not in known:
            known[stamp] = sha256_file(file)
        digest.update(f"{file.name}:{known[stamp]}\n".encode())
    write_text_atomic(cache, json.dumps(known))
    return digest.hexdigest()[:32]


STAGE = Stage(name="corpus", version=1, kind="dataset", params=Params, run=run, include="always",
              units=lambda params, documents, queries: documents)
