"""How the cost of the harness's CPU-side steps grows with the work: every curve linear or better, memory bounded.

Each point runs in a fresh process (time of the step itself; peak RSS from `wait4`, and the RSS reached
before the step, so the step's own memory is `peak - base`). The curves, and the log-log slope fitted to each:

- `generate-prep` (documents 10k→300k, 1M with HARNESS_BENCH_LARGE=1): the generate stage's document
  sampling (`harness.stages.generate.sample_documents`, n = documents/20) and prompt building
  (`PromptBuilder.build` with the `inpars` template and the tiny GPT-2 tokenizer, 256-token documents);
- `negatives-prep` (documents): the whole `negatives` stage with BM25 replaced by a stub that returns 100
  precomputed hits (corpus lookups, twin-text check, sampling, writing triples); queries = documents/20;
- `rerank-prep` (documents): the whole `rerank` stage with the model replaced by a stub scoring 0 (reading
  the run, collecting the documents of 300 queries x 1,000 hits from the corpus, shards, merge, run file);
- `evaluate` (queries 100→100k, 100 hits each, 2 relevant documents per query): `harness.evaluate.evaluate`
  with the default metrics;
- `store-bytes` (one artifact of 32 MB→1 GB in 8 files) and `store-files` (100→10k files of 1 KB):
  `Store.get_or_build` (minus the time to write the files) + `Store.check(full=True)`.
A slope above 1.15 is a super-linear step: a bug, reported with the step's location.

Run: python -m pytest benchmarks/bench_scaling.py --benchmark-enable -p no:cacheprovider -s
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _record import record, target  # noqa: E402
from bench_bm25 import CACHE, LARGE, run_process, synthetic_corpus  # noqa: E402

DOC_SIZES = [10_000, 30_000, 100_000, 300_000] + ([1_000_000] if LARGE else [])
QUERY_SIZES = [100, 1_000, 10_000, 100_000]
STORE_BYTES = [32 << 20, 128 << 20, 512 << 20, 1 << 30]
STORE_FILES = [100, 1_000, 10_000]
MAX_SLOPE = 1.15
SAMPLE_EVERY = 20

CURVES = {  # name: (axis, sizes, where the code lives)
    "generate-prep": ("documents", DOC_SIZES,
                      "harness/stages/generate.py sample_documents + harness/prompts PromptBuilder.build"),
    "negatives-prep": ("documents", DOC_SIZES, "harness/stages/negatives.py run (BM25 stubbed)"),
    "rerank-prep": ("documents", DOC_SIZES, "harness/stages/rerank.py run (model stubbed)"),
    "evaluate": ("queries", QUERY_SIZES, "harness/evaluate.py evaluate"),
    "store-bytes": ("bytes", STORE_BYTES, "harness/store.py Store.get_or_build + Store.check(full=True)"),
    "store-files": ("files", STORE_FILES, "harness/store.py Store.get_or_build + Store.check(full=True)"),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- inputs, prepared once per size (not timed) ---------------------------------------------------------
def prepared(n_docs: int) -> Path:
    """The synthetic corpus plus a generated-queries file (every 20th document) and a 300 x 1,000 first-stage run."""
    folder = synthetic_corpus(n_docs)
    if (folder / "scaling-done").is_file():
        return folder
    from harness.data import beir

    ids = []
    with open(folder / "synthetic-queries.jsonl", "w", encoding="utf-8") as fh:
        for i, doc in enumerate(beir.iter_corpus(folder / "corpus.jsonl")):
            ids.append(doc.id)
            if i % SAMPLE_EVERY == 0:
                fh.write(json.dumps({"query_id": f"syn-{doc.id}", "doc_id": doc.id, "query": doc.title.lower()}) + "\n")
    rng = random.Random(0)
    qids = sorted(beir.read_qrels(folder / "qrels" / "test.tsv"))
    with open(folder / "run.trec", "w", encoding="utf-8") as fh:
        for qid in qids:
            for rank, doc_id in enumerate(rng.sample(ids, min(1000, len(ids))), 1):
                fh.write(f"{qid} Q0 {doc_id} {rank} {1000 - rank + 0.5:.6f} bm25\n")
    (folder / "scaling-done").write_text("ok\n")
    return folder


def _artifact(key: str, path: Path, files: list[str], params: dict | None = None):
    from harness.store import Artifact

    return Artifact(key, path, {"files": {f: {} for f in files}, "params": params or {}, "summary": {}})


# --- the steps, run in a worker process ---------------------------------------------------------------------
def step_generate_prep(size: int, work: Path) -> float:
    from harness.data import beir
    from harness.models.loading import load_tokenizer
    from harness.models.tiny import materialize
    from harness.prompts import PromptBuilder, load_template
    from harness.stages.generate import sample_documents

    folder = prepared(size)
    tokenizer = load_tokenizer(materialize("tiny:gpt2", CACHE / "models"))
    template = load_template("inpars")
    started = _start()
    docs = sample_documents(folder / "corpus.jsonl", size // SAMPLE_EVERY, seed=1)
    builder = PromptBuilder(template, tokenizer, max_doc_tokens=256)
    total = 0
    for doc in docs:
        text, _ = builder.build(doc.id, beir.doc_text(doc.title, doc.text))
        total += len(text)
    return time.perf_counter() - started


def step_negatives_prep(size: int, work: Path) -> float:
    from harness.stages import Context, negatives
    from harness.store import Building

    folder = prepared(size)
    pool = [f"doc{i}" for i in range(0, size, max(1, size // 5000))]  # hits come from a fixed pool of ids

    class StubBM25:
        @staticmethod
        def search(index, queries, k, **_):
            return {q: [(pool[(int(q) * 7 + j) % len(pool)], float(k - j)) for j in range(k)] for q in queries}

    negatives.backend = lambda name: StubBM25
    inputs = {"corpus": _artifact("corpus-x", folder, ["corpus.jsonl"]),
              "queries": _artifact("queries-x", folder / "q", ["queries.jsonl"]),
              "index": _artifact("index-x", work, [])}
    (folder / "q").mkdir(exist_ok=True)
    if not (folder / "q" / "queries.jsonl").exists():
        (folder / "q" / "queries.jsonl").symlink_to(folder / "synthetic-queries.jsonl")
    out = Building("negatives-x", work / "out")
    out.path.mkdir(parents=True)
    started = _start()
    negatives.run(inputs, negatives.Params(depth=100), out, Context(None, "synthetic", progress=False))
    return time.perf_counter() - started


def step_rerank_prep(size: int, work: Path) -> float:
    import harness.models.rerankers as rerankers
    from harness.stages import Context, rerank
    from harness.store import Building

    folder = prepared(size)

    class StubReranker:
        kind = "monot5"

        def score(self, queries, docs):
            return [0.0] * len(queries)

    rerankers.load_reranker = lambda *a, **k: StubReranker()
    rerank._model_path = lambda *a: Path("stub")
    inputs = {"corpus": _artifact("corpus-x", folder, ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"]),
              "run": _artifact("run-x", folder, ["run.trec"], {"split": "test"})}
    out = Building("rerank-x", work / "out")
    out.path.mkdir(parents=True)
    started = _start()
    rerank.run(inputs, rerank.Params(model="stub", depth=1000), out, Context(None, "synthetic", progress=False))
    return time.perf_counter() - started


def step_evaluate(size: int, work: Path) -> float:
    from harness.evaluate import evaluate

    rng = random.Random(size)
    run, qrels = {}, {}
    for q in range(size):
        qid = f"q{q}"
        docs = [f"d{rng.randrange(1_000_000)}" for _ in range(100)]
        run[qid] = [(d, 100.0 - j) for j, d in enumerate(docs)]
        qrels[qid] = {docs[rng.randrange(100)]: 1, f"d{rng.randrange(1_000_000)}": 2}
    started = _start()
    evaluate(run, qrels)
    return time.perf_counter() - started


def _store_step(n_files: int, file_bytes: int, work: Path) -> float:
    from harness.store import Store

    store = Store(work / "store")
    block = os.urandom(1 << 20)
    write_s = 0.0

    def build(out):
        nonlocal write_s
        started = time.perf_counter()
        for i in range(n_files):
            with open(out.path / f"part{i:05d}.bin", "wb") as fh:
                left = file_bytes
                while left > 0:
                    fh.write(block[: min(left, len(block))])
                    left -= len(block)
        write_s = time.perf_counter() - started

    started = time.perf_counter()
    store.get_or_build("store-x", build, kind="test", stage="test", params={}, inputs={})
    built = time.perf_counter() - started - write_s
    started = time.perf_counter()
    assert store.check("store-x", full=True) == []
    return built + time.perf_counter() - started


def step_store_bytes(size: int, work: Path) -> float:
    return _store_step(8, size // 8, work)


def step_store_files(size: int, work: Path) -> float:
    return _store_step(size, 1024, work)


_BASE = None


def _start() -> float:
    """Note the RSS reached so far (the step's own memory is measured above it); the start time."""
    global _BASE
    _BASE = _rss_mb()
    return time.perf_counter()


def worker(curve: str, size: int, work: Path) -> dict:
    global _BASE
    work.mkdir(parents=True, exist_ok=True)
    import harness.data.beir  # noqa: F401  (imports before the baseline)
    import harness.store  # noqa: F401

    _BASE = _rss_mb()
    seconds = globals()[f"step_{curve.replace('-', '_')}"](size, work)
    return {"seconds": seconds, "base_mb": _BASE}


def slope(sizes, values) -> float:
    """Least-squares slope of log(value) against log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(v, 1e-9)) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


@pytest.mark.parametrize("curve", list(CURVES))
def test_scaling(benchmark, curve, tmp_path):
    import shutil

    axis, sizes, where = CURVES[curve]
    if axis == "documents":
        for n in sizes:
            prepared(n)  # outside the timed part
        if curve == "generate-prep":
            from harness.models.tiny import materialize

            materialize("tiny:gpt2", CACHE / "models")
    points = []

    def run_all():
        for size in sizes:
            work = tmp_path / f"{size}"
            _, peak, out = run_process([sys.executable, __file__, "worker", curve, str(size), str(work)])
            shutil.rmtree(work, ignore_errors=True)
            values = json.loads(out.strip().splitlines()[-1])
            points.append({"size": size, "seconds": values["seconds"], "peak_mb": peak,
                           "step_mb": max(0.0, peak - values["base_mb"])})

    benchmark.pedantic(run_all, rounds=1, iterations=1)
    time_slope = slope([p["size"] for p in points], [p["seconds"] for p in points])
    mem_slope = slope([p["size"] for p in points], [max(p["step_mb"], 1.0) for p in points])
    print(f"\n{curve} ({where}), by {axis}: time slope {time_slope:.2f}, step-memory slope {mem_slope:.2f}")
    for p in points:
        print(f"  {p['size']:>12,} {axis:<9} {p['seconds']:9.3f} s  peak {p['peak_mb']:8.0f} MB  "
              f"step {p['step_mb']:8.0f} MB")
    record("scaling", curves={curve: {"axis": axis, "where": where, "points": points, "time_slope": time_slope,
                                      "memory_slope": mem_slope}},
           targets={f"scaling-{curve}": target(
               f"{curve}: cost linear or better in {axis} (log-log slope <= {MAX_SLOPE})",
               f"slope {time_slope:.2f} over {sizes[0]:,}..{sizes[-1]:,} {axis}; step memory "
               f"{points[0]['step_mb']:.0f}..{points[-1]['step_mb']:.0f} MB (slope {mem_slope:.2f})",
               time_slope <= MAX_SLOPE)})
    benchmark.extra_info.update({"curve": curve, "axis": axis, "time_slope": time_slope, "memory_slope": mem_slope,
                                 "points": points})
    assert time_slope <= MAX_SLOPE, f"{curve}: super-linear (slope {time_slope:.2f}) in {where}"


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
    import logging

    logging.disable(logging.WARNING)
    result = worker(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    print(json.dumps(result))
