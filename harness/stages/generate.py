"""Stage `generate`: an LLM writes one synthetic query per sampled document, with its token log-probabilities.

Documents are sampled as the InPars toolkit samples them (`numpy.random.RandomState(seed)` permutation,
the first `n_docs`: pandas' `DataFrame.sample` after `set_seed`), each is cut to `max_doc_tokens` LLM
tokens and put into the prompt. Promptagator-style prompts cut their examples' documents so that the
examples and the longest target fit `max_prompt_tokens` less `max_new_tokens` (`PromptBuilder`); a prompt
that still cannot fit is skipped and counted (`skipped_prompt_too_long`), and a shard in which more than
`max_skipped_share` of the documents would be skipped stops the run with one sentence. Work is
done in shards of `shard_size` documents, each written atomically into the build folder, so a killed run
resumes at the first missing shard; `queries.jsonl` is assembled only once every shard is there. The
shards run on the context's executor: in this process, or on Ray workers, one model replica each.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.data import beir
from harness.errors import HarnessError
from harness.executors import ShardedWork, replica_resources
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
    # Per few-shot document (the toolkit: max_doc_length); fewer when the examples would not fit the prompt.
    example_tokens: int = Field(256, ge=1)
    example_query_tokens: int = Field(200, ge=1)  # per few-shot query (the toolkit: max_query_length)
    # Where Promptagator-style prompts take their real (query, document) examples from: the dataset's train
    # split, or a registry entry of published examples (`registry:inpars/fewshot/{dataset}`, pinned).
    examples_source: str = "train-split"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(8, ge=1)
    prefix_cache: bool = True
    shard_size: int = Field(1000, ge=1)
    store_prompts: bool = True
    # The share of a shard's documents whose prompt may be skipped as too long before the run stops.
    max_skipped_share: float = Field(0.01, ge=0, le=1)
    # Filled by the runner from `--device` when `do_sample` (CPU and CUDA generators draw different random
    # streams, so sampled queries depend on the device type); not a recipe setting.
    sampling_device: str | None = None
    # GPU placement: spreads layers over devices without changing the arithmetic, like `--device` itself.
    device_map: str | None = None
    load_in_8bit: bool = False
    # vLLM's own multi-GPU (and multi-node) serving of one replica larger than a GPU: in the key when
    # above 1 (split matrix products round differently); its backend ("ray" across nodes) is not.
    tensor_parallel_size: int = Field(1, ge=1)
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    # A replica's resources under `--executor ray` (None: 1 CPU, plus 1 GPU when the device is CUDA).
    cpus_per_replica: float | None = Field(None, ge=0)
    gpus_per_replica: float | None = Field(None, ge=0)
    # batch_size, prefix_cache and shard_size stay in the key: batching changes float rounding, so
    # log-probs (and, in a rare near-tie, a greedy token) may differ in their last digits.
    not_in_key = frozenset({"device_map", "distributed_executor_backend", "cpus_per_replica", "gpus_per_replica",
                            "max_skipped_share"})

    @model_validator(mode="after")
    def _check(self):
        from harness.refs import REGISTRY_PREFIX

        if self.examples_source != "train-split" and not self.examples_source.startswith(REGISTRY_PREFIX):
            raise ValueError(f"examples_source must be `train-split` or `{REGISTRY_PREFIX}<id>` (published examples, "
                             f"e.g. `{REGISTRY_PREFIX}inpars/fewshot/{{dataset}}`), not {self.examples_source!r}")
        if self.backend == "vllm" and self.load_in_8bit:
            raise ValueError("load_in_8bit is a transformers option")
        if self.backend != "vllm" and (self.tensor_parallel_size > 1 or self.distributed_executor_backend):
            raise ValueError("tensor_parallel_size and distributed_executor_backend are vLLM options "
                             "(backend transformers spreads a large model with device_map: auto)")
        return self

    def on_device(self, device: str) -> Params:
        return self.model_copy(update={"sampling_device": device.split(":")[0] if self.do_sample else None})

    def key_params(self) -> dict:
        values = super().key_params()
        if self.tensor_parallel_size == 1:  # the default: keys from before the option existed stay valid
            values.pop("tensor_parallel_size")
        return values


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


def load_backend(params: Params, store_root: Path, device: str):
    from harness.models.llm import get_backend
    from harness.models.loading import resolve

    path = resolve(params.model, store_root, params.model_revision)
    # vLLM only: a model larger than one GPU is split over `tensor_parallel_size` GPUs by vLLM itself.
    vllm: dict[str, Any] = {}
    if params.tensor_parallel_size > 1:
        vllm["tensor_parallel_size"] = params.tensor_parallel_size
    if params.distributed_executor_backend:
        vllm["distributed_executor_backend"] = params.distributed_executor_backend
    backend: Any = get_backend(params.backend)  # each backend's `load` takes its own options
    return backend.load(
        path, device=device, dtype=params.dtype, batch_size=params.batch_size, prefix_cache=params.prefix_cache,
        device_map=params.device_map, load_in_8bit=params.load_in_8bit, **vllm,
    )


def run(inputs: dict, params: Params, out, ctx) -> None:
    from harness.models.loading import resolve
    from harness.prompts import load_template

    corpus = inputs["corpus"]
    template = load_template(params.prompt)
    docs = sample_documents(corpus.file("corpus.jsonl"), params.n_docs, params.seed)
    examples = _examples(inputs, params, template.dynamic)
    shards = out.scratch / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    n_shards = (len(docs) + params.shard_size - 1) // params.shard_size
    work = GenerateWork(params, docs, examples, shards, ctx.store.root, ctx.device)
    todo = [s for s in range(n_shards) if not work.done(s)]
    out.device = ctx.device
    started = time.time()
    if todo:
        resolve(params.model, ctx.store.root, params.model_revision)  # a wrong model id fails here, not on a worker
        with ctx.bar(len(docs), "generate") as bar:
            bar.update(sum(len(work.part(s)) for s in range(n_shards) if s not in todo))
            done = ctx.executor.map(work, todo, progress=bar.update, resources=replica_resources(
                ctx.device, params.cpus_per_replica, params.gpus_per_replica))
    else:
        done = {}
    new_tokens = sum(r["new_tokens"] for r in done.values())
    elapsed = time.time() - started
    totals = {"sampled": len(docs), "generated": 0, "skipped": 0}
    example_doc_tokens = set()
    with open(out.path / "queries.jsonl", "w", encoding="utf-8") as fh:
        for s in range(n_shards):
            meta = json.loads((shards / f"{s:05d}.json").read_text())
            totals["generated"] += meta["generated"]
            totals["skipped"] += meta["skipped"]
            example_doc_tokens.add(meta["example_doc_tokens"])
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
        # What each few-shot example's document was cut to (example_tokens, or less to fit the prompt).
        "example_doc_tokens": max(example_doc_tokens) if used and example_doc_tokens else None,
    })


def _examples(inputs: dict, params: Params, dynamic: bool) -> list:
    """The few-shot examples a dynamic prompt shows: drawn by the `examples` stage from generate's own settings."""
    from harness.stages import examples

    if not dynamic:
        return []
    if "examples" not in inputs:
        raise HarnessError(f"Prompt {params.prompt!r} shows the dataset's own examples: generate needs the `examples` "
                           "artifact of the same prompt, n_examples, examples_source and seed as its input.")
    return examples.read(inputs["examples"])


