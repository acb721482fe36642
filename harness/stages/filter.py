"""Stage `filter`: keep the best `top_k` synthetic queries, by mean token log-probability or by a reranker.

As the InPars toolkit: drop generations with fewer than `min_tokens` or more than `max_tokens` tokens,
optionally drop queries copied verbatim from their document, score, sort best first (a stable sort, so
ties keep the generation order), keep the top k.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, model_validator

from harness.data import beir
from harness.stages import Stage, StageParams

SCORE_DECIMALS = 6


class Params(StageParams):
    strategy: Literal["scores", "reranker"] = "scores"
    top_k: int = Field(10_000, ge=1)
    min_tokens: int = Field(3, ge=0)
    max_tokens: int = Field(1000, ge=0)
    drop_copied: bool = False
    # The reranker strategy (InPars-v2: castorini/monot5-3b-msmarco-10k at a pinned revision).
    model: str | None = None
    model_revision: str | None = None
    batch_size: int = Field(32, ge=1)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: int = Field(512, ge=8)

    @model_validator(mode="after")
    def _check(self):
        if self.strategy == "reranker" and not self.model:
            raise ValueError("strategy `reranker` needs `model` (e.g. castorini/monot5-3b-msmarco-10k) and its revision")
        if self.strategy == "scores" and self.model:
            raise ValueError("`model` is only used by strategy `reranker`")
        return self

    def key_params(self) -> dict:
        values = super().key_params()
        if self.strategy == "scores":  # the reranker's settings cannot change a log-prob ranking
            for name in ("model", "model_revision", "batch_size", "dtype", "max_length"):
                values.pop(name)
        return values


def copied(query: str, document: str) -> bool:
    """Whether the query appears verbatim (ignoring case) in its document, as the toolkit's option tests."""
    return bool(query.strip()) and query.strip().lower() in document.lower()


def mean_log_prob(log_probs: list[float]) -> float:
    return sum(log_probs) / len(log_probs) if log_probs else float("-inf")


def run(inputs: dict, params: Params, out, ctx) -> None:
    rows = list(beir.read_jsonl(inputs["queries"].file("queries.jsonl")))
    counts = {"input": len(rows), "too_short": 0, "too_long": 0, "copied": 0}
    kept = []
    for row in rows:
        n = len(row["log_probs"])
        if n < params.min_tokens:
            counts["too_short"] += 1
        elif n > params.max_tokens:
            counts["too_long"] += 1
        else:
            kept.append(row)
    docs: dict[str, str] = {}
    if params.drop_copied or params.strategy == "reranker":
        wanted = {row["doc_id"] for row in kept}
        docs = {d.id: beir.doc_text(d.title, d.text) for d in beir.iter_corpus(inputs["corpus"].file("corpus.jsonl"))
                if d.id in wanted}
    if params.drop_copied:
        before = len(kept)
        kept = [row for row in kept if not copied(row["query"], docs[row["doc_id"]])]
        counts["copied"] = before - len(kept)
    if params.strategy == "scores":
        scores = [mean_log_prob(row["log_probs"]) for row in kept]
    else:
        scores = _rerank(kept, docs, params, ctx)
    order = sorted(range(len(kept)), key=lambda i: -scores[i])  # stable: ties keep the generation order
    with open(out.path / "queries.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({**kept[i], "score": round(float(scores[i]), SCORE_DECIMALS)}, ensure_ascii=False) + "\n" for i in order[: params.top_k])
    out.device = ctx.device
    out.summary.update({**counts, "scored": len(kept), "kept": min(len(kept), params.top_k), "strategy": params.strategy})


def _rerank(rows: list[dict], docs: dict[str, str], params: Params, ctx) -> list[float]:
    """P(relevant) of each (query, its source document) from a reranker (monoT5: P(true))."""
    from harness.models.loading import resolve
    from harness.models.rerankers import load_reranker

    if not rows:
        return []
    path = resolve(params.model, ctx.store.root, params.model_revision)
    reranker = load_reranker(path, device=ctx.device, dtype=params.dtype, batch_size=params.batch_size,
                             max_length=params.max_length)
    scores: list[float] = []
    step = max(params.batch_size * 16, 1)
    with ctx.bar(len(rows), "filter") as bar:
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            scores += [float(s) for s in reranker.score([r["query"] for r in part], [docs[r["doc_id"]] for r in part])]
            bar.update(len(part))
    return scores


STAGE = Stage(name="filter", version=1, kind="queries", params=Params, run=run)
