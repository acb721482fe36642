"""ir_datasets ids as datasets (`-d irds:<id>`), through its public API, on a small local collection."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from harness.cli import main
from harness.data import beir, irds, sample
from harness.data.catalog import get_dataset
from harness.errors import HarnessError

ir_datasets = pytest.importorskip("ir_datasets")


@pytest.fixture
def collection(tmp_path, monkeypatch) -> str:
    """The bundled sample as an ir_datasets dataset built from local files (TSV docs and queries, TREC qrels),
    registered under a fresh id; the documents' titles are joined to their text as the TSV holds one field."""
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "irds-home"))
    src = tmp_path / "src"
    sample.build(src)
    docs, queries, qrels = tmp_path / "docs.tsv", tmp_path / "queries.tsv", tmp_path / "qrels.txt"
    docs.write_text("".join(f"{d.id}\t{beir.doc_text(d.title, d.text)}\n"
                            for d in beir.iter_corpus(src / "corpus.jsonl")))
    queries.write_text("".join(f"{q}\t{t}\n" for q, t in beir.read_queries(src / "queries.jsonl").items()))
    test = beir.read_qrels(src / "qrels" / "test.tsv")
    qrels.write_text("".join(f"{q} 0 {d} {r}\n" for q, ds in test.items() for d, r in ds.items()))
    ident = f"harness-test/{uuid.uuid4().hex[:8]}/test"
    ir_datasets.registry.register(ident, ir_datasets.create_dataset(docs_tsv=str(docs), queries_tsv=str(queries),
                                                                    qrels_trec=str(qrels)))
    return f"irds:{ident}"


def test_an_irds_id_describes_a_dataset(collection):
    dataset = get_dataset(collection)
    assert (dataset.name, dataset.kind, dataset.split, dataset.has_qrels) == (collection, "irds", "test", True)
    assert irds.split_of("irds:msmarco-passage/dev/small") == "dev"
    assert irds.split_of("irds:beir/scifact/test") == "test"
    assert irds.split_of("irds:vaswani") == "test"


def test_an_irds_collection_is_written_in_beir_layout(collection, tmp_path):
    out = tmp_path / "out"
    summary = irds.write(collection, out)
    assert (summary["documents"], summary["queries"]) == (sample.N_DOCS, sample.N_TEST + sample.N_TRAIN)
    assert summary["splits"]["test"]["queries"] == sample.N_TEST
    first = json.loads((out / "corpus.jsonl").read_text().splitlines()[0])
    assert set(first) == {"_id", "title", "text"} and first["title"] == ""
    assert beir.read_qrels(out / "qrels" / "test.tsv") == beir.read_qrels(tmp_path / "src" / "qrels" / "test.tsv")


def test_an_irds_collection_scores_as_the_same_data_from_a_folder(collection, store, tmp_path):
    results = tmp_path / "results"
    common = ["-q", "reproduce", "bm25-flat", "--retriever", "bm25s", "--results-dir", str(results)]
    assert main([*common, "-d", collection]) == 0
    assert main([*common, "-d", "sample"]) == 0
    name = collection.replace("/", "--")

    def metrics(stem: str) -> dict:
        return json.loads(next(Path(results).rglob(f"{stem}.json")).read_text())["metrics"]

    assert metrics(name) == metrics("sample") and metrics("sample")["nDCG@10"] > 0


def test_unknown_ids_get_close_matches(collection):
    with pytest.raises(HarnessError, match=r"ir_datasets has no dataset 'beir/scifact/tset'.*Did you mean"):
        get_dataset("irds:beir/scifact/tset")
