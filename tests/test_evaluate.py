"""Evaluation: trec_eval measures with `-c` semantics, checked by hand."""

import json
import math

import pytest

from harness.evaluate import evaluate, mean_of


def test_ndcg_at_10_by_hand():
    qrels = {"q1": {"d1": 1, "d3": 2}}
    run = {"q1": [("d2", 3.0), ("d1", 2.0), ("d3", 1.0)]}
    means, per_query = evaluate(run, qrels, ["nDCG@10", "MRR@10"])
    dcg = 1 / math.log2(3) + 2 / math.log2(4)  # trec_eval's gain is the grade itself, at ranks 2 and 3
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert means["nDCG@10"] == pytest.approx(dcg / idcg, abs=1e-6)
    assert per_query["q1"]["MRR@10"] == pytest.approx(0.5)


def test_missing_query_counts_as_zero_like_trec_eval_minus_c():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": [("d1", 1.0)]}
    means, per_query = evaluate(run, qrels, ["nDCG@10", "R@100"])
    assert per_query["q2"] == {"nDCG@10": 0.0, "R@100": 0.0}
    assert means["nDCG@10"] == pytest.approx(0.5)


def test_queries_without_relevant_documents_are_not_scored():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 0}}
    means, per_query = evaluate({"q1": [("d1", 1.0)]}, qrels, ["nDCG@10"])
    assert set(per_query) == {"q1"} and means["nDCG@10"] == 1.0


def test_mrr_at_10_ignores_hits_below_rank_10():
    qrels = {"q1": {"d11": 1}}
    run = {"q1": [(f"d{i}", 100.0 - i) for i in range(20)]}
    means, _ = evaluate(run, qrels, ["MRR@10", "MAP"])
    assert means["MRR@10"] == 0.0 and means["MAP"] == pytest.approx(1 / 12)


def test_ties_are_broken_by_document_id_descending_as_trec_eval():
    qrels = {"q1": {"a": 1}}
    means, _ = evaluate({"q1": [("a", 1.0), ("b", 1.0)]}, qrels, ["MRR@10"])
    assert means["MRR@10"] == 0.5  # "b" > "a": trec_eval ranks b first


def test_mean_of_groups():
    assert mean_of([{"m": 0.2}, {"m": 0.4}]) == {"m": pytest.approx(0.3)}


def test_a_hit_equal_to_the_query_id_is_ignored_as_beir_does_arguana_shaped():
    """BEIR, beir/retrieval/evaluation.py, `EvaluateRetrieval.evaluate(qrels, results, k_values,
    ignore_identical_ids: bool = True)`: `for pid in list(rels): if qid == pid: results[qid].pop(pid)`, for every
    dataset. ArguAna's queries are arguments of the corpus: a published run ranks each query's own argument
    first, and its counter-argument (the relevant one) second."""
    qrels = {"arg1": {"arg1-counter": 1}, "arg2": {"arg2-counter": 1}}
    run = {"arg1": [("arg1", 30.0), ("arg1-counter", 20.0), ("x", 10.0)],
           "arg2": [("arg2", 30.0), ("y", 25.0), ("arg2-counter", 20.0)]}
    means, per_query = evaluate(run, qrels, ["nDCG@10", "MRR@10"])
    assert per_query["arg1"] == {"nDCG@10": 1.0, "MRR@10": 1.0}  # the counter-argument is now first
    assert per_query["arg2"]["nDCG@10"] == pytest.approx(1 / math.log2(3))  # second, not third
    kept, _ = evaluate(run, qrels, ["nDCG@10"], ignore_identical_ids=False)
    assert kept["nDCG@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2)
    assert means["nDCG@10"] - kept["nDCG@10"] > 0.1  # the size of the effect the issue measured


def test_the_rule_changes_nothing_without_self_hits():
    qrels = {"q1": {"d1": 1, "d3": 2}}
    run = {"q1": [("d2", 3.0), ("d1", 2.0), ("d3", 1.0)]}
    assert evaluate(run, qrels, ["nDCG@10"]) == evaluate(run, qrels, ["nDCG@10"], ignore_identical_ids=False)


def test_the_evaluate_stage_applies_the_rule_for_every_dataset_and_its_version_says_so():
    from harness.stages import evaluate as stage

    assert stage.Params().ignore_identical_ids is True
    assert stage.STAGE.version == 2  # v1 removed self-hits only in the harness's own retrieval (ArguAna, Quora)


def test_the_evaluate_stage_leaves_out_the_query_ids_of_its_examples_input(tmp_path):
    """The `examples` artifact's `query_ids` (the examples shown, or every query of their source for a fetched
    reranker) are not scored; the summary counts those among the evaluated queries."""
    from types import SimpleNamespace

    from harness.data import beir, sample
    from harness.data.trec import write_run
    from harness.stages import Context
    from harness.stages import evaluate as stage

    sample.build(tmp_path / "sample")
    corpus = SimpleNamespace(file=lambda name: tmp_path / "sample" / name)
    qrels = beir.read_qrels(corpus.file("qrels/test.tsv"))
    shown = sorted(qrels)[:3]
    write_run({q: [(d, 1.0)] for q in qrels for d in list(qrels[q])[:1]}, tmp_path / "run" / "run.trec")
    (tmp_path / "examples.json").write_text(json.dumps({"examples": [], "query_ids": [*shown, "a-train-query"]}))
    inputs = {"corpus": corpus, "run": SimpleNamespace(file=lambda name: tmp_path / "run" / name),
              "examples": SimpleNamespace(file=lambda name: tmp_path / name)}
    for with_examples in (False, True):
        out = SimpleNamespace(path=tmp_path / f"out-{with_examples}", summary={})
        out.path.mkdir()
        stage.run(inputs if with_examples else {k: v for k, v in inputs.items() if k != "examples"},
                  stage.Params(split="test"), out, Context(None, "sample"))
        scored = json.loads((out.path / "scores.json").read_text())["per_query"]
        if with_examples:
            assert out.summary["excluded_example_queries"] == 3 and out.summary["queries"] == len(qrels) - 3
            assert sorted(set(qrels) - set(scored)) == shown
        else:
            assert out.summary["excluded_example_queries"] == 0 and set(scored) == set(qrels)