class GenerateWork(ShardedWork):
    """The shards of one generate build: `shard_size` sampled documents each, written to `shards/<i>.json[l]`."""

    def __init__(self, params: Params, docs: list, examples: list, shards: Path, store_root: Path, device: str):
        self.params, self.docs, self.examples = params, docs, examples
        self.shards, self.store_root, self.device = shards, store_root, device

    def part(self, i: int) -> list:
        return self.docs[i * self.params.shard_size : (i + 1) * self.params.shard_size]

    def done(self, i: int) -> bool:
        return (self.shards / f"{i:05d}.jsonl").is_file()

    def setup(self) -> None:
        from harness.models.llm import Decoding
        from harness.prompts import PromptBuilder, load_template

        p = self.params
        llm = load_backend(p, self.store_root, self.device)
        limit = min(p.max_prompt_tokens, llm.context_length or p.max_prompt_tokens)
        builder = PromptBuilder(load_template(p.prompt), llm.tokenizer, max_doc_tokens=p.max_doc_tokens,
                                examples=self.examples, example_tokens=p.example_tokens,
                                example_query_tokens=p.example_query_tokens, seed=p.seed,
                                max_prompt_tokens=limit - p.max_new_tokens)
        prefix = llm.encode(builder.prefix) if builder.prefix and llm.supports_prefix_cache else []
        decoding = Decoding(p.max_new_tokens, p.do_sample, p.temperature, p.top_p)
        self._loaded = (builder, llm, decoding, prefix, limit)

    def run_shard(self, i: int, progress=None) -> dict:
        part = self.part(i)
        tokens = _shard(part, *self._loaded, self.params, self.shards / f"{i:05d}", progress or (lambda n: None))
        return {"items": len(part), "new_tokens": tokens}


