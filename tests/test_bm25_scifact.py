"""The BM25 baselines on the real SciFact: pyserini's two-click numbers, reuse, and bm25s beside them."""

from __future__ import annotations

import json
import time

import pytest

from harness.cli import main

pytestmark = pytest.mark.slow


def _run(recipe, tmp_path, *extra):
    started = time.perf_counter()
    code = main(["-q", "reproduce", recipe, "-d", "scifact", "--results-dir", str(tmp_path / "res"), *extra])
    return code, time.perf_counter() - started


@pytest.mark.parametrize("recipe, expected", [("bm25-flat", 0.6789), ("bm25-multifield", 0.6647)])
def test_pyserini_reproduces_the_two_click_scores_and_reuses_everything(beir_dir, store, tmp_path, capsys, recipe,
                                                                         expected):
    code, first = _run(recipe, tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(next((tmp_path / "res" / recipe).rglob("scifact.json")).read_text())
    assert result["metrics"]["nDCG@10"] == pytest.approx(expected, abs=0.0005)
    row = next(line for line in out.splitlines() if "pyserini 2CR" in line)
    assert "ok" in [cell.strip() for cell in row.strip().strip("|").split("|")]  # the comparison table's cells
    code, second = _run(recipe, tmp_path)
    out = capsys.readouterr().out
    assert code == 0 and "(4 reused, 0 fetched, 0 built)" in out
    assert second < 0.2 * first


def test_bm25s_is_reported_beside_pyserini(beir_dir, store, tmp_path, capsys):
    code, _ = _run("bm25-flat", tmp_path, "--retriever", "bm25s")
    assert code == 0
    result = json.loads(next((tmp_path / "res" / "bm25-flat").rglob("scifact.json")).read_text())
    # Same BM25 formula, an approximation of Lucene's analyzer: close, not identical.
    assert result["metrics"]["nDCG@10"] == pytest.approx(0.6789, abs=0.005)
    assert result["modified"] == {"retrieve.retriever": "bm25s"}
