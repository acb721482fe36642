"""Scoring runs with trec_eval's measures (pytrec_eval), `-c` semantics, per-query scores kept."""

from __future__ import annotations

from statistics import fmean

from harness.data.beir import Qrels
from harness.data.trec import Run
from harness.errors import HarnessError

# Our metric names → pytrec_eval measure and the key it returns.
MEASURES = {
    "nDCG@10": ("ndcg_cut.10", "ndcg_cut_10"),
    "nDCG@20": ("ndcg_cut.20", "ndcg_cut_20"),
    "R@100": ("recall.100", "recall_100"),
    "R@1000": ("recall.1000", "recall_1000"),
    "MAP": ("map", "map"),
    "MRR@10": ("recip_rank", "recip_rank"),  # on the run cut at 10 hits, as MS MARCO's script does
    "P@10": ("P.10", "P_10"),
}
DEFAULT_METRICS = ("nDCG@10", "MRR@10", "R@100", "R@1000", "MAP")


def evaluate(
    run: Run, qrels: Qrels, metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS, relevance_level: int = 1,
    ignore_identical_ids: bool = True,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(mean per metric, per-query scores) over every query of the qrels that has a relevant document.

    trec_eval `-c`: a judged query missing from the run scores 0 and is kept in the mean, instead of
    being dropped (which would inflate the score of a run that fails on hard queries). Queries of the
    run without judgments are ignored, as trec_eval does.

    `ignore_identical_ids`: a hit whose document id is the query id is dropped before scoring, for every
    dataset, as BEIR's `EvaluateRetrieval.evaluate(..., ignore_identical_ids=True)` does by default (ArguAna's
    and Quora's queries are documents of their corpus: a run that keeps the query's own document, such as a
    published or reranked one, would otherwise be scored with it).
    """
    import pytrec_eval

    unknown = [m for m in metrics if m not in MEASURES]
    if unknown:
        raise HarnessError(f"Unknown metric(s) {unknown}; known: {', '.join(MEASURES)}.")
    judged = {q: docs for q, docs in qrels.items() if any(r >= relevance_level for r in docs.values())}
    if not judged:
        raise HarnessError("The qrels have no relevant judgment at this relevance level: nothing to evaluate.")
    # Scores as given: trec_eval sorts by score and breaks ties by document id (descending), so a
    # stage that wants its own order kept must give strictly decreasing scores (the reranker does).
    as_dict = {q: {d: s for d, s in hits if not (ignore_identical_ids and d == q)} for q, hits in run.items()
               if q in judged}
    per_query: dict[str, dict[str, float]] = {q: {} for q in judged}
    plain = [m for m in metrics if m != "MRR@10"]
    if plain:
        evaluator = pytrec_eval.RelevanceEvaluator(
            judged, {MEASURES[m][0] for m in plain}, relevance_level=relevance_level
        )
        for qid, scores in evaluator.evaluate(as_dict).items():
            for m in plain:
                per_query[qid][m] = scores[MEASURES[m][1]]
    if "MRR@10" in metrics:
        cut = {q: dict(_trec_order(docs)[:10]) for q, docs in as_dict.items()}
        evaluator = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}, relevance_level=relevance_level)
        for qid, scores in evaluator.evaluate(cut).items():
            per_query[qid]["MRR@10"] = scores["recip_rank"]
    for scores in per_query.values():  # `-c`: judged queries without results count as 0
        for m in metrics:
            scores.setdefault(m, 0.0)
    means = {m: fmean(per_query[q][m] for q in per_query) for m in metrics}
    return means, per_query


def identical_ids(run: Run) -> int:
    """How many hits of a run have the query's own id as document id (what `ignore_identical_ids` drops)."""
    return sum(1 for q, hits in run.items() for d, _ in hits if d == q)


def mean_of(groups: list[dict[str, float]]) -> dict[str, float]:
    """The plain mean of several datasets' scores, metric by metric (CQADupStack's 12 forums)."""
    return {m: fmean(g[m] for g in groups) for m in groups[0]}


def _trec_order(docs: dict[str, float]) -> list[tuple[str, float]]:
    """Hits in trec_eval's order: score descending, ties by document id descending."""
    return sorted(sorted(docs.items(), reverse=True), key=lambda h: -h[1])
