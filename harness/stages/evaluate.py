"""Stage `evaluate`: trec_eval measures of a run against the dataset's qrels, per query and averaged."""

from __future__ import annotations

import json

from pydantic import Field

from harness.data import beir
from harness.data.catalog import get_dataset
from harness.data.trec import read_run
from harness.evaluate import DEFAULT_METRICS, evaluate
from harness.stages import Stage, StageParams


class Params(StageParams):
    metrics: tuple[str, ...] = DEFAULT_METRICS
    split: str | None = None
    limit_queries: int | None = Field(None, ge=1)
    relevance_level: int = 1


def run(inputs: dict, params: Params, out, ctx) -> None:
    split = params.split or get_dataset(ctx.dataset).split
    qrels = beir.read_qrels(inputs["corpus"].file(f"qrels/{split}.tsv"))
    keep = set(beir.limit_queries(qrels, params.limit_queries))
    # Queries shown to the LLM as few-shot examples are not evaluated (the toolkit leaks them).
    excluded = set()
    if "examples" in inputs:
        excluded = set(json.loads(inputs["examples"].file("examples.json").read_text()).get("query_ids", []))
    qrels = {q: d for q, d in qrels.items() if q in keep and q not in excluded}
    means, per_query = evaluate(read_run(inputs["run"].file("run.trec")), qrels, params.metrics, params.relevance_level)
    (out.path / "scores.json").write_text(json.dumps({"metrics": means, "per_query": per_query}, indent=1, sort_keys=True))
    out.summary.update({"metrics": means, "queries": len(qrels), "excluded_example_queries": len(excluded & keep)})


STAGE = Stage(name="evaluate", version=1, kind="scores", params=Params, run=run)
