"""Reading BEIR folders strictly: one clear sentence per bad input, with file and line."""

from __future__ import annotations

import logging

import pytest

from harness.data import beir
from harness.errors import HarnessError
from harness.stages.corpus import normalize


def _folder(tmp_path, corpus: str, queries='{"_id": "q1", "text": "a"}\n',
            qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\n"):
    (tmp_path / "qrels").mkdir(parents=True, exist_ok=True)
    (tmp_path / "corpus.jsonl").write_text(corpus)
    (tmp_path / "queries.jsonl").write_text(queries)
    (tmp_path / "qrels" / "test.tsv").write_text(qrels)
    return beir.BeirFolder(tmp_path)


def test_malformed_corpus_line_names_file_and_line(tmp_path):
    folder = _folder(tmp_path, '{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": \n')
    with pytest.raises(HarnessError, match=r"corpus.jsonl line 2: not valid JSON"):
        list(beir.iter_corpus(folder.corpus))


@pytest.mark.parametrize(
    "corpus, message",
    [
        ('{"_id": "d1"}\n', "missing field 'text'"),
        ('{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n', "duplicate document id 'd1'"),
        ("", "holds no documents"),
        ('["d1", "a"]\n', "expected a JSON object"),
        ('{"_id": "d1", "text": 5}\n', "must be a string"),
    ],
)
def test_bad_corpus_inputs(tmp_path, corpus, message):
    folder = _folder(tmp_path, corpus)
    with pytest.raises(HarnessError, match=message):
        list(beir.iter_corpus(folder.corpus))


def test_wrong_encoding(tmp_path):
    folder = _folder(tmp_path, "")
    folder.corpus.write_bytes('{"_id": "d1", "text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(HarnessError, match="not UTF-8"):
        list(beir.iter_corpus(folder.corpus))


def test_qrels_naming_unknown_documents_warn_with_count(tmp_path, caplog):
    folder = _folder(tmp_path / "in", '{"_id": "d1", "text": "x"}\n',
                     qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td9\t1\nq1\td8\t1\n")
    with caplog.at_level(logging.WARNING):
        summary = normalize(folder, tmp_path / "out")
    assert summary["splits"]["test"]["unknown_documents"] == 2
    assert "2 judgment(s) name documents not in the corpus" in caplog.text


def test_bad_qrels_line(tmp_path):
    folder = _folder(tmp_path, '{"_id": "d1", "text": "x"}\n', qrels="q1 d1\n")
    with pytest.raises(HarnessError, match="line 1: expected `query-id corpus-id score`"):
        beir.read_qrels(folder.qrels("test"))
    with pytest.raises(HarnessError, match="no qrels for split 'dev'"):
        folder.qrels("dev")


def test_limit_queries_is_deterministic_and_nested():
    ids = [f"q{i}" for i in range(100)]
    assert beir.limit_queries(ids, 10) == beir.limit_queries(list(reversed(ids)), 10)
    assert set(beir.limit_queries(ids, 10)) <= set(beir.limit_queries(ids, 20))
    assert beir.limit_queries(ids, None) == sorted(ids)
