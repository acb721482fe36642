"""Stage `filter`: keep the best `top_k` synthetic queries, by mean token log-probability or by a reranker.

As the InPars toolkit: drop generations with fewer than `min_tokens` or more than `max_tokens` tokens,
optionally drop queries copied verbatim from their document, score, sort best first (a stable sort, so
ties keep the generation order), keep the top k. The reranker strategy scores the (query, source
document) pairs in shards of about `shard_size` pairs on the context's executor (in this process, or on
Ray workers), each shard's scores written atomically, so a killed run resumes at the first missing shard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from harness.data import beir
from harness.executors import ShardedWork, replica_resources
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
    # How the reranker strategy's work is cut and placed; the scores do not depend on it.
    shard_size: int = Field(4096, ge=1)  # pairs, rounded up to a multiple of batch_size × 16
    cpus_per_replica: float | None = Field(None, ge=0)  # under `--executor ray` (None: 1)
    gpus_per_replica: float | None = Field(None, ge=0)  # None: 1 when the device is CUDA, else 0
    not_in_key = frozenset({"shard_size", "cpus_per_replica", "gpus_per_replica"})

    @model_validator(mode="after")
    def _check(self):
        if self.strategy == "reranker" and not self.model:
            raise ValueError(
                "strategy `reranker` needs `model` (e.g. castorini/monot5-3b-msmarco-10k) and its revision")
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
        scores = _rerank(kept, docs, params, out, ctx)
    order = sorted(range(len(kept)), key=lambda i: -scores[i])  # stable: ties keep the generation order
    with open(out.path / "queries.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({**kept[i], "score": round(float(scores[i]), SCORE_DECIMALS)}, ensure_ascii=False)
                      + "\n" for i in order[: params.top_k])
    out.device = ctx.device
    out.summary.update({**counts, "scored": len(kept), "kept": min(len(kept), params.top_k),
                        "strategy": params.strategy})


def _rerank(rows: list[dict], docs: dict[str, str], params: Params, out, ctx) -> list[float]:
    """P(relevant) of each (query, its source document) from a reranker (monoT5: P(true))."""
    from harness.models.loading import resolve

    if not rows:
        return []
    assert params.model is not None  # the parameters' validator asks for it with strategy `reranker`
    resolve(params.model, ctx.store.root, params.model_revision)  # a wrong model id fails here, not on a worker
    work = FilterWork(params, [r["query"] for r in rows], [docs[r["doc_id"]] for r in rows], out.scratch,
                      ctx.store.root, ctx.device)
    with ctx.bar(len(rows), "filter") as bar:
        bar.update(sum(work.size(i) for i in range(work.n_shards) if work.done(i)))
        ctx.executor.map(work, range(work.n_shards), progress=bar.update,
                         resources=replica_resources(ctx.device, params.cpus_per_replica, params.gpus_per_replica))
    scores: list[float] = []
    for i in range(work.n_shards):
        scores += json.loads(work.file(i).read_text())
    return scores


class FilterWork(ShardedWork):
    """The reranker strategy's shards: consecutive pairs, scored in chunks of `batch_size × 16` exactly as an
    unsharded pass would (the same chunks, so the same padding and the same floats), whatever the shard size."""

    def __init__(self, params: Params, queries: list[str], texts: list[str], scratch: Path, store_root: Path,
                 device: str):
        self.params, self.queries, self.texts = params, queries, texts
        self.store_root, self.device = store_root, device
        self.chunk = params.batch_size * 16
        self.shard_pairs = -(-params.shard_size // self.chunk) * self.chunk
        self.n_shards = -(-len(queries) // self.shard_pairs)
        self.folder = scratch / f"shards-{self.shard_pairs}"  # a resumed run with another shard size starts anew
        self.folder.mkdir(parents=True, exist_ok=True)

    def file(self, i: int) -> Path:
        return self.folder / f"{i:05d}.json"

    def size(self, i: int) -> int:
        return min(self.shard_pairs, len(self.queries) - i * self.shard_pairs)

    def done(self, i: int) -> bool:
        return self.file(i).is_file()

    def setup(self) -> None:
        from harness.models.loading import resolve
        from harness.models.rerankers import load_reranker

        p = self.params
        assert p.model is not None  # the parameters' validator asks for it with strategy `reranker`
        self._reranker = load_reranker(resolve(p.model, self.store_root, p.model_revision), device=self.device,
                                       dtype=p.dtype, batch_size=p.batch_size, max_length=p.max_length)

    def run_shard(self, i: int, progress=None) -> dict:
        scores: list[float] = []
        first = i * self.shard_pairs
        for start in range(first, first + self.size(i), self.chunk):
            stop = min(start + self.chunk, first + self.size(i))
            scores += [float(s) for s in self._reranker.score(self.queries[start:stop], self.texts[start:stop])]
            if progress:
                progress(stop - start)
        tmp = self.file(i).with_suffix(".tmp")
        tmp.write_text(json.dumps(scores))  # repr of each float: read back bit for bit
        os.replace(tmp, self.file(i))
        return {"items": self.size(i)}


STAGE = Stage(name="filter", version=1, kind="queries", params=Params, run=run, resumable=True,
              inputs={"corpus": "corpus", "queries": "generate"}, published_kinds=("queries-filtered", "queries"),
              fetch_in_auto=True, publish_kind="queries-filtered",
              units=lambda params, documents, queries: min(100_000, documents),  # generate's default n_docs
              per_gpu_hour=400_000)  # (query, document) pairs/h, an estimate: monoT5-3B, one decoder step
