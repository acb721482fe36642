"""Tables for papers: named references, significance marks, seeds, LaTeX conventions, every format."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from statistics import fmean

import numpy as np
import pytest
from scipy import stats

from harness import recipes, reported
from harness.cli import main
from harness.compare import results_folder
from harness.errors import HarnessError
from harness.significance import holm
from harness.tables import FORMATS, Options, _latex_escape, build, render
from tests.support import compile_latex
from tests.test_diff import write_results


def _references(name: str) -> list[tuple[str, float | None]]:
    """(label, reported scifact value) of each reference of a recipe, read from the recipe and the reported tables."""
    return [(ref.label, reported.lookup(ref.table, ref.system, ref.metric)["scifact"].value)
            for ref in recipes.load(name).reference]



def _queries(seed: int, n: int = 60, shift: float = 0.0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {f"q{i}": float(v) for i, v in enumerate(np.clip(rng.uniform(0.2, 0.8, n) + shift, 0, 1))}


def _noisy(scores: dict[str, float], shift: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {q: float(np.clip(v + shift + rng.normal(0, 0.1), 0, 1)) for q, v in scores.items()}


def _csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_two_references_show_both_labels(tmp_path, store):
    refs = _references("inpars-v2")  # InPars-v2 Table 1 and the toolkit's Table 2
    labels = [label for label, _ in refs]
    assert len(set(labels)) == 2
    write_results(tmp_path, store, "inpars-v2", "scifact", {None: _queries(1)})
    table = build(["inpars-v2"], tmp_path, ["scifact"])
    latex = render(table, "latex")
    header = next(line for line in latex.splitlines() if "Ours" in line)
    assert all(_latex_escape(label) in header for label in labels)  # one column per reference, headed by its label
    assert " & ".join(f"{value:.4f}" for _, value in refs) in latex  # both numbers, neither overwritten
    assert all(label in render(table, "markdown") and label in render(table, "html") for label in labels)
    assert {r["reference"] for r in _csv(render(table, "csv"))} == set(labels)

    one = build(["inpars-v2"], tmp_path, ["scifact"], options=Options(references=(labels[1],)))
    assert {r["reference"] for r in _csv(render(one, "csv"))} == {labels[1]}
    assert labels[0] not in render(one, "latex")
    with pytest.raises(HarnessError, match=re.escape(f"{labels[0]}; {labels[1]}")):
        build(["inpars-v2"], tmp_path, ["scifact"], options=Options(references=("Table 9",)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_for_recipes_without_results(tmp_path, store, fmt):
    for datasets in (None, ["scifact"]):
        table = build(["inpars-v2", "bm25-flat"], tmp_path, datasets, store, Options(significance="t-test"))
        text = render(table, fmt)
        assert "scifact" in text and "inpars-v2" in text
        assert "no-result" in text or fmt == "latex"


def _three_systems(tmp_path, store):
    """bm25-flat (baseline), bm25-multifield (clearly better on scifact), monot5-msmarco (slightly worse)."""
    base = {"scifact": _queries(1), "nfcorpus": _queries(2)}
    write_results(tmp_path, store, "bm25-flat", "scifact", {None: base["scifact"]})
    write_results(tmp_path, store, "bm25-flat", "nfcorpus", {None: base["nfcorpus"]})
    better = {"scifact": _noisy(base["scifact"], 0.08, 3), "nfcorpus": _noisy(base["nfcorpus"], 0.0, 4)}
    write_results(tmp_path, store, "bm25-multifield", "scifact", {None: better["scifact"]})
    write_results(tmp_path, store, "bm25-multifield", "nfcorpus", {None: better["nfcorpus"]})
    worse = {"scifact": _noisy(base["scifact"], -0.01, 5), "nfcorpus": _noisy(base["nfcorpus"], -0.01, 6)}
    write_results(tmp_path, store, "monot5-msmarco", "scifact", {None: worse["scifact"]})
    write_results(tmp_path, store, "monot5-msmarco", "nfcorpus", {None: worse["nfcorpus"]})
    return base, {"bm25-multifield": better, "monot5-msmarco": worse}


def _ttest(a: dict, b: dict) -> float:
    queries = sorted(a)
    return float(stats.ttest_rel([b[q] for q in queries], [a[q] for q in queries]).pvalue)


def test_significance_marks_and_p_values_are_scipys(tmp_path, store):
    base, systems = _three_systems(tmp_path, store)
    names = ["bm25-flat", *systems]
    table = build(names, tmp_path, ["scifact", "nfcorpus"], store, Options(significance="t-test"))
    rows = _csv(render(table, "csv"))
    assert all(r["p_value"] == "" for r in rows if r["recipe"] == "bm25-flat")
    for name, scores in systems.items():
        for dataset in ("scifact", "nfcorpus"):
            got = [float(r["p_value"]) for r in rows if r["recipe"] == name and r["dataset"] == dataset]
            assert got and got == pytest.approx([_ttest(base[dataset], scores[dataset])] * len(got), rel=1e-9)
    flagged = {(r["recipe"], r["dataset"]) for r in rows if r["significant"] == "yes"}
    assert ("bm25-multifield", "scifact") in flagged  # +0.08 on 60 queries
    assert flagged == {(r["recipe"], r["dataset"]) for r in rows if r["p_value"] and float(r["p_value"]) < 0.05}
    md = render(table, "markdown")
    assert "†" in md and "paired two-sided t-test" in md and "first system: bm25-flat" in md
    tex = render(table, "latex")
    assert "$^\\dagger$" in tex and "p $<$ 0.05" in tex

    holm_table = build(names, tmp_path, ["scifact", "nfcorpus"], store,
                       Options(significance="t-test", correction="holm"))
    raw = [_ttest(base[d], systems[n][d]) for d in ("scifact", "nfcorpus") for n in systems]
    want = holm(raw)
    got = [holm_table.ours[(n, d)].p_value for d in ("scifact", "nfcorpus") for n in systems]
    assert got == pytest.approx(want)
    assert "Holm-Bonferroni" in render(holm_table, "markdown")

    rand = build(names, tmp_path, ["scifact"], store, Options(significance="randomization", seed=1))
    rows = _csv(render(rand, "csv"))
    p = {r["recipe"]: r for r in rows if r["p_value"]}
    assert float(p["bm25-multifield"]["p_resolution"]) == pytest.approx(1 / 10_001)
    t_p = _ttest(base["scifact"], systems["bm25-multifield"]["scifact"])
    assert (float(p["bm25-multifield"]["p_value"]) < 0.05) == (t_p < 0.05)


def test_significance_needs_the_store(tmp_path, store, capsys):
    _three_systems(tmp_path, store)
    code = main(["--home", str(tmp_path / "other"), "table", "bm25-flat", "bm25-multifield", "-d", "scifact",
                 "--results-dir", str(tmp_path), "--significance", "t-test", "--format", "csv"])
    err = capsys.readouterr().err
    assert code == 2 and "harness reproduce bm25-flat -d scifact" in err and err.count("\n") == 1


def test_seeds_show_mean_and_std_and_are_tested_on_per_query_means(tmp_path, store):
    base = _queries(1)
    write_results(tmp_path, store, "bm25-flat", "scifact", {None: base})
    seeds = {s: _noisy(base, 0.05, 10 + s) for s in (1, 2, 3)}
    write_results(tmp_path, store, "bm25-multifield", "scifact", seeds)
    result = json.loads((results_folder(recipes.load("bm25-multifield"), tmp_path) / "scifact.json").read_text())
    table = build(["bm25-flat", "bm25-multifield"], tmp_path, ["scifact"], store, Options(significance="t-test"))
    rows = {r["recipe"]: r for r in _csv(render(table, "csv"))}
    assert rows["bm25-multifield"]["seeds"] == "3" and rows["bm25-flat"]["seeds"] == "1"
    assert float(rows["bm25-multifield"]["std"]) == pytest.approx(result["std"]["nDCG@10"])
    means = {q: fmean(seeds[s][q] for s in seeds) for q in base}
    assert float(rows["bm25-multifield"]["p_value"]) == pytest.approx(_ttest(base, means), rel=1e-9)
    md = render(table, "markdown")
    mean, std = result["metrics"]["nDCG@10"], result["std"]["nDCG@10"]
    assert f"{mean:.4f} ± {std:.4f}" in md and "per-query means over seeds" in md and "bm25-multifield: 3 seeds" in md
    assert f"{mean:.4f}}}\\,$\\pm$\\,{std:.4f}" in render(table, "latex")  # the best of the row: bold


def test_latex_conventions(tmp_path, store):
    _three_systems(tmp_path, store)
    names = ["bm25-flat", "bm25-multifield", "monot5-msmarco"]
    table = build(names, tmp_path, ["scifact", "nfcorpus"], options=Options(scale=100))
    tex = render(table, "latex")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    ours = {n: [table.ours[(n, d)].mean for d in ("scifact", "nfcorpus")] for n in names}
    line = next(line for line in tex.splitlines() if line.startswith("scifact"))
    ranked = sorted(names, key=lambda n: -ours[n][0])
    assert f"\\textbf{{{ours[ranked[0]][0] * 100:.2f}}}" in line
    assert f"\\underline{{{ours[ranked[1]][0] * 100:.2f}}}" in line
    average = next(line for line in tex.splitlines() if line.startswith("Average"))
    assert average.startswith("Average (2 datasets)")
    assert all(f"{fmean(ours[n]) * 100:.2f}" in average for n in names)
    assert ", ".join(f"{n} v{recipes.load(n).version}" for n in names) in tex and "$\\times$100" in tex
    plain = render(build(names, tmp_path, ["scifact"], options=Options(highlight="none", digits=3)), "latex")
    assert "\\textbf" not in plain and "\\underline" not in plain
    assert f"{ours['bm25-flat'][0]:.3f}" in plain and "Average" not in plain  # one dataset: nothing to average


def test_html_has_the_deltas_chart_beside_the_table(tmp_path, store):
    _three_systems(tmp_path, store)
    page = render(build(["bm25-flat", "bm25-multifield"], tmp_path, ["scifact", "nfcorpus"]), "html")
    assert "<table>" in page and "<svg" in page and "<?xml" not in page
    assert page.index("<table>") < page.index("<svg")


def test_table_command_options(tmp_path, store, capsys):
    _three_systems(tmp_path, store)
    code = main(["table", "bm25-flat", "bm25-multifield", "-d", "scifact", "--results-dir", str(tmp_path),
                 "--significance", "randomization", "--correction", "holm", "--alpha", "0.01", "--format", "latex",
                 "--scale", "100", "--highlight", "best"])
    out = capsys.readouterr().out
    assert code == 0 and "randomization" in out and "Holm" in out and "p $<$ 0.01" in out


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_rich_latex_table_compiles(tmp_path, store):
    base = _queries(1)
    write_results(tmp_path, store, "bm25-flat", "scifact", {None: base})
    write_results(tmp_path, store, "bm25-flat", "nfcorpus", {None: _queries(2)})
    write_results(tmp_path, store, "inpars-v2", "scifact", {s: _noisy(base, 0.1, s) for s in (1, 2, 3)})
    write_results(tmp_path, store, "inpars-v2", "nfcorpus", {s: _noisy(_queries(2), 0.0, s) for s in (1, 2, 3)})
    table = build(["bm25-flat", "inpars-v2"], tmp_path, ["scifact", "nfcorpus"], store,
                  Options(significance="t-test", correction="holm", scale=100))
    body = render(table, "latex")
    assert "$^\\dagger$" in body and all(label in body for label, _ in _references("inpars-v2"))
    compile_latex(tmp_path, body)


@pytest.mark.slow
def test_real_scifact_pair(beir_dir, store, tmp_path, capsys):
    """bm25-flat against bm25-multifield on the real SciFact: the table's p-values are scipy's on the stored scores."""
    results = tmp_path / "res"
    for name in ("bm25-flat", "bm25-multifield"):
        assert main(["-q", "reproduce", name, "-d", "scifact", "--results-dir", str(results)]) == 0
    capsys.readouterr()
    scores = {}
    for name in ("bm25-flat", "bm25-multifield"):
        result = json.loads((results_folder(recipes.load(name), results) / "scifact.json").read_text())
        key = next(s["key"] for s in result["stages"] if s["stage"] == "evaluate")
        per_query = json.loads((store.path(key) / "scores.json").read_text())["per_query"]
        scores[name] = {q: v["nDCG@10"] for q, v in per_query.items()}
    assert len(scores["bm25-flat"]) == 300  # every judged test query, zeros included (trec_eval -c)
    want_t = _ttest(scores["bm25-flat"], scores["bm25-multifield"])
    assert main(["table", "bm25-flat", "bm25-multifield", "-d", "scifact", "--results-dir", str(results),
                 "--significance", "t-test", "--format", "csv"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert float(next(r["p_value"] for r in rows if r["recipe"] == "bm25-multifield")) == pytest.approx(want_t)
    table = build(["bm25-flat", "bm25-multifield"], results, ["scifact"], store, Options(significance="randomization"))
    p = table.ours[("bm25-multifield", "scifact")].p_value
    assert (p < 0.05) == (want_t < 0.05) and p == pytest.approx(want_t, abs=0.02)
    print(f"SciFact nDCG@10 bm25-multifield vs bm25-flat: t-test p={want_t:.4f}, randomization p={p:.4f}")


def test_two_references_with_one_label_keep_both_numbers():
    from harness.compare import Row

    rows = [Row("x", "scifact", "nDCG@10", "Paper Table 1", 0.70, 0.71, 0.01, 0.01, "ok"),
            Row("x", "scifact", "nDCG@10", "Paper Table 1", 0.65, 0.71, 0.06, 0.01, "above")]
    tex = render(rows, "latex", "t")
    assert "Paper Table 1 & Paper Table 1 (2) & Ours" in tex and "0.7000 & 0.6500 & 0.7100" in tex


def test_queries_scored_for_one_system_only_are_left_out_and_said(tmp_path, store):
    base = _queries(1)
    write_results(tmp_path, store, "bm25-flat", "scifact", {None: base})
    fewer = {q: v for q, v in _noisy(base, 0.02, 3).items() if q not in ("q0", "q1")}  # e.g. few-shot examples
    write_results(tmp_path, store, "bm25-multifield", "scifact", {None: fewer})
    table = build(["bm25-flat", "bm25-multifield"], tmp_path, ["scifact"], store, Options(significance="t-test"))
    cell = table.ours[("bm25-multifield", "scifact")]
    assert cell.test.n == 58 and cell.p_value == pytest.approx(_ttest({q: base[q] for q in fewer}, fewer))
    said = "tested on the 58 queries both were scored on (bm25-flat 60, bm25-multifield 58)"
    assert said in render(table, "markdown")


def test_comparison_rows_with_a_std_show_it():
    """`harness compare` renders rows alone; a row of several seeds' results carries the std (compare's Row.std)."""
    from types import SimpleNamespace

    row = SimpleNamespace(recipe="x", dataset="scifact", metric="nDCG@10", reference="Paper Table 1", expected=0.7,
                          actual=0.71, delta=0.01, tolerance=0.01, verdict="ok", note="", std=0.02)
    md = render([row], "markdown")  # type: ignore[list-item]
    assert "0.7100 ± 0.0200" in md and "± sample standard deviation over seeds (x)" in md
