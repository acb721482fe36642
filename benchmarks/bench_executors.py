"""Throughput with 1 and 2 Ray workers against the local executor, on smoke-size generate and rerank work.

The smoke recipe's models and sizes (tiny GPT-2 writing 16 tokens for 120 sample documents; tiny monoT5
scoring the 60 sample queries x 20 documents), cut into 6 shards each so that two workers have work to
share. Every process computes single-threaded (OMP_NUM_THREADS=1, set before torch loads), so that one
worker is one core. Printed and recorded in `benchmarks/results/executors.json`:
- local: the model load (`setup`) and each shard's time, in this process: the serial and parallel parts;
- ray, 1 and 2 workers: the wall time of `executor.map` on a running two-CPU cluster (worker start, model
  load per worker, shards, result collection), and the speed-up over 1 worker;
- the cluster's own start (`ray.init`), paid once per run.

Run: python benchmarks/bench_executors.py   (needs `pip install 'harness[ray]'`; about two minutes)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
N_SHARDS = 6


def generate_work(store, corpus, folder: Path):
    from harness.prompts import load_template
    from harness.stages import generate

    params = generate.Params(model="tiny:gpt2", prompt="inpars-gbq", n_docs=120, seed=1, max_doc_tokens=64,
                             max_prompt_tokens=1024, max_new_tokens=16, do_sample=True, batch_size=16,
                             shard_size=120 // N_SHARDS)
    docs = generate.sample_documents(corpus.file("corpus.jsonl"), params.n_docs, params.seed)
    assert not load_template(params.prompt).dynamic  # a static prompt: no `examples` artifact to build
    examples: list = []
    folder.mkdir(parents=True)
    return generate.GenerateWork(params, docs, examples, folder, store.root, "cpu")


def rerank_work(store, corpus, folder: Path):
    from harness.data import beir
    from harness.models.tiny import materialize
    from harness.stages import rerank

    queries = beir.read_queries(corpus.file("queries.jsonl"))
    qids = sorted(q for q in beir.read_qrels(corpus.file("qrels/test.tsv")))
    docs = {d.id: beir.doc_text(d.title, d.text) for d in beir.iter_corpus(corpus.file("corpus.jsonl"))}
    ids = sorted(docs)
    heads = {q: ids[n % 300 : n % 300 + 20] for n, q in enumerate(qids)}  # 20 documents each, as smoke's depth
    params = rerank.Params(kind="monot5", depth=20, max_length=256, shard_queries=-(-len(qids) // N_SHARDS))
    model = materialize("tiny:t5", store.root / "models")
    return rerank.RerankWork(params, {q: queries[q] for q in qids}, heads, docs, folder, model, store.root, "cpu")


def local_timings(make) -> dict:
    work = make()
    start = time.perf_counter()
    work.setup()
    setup = time.perf_counter() - start
    shards = []
    for i in range(N_SHARDS):
        start = time.perf_counter()
        work.run_shard(i)
        shards.append(time.perf_counter() - start)
    return {"setup_s": round(setup, 2), "shard_s": [round(s, 2) for s in shards],
            "total_s": round(setup + sum(shards), 2)}


def timed(work):
    """`work` reporting when each worker started its setup, how long setup took, and each shard's span."""
    from harness.executors import ShardedWork

    class Timed(ShardedWork):
        def __init__(self, inner):
            self.inner = inner

        def setup(self):
            start = time.time()
            self.inner.setup()
            self._setup = (start, time.time())

        def run_shard(self, i, progress=None):
            start = time.time()
            result = self.inner.run_shard(i)
            return {**result, "span": (start, time.time()), "setup": self._setup, "pid": os.getpid()}

    return Timed(work)


def ray_wall(make, workers: int) -> dict:
    from harness.executors import RayExecutor

    start = time.time()
    results = RayExecutor(num_workers=workers).map(timed(make()), range(N_SHARDS))
    wall = time.time() - start
    setups = {r["pid"]: r["setup"] for r in results.values()}
    return {"wall_s": round(wall, 2),
            "worker_start_s": round(max(s[0] for s in setups.values()) - start, 2),  # process + imports
            "setup_s": round(max(e - s for s, e in setups.values()), 2),
            "shards_s": round(max(r["span"][1] for r in results.values()) - min(s[1] for s in setups.values()), 2)}


def main() -> dict:
    import ray

    from harness.stages import Context
    from harness.stages import corpus as corpus_stage
    from harness.store import Store, artifact_key

    root = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    try:
        store = Store(root / "store")
        params = corpus_stage.Params(dataset="sample", source="builtin", fingerprint="bench")
        key = artifact_key("corpus", corpus_stage.STAGE.version, params.key_params(), {})
        ctx = Context(store, "sample", progress=False)
        corpus, _ = store.get_or_build(key, lambda out: corpus_stage.run({}, params, out, ctx),
                                       kind="dataset", stage="corpus", params=params.key_params(), inputs={})
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        result = {"ray_init_s": round(time.perf_counter() - start, 2), "stages": {}}
        counter = iter(range(100))
        for name, builder in (("generate", generate_work), ("rerank", rerank_work)):
            def make(builder=builder, name=name):
                return builder(store, corpus, root / f"{name}-{next(counter)}")
            local = local_timings(make)
            one, two = ray_wall(make, 1), ray_wall(make, 2)
            result["stages"][name] = {**local, "ray_1_worker": one, "ray_2_workers": two,
                                      "speedup_2_vs_1": round(one["wall_s"] / two["wall_s"], 2),
                                      "shard_speedup_2_vs_1": round(one["shards_s"] / two["shards_s"], 2)}
            print(f"{name}: {json.dumps(result['stages'][name])}", flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from _record import record

    table = {}
    for name, s in result["stages"].items():
        for label, r in (("1 worker", s["ray_1_worker"]), ("2 workers", s["ray_2_workers"])):
            table[f"{name}, ray {label}"] = {"wall (s)": r["wall_s"], "worker start (s)": r["worker_start_s"],
                                             "model load (s)": r["setup_s"], "shards (s)": r["shards_s"]}
        table[f"{name}, local"] = {"wall (s)": s["total_s"], "worker start (s)": 0, "model load (s)": s["setup_s"],
                                   "shards (s)": round(sum(s["shard_s"]), 2)}
    record("executors", **result, table=table)
    print(f"ray.init: {result['ray_init_s']} s")
    return result


if __name__ == "__main__":
    main()
