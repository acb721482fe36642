"""Stage `generate`: an LLM writes one synthetic query per sampled document, with its token log-probabilities.

Documents are sampled as the InPars toolkit samples them (`numpy.random.RandomState(seed)` permutation,
the first `n_docs`: pandas' `DataFrame.sample` after `set_seed`), each is cut to `max_doc_tokens` LLM
tokens and put into the prompt; a prompt that cannot fit is skipped and counted, not a crash. Work is
done in shards of `shard_size` documents, each written atomically into the build folder, so a killed run
resumes at the first missing shard; `queries.jsonl` is assembled only once every shard is there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from harness.data import beir
from harness.errors import HarnessError
from harness.stages import Stage, StageParams

LOG_PROB_DECIMALS = 6  # rounding makes the file's bytes stable across reruns of the same computation


class Params(StageParams):
    model: str = "tiny:gpt2"
    model_revision: str | None = None
    backend: Literal["transformers", "vllm"] = "transformers"
    prompt: str = "inpars"
    n_docs: int = Field(100_000, ge=1)
    seed: int = 1
    max_doc_tokens: int = Field(256, ge=1)
    max_prompt_tokens: int = Field(2048, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    n_examples: int = Field(3, ge=0, le=8)  # Promptagator: up to 8; the toolkit's default is 3
    example_tokens: int = Field(256, ge=1)  # per few-shot document (the toolkit: max_doc_length)
    example_query_tokens: int = Field(200, ge=1)  # per few-shot query (the toolkit: max_query_length)
    examples_source: Literal["train-split", "published"] = "train-split"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(8, ge=1)
    prefix_cache: bool = True
    shard_size: int = Field(1000, ge=1)
    store_prompts: bool = True
    # GPU placement: spreads layers over devices without changing the arithmetic, like `--device` itself.
    device_map: str | None = None
    load_in_8bit: bool = False
    # batch_size, prefix_cache and shard_size stay in the key: batching changes float rounding, so
    # log-probs (and, in a rare near-tie, a greedy token) may differ in their last digits.
    not_in_key = frozenset({"device_map"})

    @model_validator(mode="after")
    def _check(self):
        if self.backend == "vllm" and self.load_in_8bit:
            raise ValueError("load_in_8bit is a transformers option")
        return self


def sample_documents(corpus_path: Path, n: int, seed: int) -> list[beir.Doc]:
    """`n` documents (all when the corpus is smaller) in the toolkit's sampled order, two passes, ids only kept."""
    import numpy as np

    total = sum(1 for _ in beir.iter_corpus(corpus_path))
    n = min(n, total)
    order = np.random.RandomState(seed).permutation(total)[:n]  # pandas' sample(n) after np.random.seed(seed)
    rank = {int(i): r for r, i in enumerate(order)}
    picked: list[beir.Doc | None] = [None] * n
    for index, doc in enumerate(beir.iter_corpus(corpus_path)):
        if index in rank:
            picked[rank[index]] = doc
    return picked  # type: ignore[return-value]


def load_backend(params: Params, ctx):
    from harness.models.llm import get_backend
    from harness.models.loading import resolve

    path = resolve(params.model, ctx.store.root, params.model_revision)
    return get_backend(params.backend).load(
        path, device=ctx.device, dtype=params.dtype, batch_size=params.batch_size, prefix_cache=params.prefix_cache,
        device_map=params.device_map, load_in_8bit=params.load_in_8bit,
    )


def few_shot_examples(params: Params, corpus, dynamic: bool):
    from harness.stages.prompts import train_split_examples

    if not dynamic:
        return []
    if params.n_examples == 0:
        raise HarnessError(f"Prompt {params.prompt!r} shows few-shot examples: set `n_examples` to 1..8.")
    if params.examples_source == "published":
        raise HarnessError(
            "`examples_source: published` (inpars/fewshot-examples) is not available yet: use "
            "`examples_source: train-split`."
        )
    return train_split_examples(corpus, params.n_examples, params.seed)


