"""Stage `evaluate`: trec_eval measures of a run against the dataset's qrels, per query and averaged."""

from __future__ import annotations

import json

from pydantic import Field

from harness.data import beir
from harness.data.catalog import get_dataset
from harness.data.trec import read_run
from harness.evaluate import DEFAULT_METRICS, evaluate, identical_ids
from harness.stages import Stage, StageParams


class Params(StageParams):
    metrics: tuple[str, ...] = DEFAULT_METRICS
    split: str | None = None
    limit_queries: int | None = Field(None, ge=1)
    relevance_level: int = 1
    # BEIR's rule, for every dataset: a hit whose document id is the query id is not scored (see harness.evaluate).
    ignore_identical_ids: bool = True


def run(inputs: dict, params: Params, out, ctx) -> None:
    split = params.split or get_dataset(ctx.dataset).split
    qrels = beir.read_qrels(inputs["corpus"].file(f"qrels/{split}.tsv"))
    keep = set(beir.limit_queries(qrels, params.limit_queries))
    # Queries shown to the LLM as few-shot examples are not evaluated (the toolkit leaks them).
    excluded = set()
    if "examples" in inputs:
        excluded = set(json.loads(inputs["examples"].file("examples.json").read_text()).get("query_ids", []))
    qrels = {q: d for q, d in qrels.items() if q in keep and q not in excluded}
    run_ = read_run(inputs["run"].file("run.trec"))
    means, per_query = evaluate(run_, qrels, params.metrics, params.relevance_level, params.ignore_identical_ids)
    (out.path / "scores.json").write_text(
        json.dumps({"metrics": means, "per_query": per_query}, indent=1, sort_keys=True))
    out.summary.update({"metrics": means, "queries": len(qrels), "excluded_example_queries": len(excluded & keep),
                        "identical_ids_ignored": identical_ids({q: h for q, h in run_.items() if q in qrels})
                        if params.ignore_identical_ids else 0})


# v2: hits whose document id is the query id are ignored for every dataset (BEIR's evaluation), not only where
# the harness's own retrieval removed them.
STAGE = Stage(name="evaluate", version=2, kind="scores", params=Params, run=run, include="always", judged=True,
              # `examples`: the few-shot example queries left out of evaluation, drawn with the recipe's generate
              # settings (the runner passes them only when the prompt shows the dataset's own queries, and sets
              # their `scope`: see `harness.runner.OWN_INPUT_PARAMS`)
              inputs={"corpus": "corpus", "run": ("rerank", "retrieve"), "examples": "examples"},
              optional=("examples",), own_inputs={"examples": ("prompt", "n_examples", "examples_source", "seed")},
              missing="the recipe has nothing to evaluate (add `retrieve`, optionally `rerank`).")
