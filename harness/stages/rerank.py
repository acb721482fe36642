"""Stage `rerank`: rescore the first-stage run's top `depth` per query with a reranker → a TREC run.

The model is the `train` stage's artifact when the recipe trains one, else `model` (a Hub id at
`model_revision`, e.g. the zero-shot `castorini/monot5-3b-msmarco-10k` baseline, or a local folder).
Queries are scored in shards of `shard_queries`, each written to the scratch folder as it finishes, so a
killed run resumes at the first unfinished shard; the shards run on the context's executor (in this
process, or on Ray workers, one model replica each). The run lists the reranked documents (by model score,
ties by first-stage rank) above the documents beyond `depth` (first-stage order). Its scores are
strictly decreasing rank scores (n, n-1, ..., 1), so that trec_eval, which breaks score ties by document
id, sees exactly this order even where probabilities near 1 would round to the same printed value; the
model's own scores are kept in `scores.jsonl`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from harness.data import beir
from harness.data.trec import read_run, write_run
from harness.errors import HarnessError
from harness.executors import ShardedWork, replica_resources
from harness.stages import Stage, StageParams


class Params(StageParams):
    model: str | None = None  # used when there is no "model" input artifact
    model_revision: str | None = None
    kind: Literal["monot5", "flan-t5", "cross-encoder"] | None = None  # None: detected from the checkpoint
    depth: int = 1000
    batch_size: int = 32
    max_length: int = 512
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    limit_queries: int | None = None
    shard_queries: int = 50
    cpus_per_replica: float | None = Field(None, ge=0)  # under `--executor ray` (None: 1)
    gpus_per_replica: float | None = Field(None, ge=0)  # None: 1 when the device is CUDA, else 0
    not_in_key = frozenset({"batch_size", "shard_queries", "cpus_per_replica", "gpus_per_replica"})


def merge(hits: list[tuple[str, float]], reranked: dict[str, float], depth: int) -> list[tuple[str, float]]:
    """The top `depth` of `hits` ordered by `reranked` score (ties: first-stage order), then the rest in
    first-stage order, with strictly decreasing rank scores."""
    head = sorted(range(min(depth, len(hits))), key=lambda i: -reranked[hits[i][0]])  # stable: ties keep rank
    order = [hits[i][0] for i in head] + [d for d, _ in hits[depth:]]
    return [(doc_id, float(len(order) - rank)) for rank, doc_id in enumerate(order)]


def _model_path(inputs, params, ctx):
    from harness.models.loading import resolve

    if "model" in inputs:
        return inputs["model"].path / "model"
    if not params.model:
        raise HarnessError(f"Stage rerank for {ctx.dataset}: no model: the recipe trains none, so set "
                           "`stages.rerank.model` (and `model_revision`) to a reranker checkpoint.")
    return resolve(params.model, ctx.store.root, params.model_revision)


def _queries(inputs, params, ctx, run) -> dict[str, str]:
    """The run's queries, limited to the same deterministic subset as the `retrieve` stage's."""
    from harness.stages.retrieve import eval_queries

    split = (inputs["run"].manifest.get("params") or {}).get("split")
    try:
        queries = eval_queries(inputs["corpus"], ctx.dataset, split, params.limit_queries)
    except HarnessError:  # no judged split known: every query of the run that has a text
        texts = beir.read_queries(inputs["corpus"].file("queries.jsonl"))
        queries = {q: texts[q] for q in beir.limit_queries([q for q in run if q in texts], params.limit_queries)}
    return {q: text for q, text in queries.items() if q in run}


def run(inputs: dict, params: Params, out, ctx) -> None:
    hits = read_run(inputs["run"].file("run.trec"))
    queries = _queries(inputs, params, ctx, hits)
    qids = sorted(queries)
    needed = {d for q in qids for d, _ in hits[q][: params.depth]}
    docs = {doc.id: beir.doc_text(doc.title, doc.text)
            for doc in beir.iter_corpus(inputs["corpus"].file("corpus.jsonl")) if doc.id in needed}
    missing = needed - docs.keys()
    if missing:
        raise HarnessError(f"Stage rerank for {ctx.dataset}: the run {inputs['run'].key} names {len(missing)} "
                           f"documents not in the corpus (e.g. {sorted(missing)[:3]}): is it the same dataset?")

    out.device = ctx.device
    model_path = _model_path(inputs, params, ctx)
    work = RerankWork(params, {q: queries[q] for q in qids}, {q: [d for d, _ in hits[q][: params.depth]] for q in qids},
                      docs, out.scratch / f"shards-{params.shard_queries}q", model_path, ctx.store.root, ctx.device)
    with ctx.bar(len(qids), "rerank") as bar:
        bar.update(sum(len(work.chunk(i)) for i in range(work.n_shards) if work.done(i)))
        done = ctx.executor.map(work, range(work.n_shards), progress=bar.update,
                                resources=replica_resources(ctx.device, params.cpus_per_replica,
                                                            params.gpus_per_replica))

    reranked, result = {}, {}
    with open(out.path / "scores.jsonl", "w", encoding="utf-8") as fh:
        for number in range(work.n_shards):
            for row in beir.read_jsonl(work.file(number)):
                fh.write(json.dumps(row) + "\n")
                reranked[row["query_id"]] = dict(zip(row["doc_ids"], row["scores"], strict=True))
    for q in qids:
        result[q] = merge(hits[q], reranked[q], params.depth)
    write_run(result, out.path / "run.trec", tag="rerank")
    kinds = {r["kind"] for r in done.values()}
    if kinds:
        kind = kinds.pop()
    else:
        from harness.models.rerankers import detect_kind

        kind = params.kind or detect_kind(model_path)
    out.summary.update({
        "queries": len(qids), "pairs": sum(len(r) for r in reranked.values()), "depth": params.depth,
        "kind": kind, "model": "input" if "model" in inputs else params.model,
    })


class RerankWork(ShardedWork):
    """The shards of one rerank build: `shard_queries` queries each, their top `depth` pairs scored at once."""

    def __init__(self, params: Params, queries: dict[str, str], heads: dict[str, list[str]], docs: dict[str, str],
                 folder: Path, model_path: Path, store_root: Path, device: str):
        self.params, self.queries, self.heads, self.docs = params, queries, heads, docs
        self.qids = sorted(queries)
        self.n_shards = -(-len(self.qids) // params.shard_queries)
        self.folder, self.model_path, self.store_root, self.device = folder, Path(model_path), store_root, device
        folder.mkdir(parents=True, exist_ok=True)

    def chunk(self, i: int) -> list[str]:
        return self.qids[i * self.params.shard_queries : (i + 1) * self.params.shard_queries]

    def file(self, i: int) -> Path:
        return self.folder / f"{i:06d}.jsonl"

    def done(self, i: int) -> bool:
        return self.file(i).is_file()  # finished by an earlier, killed run

    def setup(self) -> None:
        from harness.models.loading import resolve
        from harness.models.rerankers import load_reranker

        p = self.params
        path = self.model_path
        if not path.is_dir() and p.model:  # a Hub model downloaded on the driver's node only: fetch it here too
            path = resolve(p.model, self.store_root, p.model_revision)
        self._reranker = load_reranker(path, p.kind, device=self.device, dtype=p.dtype,
                                       batch_size=p.batch_size, max_length=p.max_length)

    def run_shard(self, i: int, progress=None) -> dict:
        chunk = self.chunk(i)
        pairs = [(q, d) for q in chunk for d in self.heads[q]]
        scores = self._reranker.score([self.queries[q] for q, _ in pairs], [self.docs[d] for _, d in pairs])
        rows, at = [], 0
        for q in chunk:
            n = len(self.heads[q])
            rows.append({"query_id": q, "doc_ids": self.heads[q], "scores": scores[at : at + n]})
            at += n
        tmp = self.file(i).with_suffix(".tmp")
        beir.write_jsonl(rows, tmp)
        os.replace(tmp, self.file(i))  # a shard is either complete or absent
        if progress:
            progress(len(chunk))
        return {"items": len(chunk), "kind": self._reranker.kind}


STAGE = Stage(name="rerank", version=1, kind="run", params=Params, run=run, resumable=True,
              inputs={"corpus": "corpus", "run": "retrieve", "model": "train"}, optional=("model",),
              missing="stage `rerank` needs a `retrieve` stage (the run to rerank).", publish_kind="run", judged=True,
              units=lambda params, documents, queries: queries * params.get("depth", 1000),
              per_gpu_hour=400_000)  # pairs/h, an estimate: monoT5-3B