def run(inputs: dict, params: Params, out, ctx) -> None:
    from harness.models.llm import Decoding
    from harness.stages.prompts import PromptBuilder, load_template

    corpus = inputs["corpus"]
    template = load_template(params.prompt)
    docs = sample_documents(corpus.file("corpus.jsonl"), params.n_docs, params.seed)
    examples = few_shot_examples(params, corpus, template.dynamic)
    shards = out.scratch / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    n_shards = (len(docs) + params.shard_size - 1) // params.shard_size
    todo = [s for s in range(n_shards) if not (shards / f"{s:05d}.jsonl").is_file()]
    out.device = ctx.device
    started, new_tokens = time.time(), 0
    if todo:
        llm = load_backend(params, ctx)
        builder = PromptBuilder(template, llm.tokenizer, max_doc_tokens=params.max_doc_tokens, examples=examples,
                                example_tokens=params.example_tokens, example_query_tokens=params.example_query_tokens,
                                seed=params.seed)
        limit = min(params.max_prompt_tokens, llm.context_length or params.max_prompt_tokens)
        prefix = llm.encode(builder.prefix) if builder.prefix and llm.supports_prefix_cache else []
        decoding = Decoding(params.max_new_tokens, params.do_sample, params.temperature, params.top_p)
        with ctx.bar(len(docs), "generate") as bar:
            bar.update(sum(min(params.shard_size, len(docs) - s * params.shard_size) for s in range(n_shards)
                           if s not in todo))
            for s in todo:
                part = docs[s * params.shard_size : (s + 1) * params.shard_size]
                new_tokens += _shard(part, builder, llm, decoding, prefix, limit, params, shards / f"{s:05d}", bar)
    elapsed = time.time() - started
    totals = {"sampled": len(docs), "generated": 0, "skipped": 0}
    with open(out.path / "queries.jsonl", "w", encoding="utf-8") as fh:
        for s in range(n_shards):
            meta = json.loads((shards / f"{s:05d}.json").read_text())
            totals["generated"] += meta["generated"]
            totals["skipped"] += meta["skipped"]
            with open(shards / f"{s:05d}.jsonl", encoding="utf-8") as part_fh:
                fh.writelines(part_fh)
    used = sorted({e.query_id: e for e in examples}.values(), key=lambda e: e.query_id) if examples else []
    (out.path / "examples.json").write_text(json.dumps(
        {"query_ids": [e.query_id for e in used], "doc_ids": sorted({e.doc_id for e in used})}, indent=1) + "\n")
    out.summary.update({
        "documents_sampled": totals["sampled"], "generated": totals["generated"],
        "skipped_prompt_too_long": totals["skipped"], "shards": n_shards, "shards_resumed": n_shards - len(todo),
        "new_tokens": new_tokens, "tokens_per_s": round(new_tokens / elapsed, 2) if new_tokens and elapsed else None,
        "few_shot_examples": len(used),
    })


def _shard(docs, builder, llm, decoding, prefix, limit, params: Params, stem: Path, bar) -> int:
    """Generate one shard and write it atomically (rows, then the meta file; the rows' rename commits it)."""
    rows, prompts, skipped = [], [], 0
    for doc in docs:
        text, example_ids = builder.build(doc.id, beir.doc_text(doc.title, doc.text))
        ids = llm.encode(text)
        if len(ids) + params.max_new_tokens > limit:
            skipped += 1  # the toolkit raises here and loses the whole run
            continue
        rows.append((doc, text, example_ids))
        prompts.append(ids)
    seeds = [_row_seed(params.seed, doc.id) for doc, _, _ in rows]
    skipped_progress = len(docs) - len(rows)
    outputs = llm.generate(prompts, decoding, prefix=prefix, seeds=seeds, progress=bar.update)
    bar.update(skipped_progress)
    lines, tokens = [], 0
    for (doc, text, example_ids), gen in zip(rows, outputs):
        tokens += len(gen.token_ids)
        row = {
            "query_id": f"syn-{doc.id}",
            "doc_id": doc.id,
            "query": gen.query,
            "log_probs": [round(x, LOG_PROB_DECIMALS) for x in gen.log_probs],
            "n_tokens": len(gen.log_probs),
            "example_ids": example_ids,
        }
        if params.store_prompts:
            row["prompt"] = text
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    meta = {"generated": len(rows), "skipped": skipped}
    _atomic_write(stem.with_suffix(".json"), json.dumps(meta))
    _atomic_write(stem.with_suffix(".jsonl"), "".join(lines))
    return tokens


def _row_seed(seed: int, doc_id: str) -> int:
    """A per-document sampling seed, independent of batching and shards (used only when `do_sample`)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()[:8], "big") >> 1


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


STAGE = Stage(name="generate", version=1, kind="queries", params=Params, run=run, resumable=True)