def _shard(docs, builder, llm, decoding, prefix, limit, params: Params, stem: Path, progress) -> int:
    """Generate one shard and write it atomically (rows, then the meta file; the rows' rename commits it).
    The same shard computed again writes the same bytes (per-document seeds), so a retry never duplicates."""
    rows, prompts, skipped = [], [], 0
    for doc in docs:
        text, example_ids = builder.build(doc.id, beir.doc_text(doc.title, doc.text))
        ids = llm.encode(text)
        if len(ids) + params.max_new_tokens > limit:
            skipped += 1  # the toolkit raises here and loses the whole run
            continue
        rows.append((doc, text, example_ids))
        prompts.append(ids)
    if skipped > params.max_skipped_share * len(docs):
        raise HarnessError(
            f"generate: {skipped} of {len(docs)} prompts in shard {stem.name} exceed {limit} tokens with "
            f"{params.max_new_tokens} new tokens, more than max_skipped_share={params.max_skipped_share}; lower "
            "`max_doc_tokens`, `example_tokens` or `n_examples`, or raise `max_prompt_tokens` or `max_skipped_share`.")
    seeds = [_row_seed(params.seed, doc.id) for doc, _, _ in rows]
    skipped_progress = len(docs) - len(rows)
    outputs = llm.generate(prompts, decoding, prefix=prefix, seeds=seeds, progress=progress)
    progress(skipped_progress)
    lines, tokens = [], 0
    for (doc, text, example_ids), gen in zip(rows, outputs, strict=True):
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
    meta = {"generated": len(rows), "skipped": skipped, "example_doc_tokens": builder.example_doc_tokens}
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


# version 2: the greedy token is the first highest logit and its log-prob logit - logsumexp (was: from a log-softmax)
# version 3: transformers' own batched generate (log-probs from a log-softmax of its logits; sampling per row with
# `SeededSampler`); Promptagator examples cut to fit the prompt; the sampling device in the key
STAGE = Stage(name="generate", version=3, kind="queries", params=Params, run=run, resumable=True,
              # `examples`: the few-shot examples a dynamic prompt shows, drawn with generate's own settings
              inputs={"corpus": "corpus", "examples": "examples"}, optional=("examples",),
              own_inputs={"examples": ("prompt", "n_examples", "examples_source", "seed")},
              published_kinds=("queries",), fetch_in_auto=True, publish_kind="queries",
              units=lambda params, documents, queries: min(params.get("n_docs", 100_000), documents),
              per_gpu_hour=20_000)  # documents/h, an estimate: GPT-J-6B, ~600-token prompts, 64 new tokens, batched
