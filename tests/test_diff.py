"""Per-query analysis: scores read back from the store through results files, and `harness diff`."""

from __future__ import annotations

import json
from statistics import fmean, stdev

import pytest

from harness import recipes
from harness.cli import main
from harness.compare import results_folder
from harness.diff import diff, load, per_query, plot, report
from harness.errors import HarnessError
from harness.store import Store


def put_corpus(store: Store, key: str, queries: dict[str, str]) -> None:
    def build(b):
        lines = [json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()]
        (b.path / "queries.jsonl").write_text("".join(lines))

    store.get_or_build(key, build, kind="corpus", stage="corpus", params={}, inputs={})


def put_scores(store: Store, key: str, scores: dict[str, float], metric: str = "nDCG@10", corpus: str = "") -> None:
    """An evaluate artifact as the stage writes it: {"metrics": means, "per_query": {qid: {metric: value}}}."""
    def build(b):
        payload = {"metrics": {metric: fmean(scores.values())},
                   "per_query": {q: {metric: v} for q, v in scores.items()}}
        (b.path / "scores.json").write_text(json.dumps(payload))

    inputs = {"corpus": corpus} if corpus else {}
    store.get_or_build(key, build, kind="scores", stage="evaluate", params={}, inputs=inputs)


def write_results(results_dir, store: Store, name: str, dataset: str, runs: dict, metric: str = "nDCG@10",
                  corpus: str = "") -> None:
    """A results file of recipe `name` on `dataset`; runs: {seed: per-query scores} (seed None: single-seed)."""
    recipe = recipes.load(name)
    stages, means = [], {}
    for seed, scores in runs.items():
        key = f"evaluate-{name}-{dataset}-{seed}".replace("/", "-")
        put_scores(store, key, scores, metric, corpus)
        stages.append({"dataset": dataset, "stage": "evaluate", "key": key, "mode": "regenerate", "seconds": 0.1,
                       **({"seed": seed} if seed is not None else {})})
        means[seed] = fmean(scores.values())
    payload: dict = {"recipe": name, "version": recipe.version, "dataset": dataset,
                     "metrics": {metric: fmean(means.values())}, "stages": stages}
    if None not in runs:
        payload.update(seeds=list(runs), std={metric: stdev(means.values())},
                       per_seed={str(s): {metric: v} for s, v in means.items()})
    folder = results_folder(recipe, results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{dataset.replace('/', '--')}.json").write_text(json.dumps(payload))


A = {"q1": 0.5, "q2": 0.2, "q3": 0.9, "q4": 0.4, "q5": 0.0, "q6": 0.7}
B = {"q1": 0.8, "q2": 0.2, "q3": 0.3, "q4": 0.5, "q5": 0.6, "q6": 0.7}
TEXTS = {f"q{i}": f"question number {i}" for i in range(1, 7)}


def test_diff_lists_the_right_queries(tmp_path, store):
    put_corpus(store, "corpus-x", TEXTS)
    write_results(tmp_path, store, "bm25-flat", "scifact", {None: A}, corpus="corpus-x")
    write_results(tmp_path, store, "bm25-multifield", "scifact", {None: B}, corpus="corpus-x")
    d = load("bm25-flat", "bm25-multifield", "scifact", "nDCG@10", tmp_path, store)
    assert (d.wins, d.ties, d.losses) == (3, 2, 1)
    assert [(c.query, c.a, c.b) for c in d.gains(2)] == [("q5", 0.0, 0.6), ("q1", 0.5, 0.8)]
    assert [c.query for c in d.gains(10)] == ["q5", "q1", "q4"]
    assert [(c.query, c.text) for c in d.drops(10)] == [("q3", "question number 3")]
    text = report(d, top=2)
    assert "3 wins, 2 ties, 1 losses" in text
    assert "q5" in text and "question number 5" in text and "q4" not in text  # top 2 gains only
    paths = plot(d, tmp_path / "plots" / "flat-vs-multi")
    assert [p.name for p in paths] == ["flat-vs-multi.png", "flat-vs-multi.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<svg" in paths[1].read_text()


def test_diff_command(tmp_path, store, capsys, monkeypatch):
    write_results(tmp_path, store, "bm25-flat", "scifact", {None: A})
    write_results(tmp_path, store, "bm25-multifield", "scifact", {None: B})
    monkeypatch.chdir(tmp_path)
    code = main(["diff", "bm25-flat", "bm25-multifield", "-d", "scifact", "--results-dir", str(tmp_path),
                 "--top", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| q5 " in out and "| q3 " in out and "| q1 " not in out
    assert (tmp_path / "diff-bm25-flat-bm25-multifield-scifact.svg").is_file()
    code = main(["diff", "bm25-flat", "bm25-multifield", "-d", "nfcorpus", "--results-dir", str(tmp_path)])
    assert code == 2 and "harness reproduce bm25-flat -d nfcorpus" in capsys.readouterr().err


def test_seeds_are_averaged_per_query(tmp_path, store):
    write_results(tmp_path, store, "bm25-flat", "scifact", {1: {"a": 0.2, "b": 0.4}, 2: {"a": 0.4, "b": 0.0}})
    result = json.loads((results_folder(recipes.load("bm25-flat"), tmp_path) / "scifact.json").read_text())
    got = per_query(result, "nDCG@10", store)
    assert got.scores == pytest.approx({"a": 0.3, "b": 0.2}) and got.seeds == (1, 2)


def test_pooled_forums_and_missing_artifacts(tmp_path, store):
    put_scores(store, "evaluate-android", {"1": 0.5})
    put_scores(store, "evaluate-gis", {"1": 0.25})
    result = {"recipe": "bm25-flat", "dataset": "cqadupstack", "stages": [
        {"dataset": "cqadupstack/android", "stage": "evaluate", "key": "evaluate-android"},
        {"dataset": "cqadupstack/gis", "stage": "evaluate", "key": "evaluate-gis"}]}
    assert per_query(result, "nDCG@10", store).scores == {"cqadupstack/android/1": 0.5, "cqadupstack/gis/1": 0.25}
    with pytest.raises(HarnessError, match="MAP"):
        per_query(result, "MAP", store)
    with pytest.raises(HarnessError, match="harness reproduce bm25-flat -d cqadupstack"):
        per_query(result, "nDCG@10", Store(tmp_path / "empty"))


def test_queries_of_one_side_only_are_left_out():
    from harness.diff import PerQuery

    d = diff(PerQuery("x", "d", "nDCG@10", {"a": 0.1, "b": 0.2}), PerQuery("y", "d", "nDCG@10", {"a": 0.3, "c": 0.0}))
    assert [c.query for c in d.changes] == ["a"] and (d.only_a, d.only_b) == (1, 1)
