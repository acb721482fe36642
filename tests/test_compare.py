"""The comparator's verdicts and the tables rendered from them."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from harness import recipes, reported
from harness.compare import compare, pin, verdict
from harness.tables import render


def test_verdicts():
    assert verdict(0.5, 0.5004, 0.0005) == (pytest.approx(0.0004), "ok")
    assert verdict(0.5, 0.51, 0.0005)[1] == "above"
    assert verdict(0.5, 0.49, 0.0005)[1] == "below"
    assert verdict(None, 0.49, 0.0005) == (None, "no-reference")
    assert verdict(0.5, None, 0.0005) == (None, "no-result")


def test_reported_tables_keep_missing_numbers_missing():
    rows = reported.lookup("inpars-v2-table1", "PrGator (Promptagator)", "nDCG@10")
    assert rows["quora"].value is None and rows["scifact"].value == pytest.approx(0.731)
    scaled = reported.lookup("promptagator-table2", "BM25 [Retriever / Unsupervised]", "nDCG@10")
    assert 0 < scaled["scifact"].value < 1  # printed x100, stored on the 0-1 scale


def _results(folder, recipe, scores):
    out = folder / recipe.name / f"v{recipe.version}"
    out.mkdir(parents=True)
    for dataset, value in scores.items():
        (out / f"{dataset}.json").write_text(json.dumps({"dataset": dataset, "metrics": {"nDCG@10": value}}))


def test_compare_renders_expected_verdicts(tmp_path):
    recipe = recipes.load("bm25-flat")
    _results(tmp_path, recipe, {"scifact": 0.6791, "nfcorpus": 0.30, "fiqa": 0.40})
    rows = [r for r in compare(recipe, tmp_path, ["scifact", "nfcorpus", "fiqa", "quora"]) if r.reference == "pyserini 2CR"]
    got = {r.dataset: r.verdict for r in rows}
    assert got == {"scifact": "ok", "nfcorpus": "below", "fiqa": "above", "quora": "no-result"}


def test_pinned_regression_level(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.compare.pinned_dir", lambda: tmp_path / "pinned")
    recipe = recipes.load("bm25-flat")
    _results(tmp_path, recipe, {"scifact": 0.6789})
    pin(recipe, tmp_path)
    assert [r.verdict for r in compare(recipe, tmp_path, ["scifact"], pinned=True)] == ["ok"]
    (tmp_path / recipe.name / f"v{recipe.version}" / "scifact.json").write_text(json.dumps({"dataset": "scifact", "metrics": {"nDCG@10": 0.6780}}))
    assert [r.verdict for r in compare(recipe, tmp_path, ["scifact"], pinned=True)] == ["below"]


@pytest.mark.parametrize("fmt", ["markdown", "latex", "csv", "html"])
def test_tables_render(tmp_path, fmt):
    recipe = recipes.load("bm25-flat")
    _results(tmp_path, recipe, {"scifact": 0.6791})
    text = render(compare(recipe, tmp_path, ["scifact"]), fmt, "BM25")
    assert "scifact" in text and "0.6791" in text


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_table_compiles(tmp_path):
    recipe = recipes.load("bm25-flat")
    _results(tmp_path, recipe, {"scifact": 0.6791, "nfcorpus": 0.30})
    body = render(compare(recipe, tmp_path, ["scifact", "nfcorpus"]), "latex", "BM25 & co")
    doc = tmp_path / "t.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}" + body + "\\end{document}")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


def test_toolkit_gpu_numbers_placed_as_our_results_get_the_expected_verdicts(tmp_path):
    """The toolkit's GPU reproduction (its Table 2) compared with InPars-v2 Table 1, as if it were ours."""
    recipe = recipes.load("inpars-v2")
    gpu = reported.lookup("inpars-toolkit-table2", "InPars-v2 monoT5-3B trained on GPU with toolkit (GPU column)",
                          "nDCG@10")
    ours = {d: r.value for d, r in gpu.items() if not d.startswith("average") and r.value is not None}
    _results(tmp_path, recipe, ours)
    paper = reported.lookup("inpars-v2-table1", "monoT5-3B +InPars-v2", "nDCG@10")
    rows = [r for r in compare(recipe, tmp_path) if r.reference == "InPars-v2 Table 1"]
    by_dataset = {r.dataset: r for r in rows}
    for dataset, value in ours.items():
        expected = paper[dataset].value
        row = by_dataset[dataset]
        assert row.actual == value and row.expected == expected
        delta = value - expected
        want = "ok" if abs(delta) <= 0.01 + 1e-9 else ("above" if delta > 0 else "below")
        assert row.verdict == want, (dataset, value, expected)
    assert {r.verdict for r in rows} >= {"ok"}
    average = by_dataset["average"]
    assert average.verdict in ("ok", "above", "below") and average.actual is not None  # all 18 present
