"""GPU benchmark: monoT5-3B reranking, GPT-J-6B generation and monoT5-3B training against the authors' loops.

One command, about 3-7 minutes on one H200 (estimated, not yet run there) (random weights of the real shapes,
built from configs: nothing is downloaded), writing `benchmarks/results/gpu.json` after each part:

    python benchmarks/bench_gpu.py [--out benchmarks/results/gpu.json] [--tiny]

- rerank: T5-3B shape (monoT5-3B), the harness's `Reranker` in bfloat16 (pairs sorted by length, one encoder pass
  and one decoder step per batch) against the authors' `inpars/rerank.py` loop (float16 weights, batches of 16 in
  run order padded to their longest member, `generate(max_new_tokens=1, output_scores=True)`, inputs moved to the
  model's device) on the same few thousand pairs of 50-512 tokens (log-normal, BEIR-like). `mfu`: the FLOPs the
  pairs need (unpadded lengths, `bench_rerank.t5_pair_flops`) per second over `peak_tflops`, NVIDIA's dense bf16
  figure for the H100/H200 SXM (989 TFLOP/s, the datasheet's 1,979 "with sparsity" halved).
- generate: GPT-J-6B shape, the harness's `TransformersLM` in bfloat16 (its batches, the shared few-shot prefix given
  as `prefix`) against the authors' `inpars/inpars.py` default loop (float16, batch 1, greedy, eos = newline, scores
  kept) on 64 prompts of 400-600 tokens with a shared prefix, 64 new tokens. The authors' loop runs for at most
  `--authors-budget` seconds (its rate is over the prompts it finished); `greedy_agreement` is the share of those
  prompts whose harness output (bf16) is a prefix of the authors' (fp16): random weights make near-ties common.
- train: T5-3B shape, the `train` stage's own step (`harness.stages.train.optimizer_step`): float32 master weights,
  bf16 autocast, gradient checkpointing, Adafactor (the paper's optimizer, as T5 finetuning runs it), batches of 128
  in micro-batches of 8 (the inpars-v2 recipe). `mfu` counts 3x the forward FLOPs (forward + backward, not the
  checkpointing recompute); `peak_gib` is torch's peak allocated GPU memory.
- beir_gpu_hours: a whole InPars-v2 run over the 18 BEIR datasets from the measured rates (generation and filtering
  of min(corpus, 100k) documents per dataset, the recipe's training per reranker, BM25's top 1,000 reranked for
  every test query), beside the authors' "more than 2,000 GPU hours" for InPars-v2 over BEIR (as issue 18 and
  docs/scaling.md quote them).

A part that fails (out of memory, say) prints its traceback and leaves its values null; the other parts still run
and the exit status is 1. `--tiny` runs everything on the CPU at tiny shapes in seconds: a check that the script
works, not a measurement.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

PEAK_TFLOPS = 989.0  # H100/H200 SXM dense bf16 (NVIDIA datasheet: 1,979 with 2:4 sparsity)
AUTHORS_REPORTED_GPU_HOURS = 2000  # InPars-v2: "more than 2,000 GPU hours" for the BEIR runs
AUTHORS_RERANK_BATCH = 16  # inpars/rerank.py's default --batch_size

SHAPES: dict[str, dict[str, Any]] = {
    "real": {
        # t5-3b (monoT5-3B's backbone): T5 v1.0, relu feed-forward.
        "t5": {"d_model": 1024, "d_kv": 128, "d_ff": 16384, "num_layers": 24, "num_heads": 32, "vocab_size": 32128,
               "tokenizer_size": 32100, "extra_ids": 100},
        # EleutherAI/gpt-j-6b.
        "gptj": {"n_embd": 4096, "n_layer": 28, "n_head": 16, "rotary_dim": 64, "n_positions": 2048,
                 "vocab_size": 50400},
        "pairs": 3000, "prompts": 64, "new_tokens": 64, "train_batch": 128, "micro_batch": 8, "train_steps": 3,
        "rerank_batch": 64, "authors_budget": 150.0, "max_tokens": 512,
    },
    "tiny": {
        "t5": {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4, "vocab_size": 1024,
               "tokenizer_size": 1024, "extra_ids": 0},
        "gptj": {"n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 8, "n_positions": 1024, "vocab_size": 1024},
        "pairs": 32, "prompts": 4, "new_tokens": 8, "train_batch": 4, "micro_batch": 2, "train_steps": 2,
        "rerank_batch": 8, "authors_budget": 60.0, "max_tokens": 128,
    },
}
EMPTY = {
    "rerank": dict.fromkeys(["pairs_per_s", "authors_pairs_per_s", "speedup", "mfu", "peak_tflops",
                             "max_abs_score_diff"]),
    "generate": dict.fromkeys(["tokens_per_s", "authors_tokens_per_s", "speedup", "greedy_agreement"]),
    "train": dict.fromkeys(["samples_per_s", "mfu", "peak_gib"]),
}


# --- setup ---------------------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write(results: dict, out: Path) -> None:
    """`results` into `out` atomically (the file always holds a whole JSON object)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out)


def finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def max_abs_diff(a: list[float], b: list[float]) -> float:
    """max |a - b|, NaN when either side holds a NaN (float16 overflow in the authors' loop, say)."""
    diffs = [abs(x - y) for x, y in zip(a, b, strict=True)]
    return math.nan if any(math.isnan(d) for d in diffs) else max(diffs)


def versions() -> dict:
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(device, fn, *args, **kw):
    """(fn's result, seconds), the GPU's queue drained before and after."""
    sync(device)
    start = time.perf_counter()
    result = fn(*args, **kw)
    sync(device)
    return result, time.perf_counter() - start


def build_t5(shape: dict, device):
    """A random-weight T5 (monoT5's architecture) of `shape`, float32, on `device`."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    dims = {k: v for k, v in shape.items() if k not in ("tokenizer_size", "extra_ids")}
    config = T5Config(num_decoder_layers=dims["num_layers"], feed_forward_proj="relu", tie_word_embeddings=True,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, is_encoder_decoder=True, **dims)
    torch.manual_seed(0)
    with torch.device(device):
        return T5ForConditionalGeneration(config).eval()


def build_gptj(shape: dict, eos: int, device):
    """A random-weight GPT-J of `shape`, float32, on `device`."""
    import torch
    from transformers import GPTJConfig, GPTJForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = GPTJForCausalLM(GPTJConfig(bos_token_id=eos, eos_token_id=eos, **shape)).eval()
    model.generation_config.pad_token_id = eos
    return model


def one_token_words(tok, marker: str) -> list[str]:
    """Vocabulary words that are one token each, also inside a text (so a text of k words has k tokens)."""
    words = sorted(t[len(marker):] for t in tok.get_vocab() if t.startswith(marker) and t[len(marker):].isalpha()
                   and len(t) > len(marker) + 2)
    ids = tok([" " + w for w in words], add_special_tokens=False)["input_ids"]
    return [w for w, i in zip(words, ids, strict=True) if len(i) == 1]


# --- rerank ----------------------------------------------------------------------------------------------------
def make_pairs(tok, n: int, max_tokens: int = 512, seed: int = 0) -> tuple[list[str], list[str]]:
    """`n` (query, document) pairs whose monoT5 inputs are 50-`max_tokens` tokens, log-normal around 180 (BEIR-like)."""
    from harness.models.rerankers import TEMPLATES

    words = one_token_words(tok, "▁")
    rng = random.Random(seed)
    queries, docs = [], []
    for _ in range(n):
        target = min(max_tokens, max(50, int(rng.lognormvariate(math.log(180), 0.6))))
        query = " ".join(rng.choices(words, k=rng.randint(4, 12)))
        base = len(tok(TEMPLATES["monot5"].format(query=query, document=""))["input_ids"])
        queries.append(query)
        docs.append(" ".join(rng.choices(words, k=max(1, target - base))))
    return queries, docs


def bench_rerank(cfg: dict, device, tok, base) -> tuple[dict, dict]:
    """The rerank part of the results, and what the BEIR estimate and the train part need from it."""
    import torch
    from bench_rerank import authors_loop, t5_pair_flops

    from harness.models.rerankers import Reranker

    queries, docs = make_pairs(tok, cfg["pairs"], cfg["max_tokens"])
    on_gpu = str(device).startswith("cuda")
    harness_model = copy.deepcopy(base).to(torch.bfloat16)
    reranker = Reranker(harness_model, tok, "monot5", device=device, batch_size=cfg["rerank_batch"], max_length=512)
    lengths = [len(e) for e in reranker.encode(queries, docs)]
    reranker.score(queries[: cfg["rerank_batch"]], docs[: cfg["rerank_batch"]])  # warm-up
    scores, seconds = timed(device, reranker.score, queries, docs)
    log(f"rerank: harness bf16, batch {cfg['rerank_batch']}: {len(queries) / seconds:.1f} pairs/s ({seconds:.1f} s)")
    del reranker, harness_model
    authors_model = copy.deepcopy(base).to(torch.float16 if on_gpu else torch.float32)
    prompts = [f"Query: {q} Document: {d} Relevant:" for q, d in zip(queries, docs, strict=True)]
    authors_loop(authors_model, tok, prompts[:AUTHORS_RERANK_BATCH])  # warm-up
    authors, authors_s = timed(device, authors_loop, authors_model, tok, prompts, AUTHORS_RERANK_BATCH)
    log(f"rerank: authors' loop fp16, batch {AUTHORS_RERANK_BATCH}: {len(prompts) / authors_s:.1f} pairs/s")
    del authors_model
    flops = sum(t5_pair_flops(base.config, n) for n in lengths)
    part = {"pairs_per_s": len(queries) / seconds, "authors_pairs_per_s": len(queries) / authors_s,
            "speedup": authors_s / seconds, "mfu": flops / seconds / (PEAK_TFLOPS * 1e12), "peak_tflops": PEAK_TFLOPS,
            "max_abs_score_diff": finite(max_abs_diff(scores, authors))}
    return part, {"queries": queries, "docs": docs, "lengths": lengths}


# --- generate --------------------------------------------------------------------------------------------------
def make_prompts(tok, n: int, seed: int = 1) -> tuple[str, list[str]]:
    """A shared few-shot prefix and `n` prompts of 400-600 tokens that start with it (one token per word)."""
    words = one_token_words(tok, "Ġ")
    rng = random.Random(seed)
    examples = []
    for i in range(3):
        examples.append(f"Example {i + 1}:\nDocument: {' '.join(rng.choices(words, k=80))}\n"
                        f"Relevant Query: {' '.join(rng.choices(words, k=8))}\n\n")
    prefix = "".join(examples)
    n_prefix = len(tok(prefix)["input_ids"])
    prompts = []
    for _ in range(n):
        target = rng.randint(400, 600)
        tail = f"Example {len(examples) + 1}:\nDocument:"
        n_doc = target - n_prefix - len(tok(tail + "\nRelevant Query:")["input_ids"])
        prompts.append(prefix + tail + " " + " ".join(rng.choices(words, k=max(1, n_doc))) + "\nRelevant Query:")
    return prefix, prompts


def shared_prefix(rows: list[list[int]]) -> list[int]:
    """The longest list of tokens that every row starts with."""
    n = min(map(len, rows))
    for i in range(n):
        if any(row[i] != rows[0][i] for row in rows):
            return rows[0][:i]
    return rows[0][:n]


def authors_generate(model, tok, prompts: list[str], new_tokens: int, budget_s: float, device) -> tuple[list, float]:
    """inpars/inpars.py `InPars.generate` at its default batch of 1 (greedy): each prompt's new token ids, cut at
    the newline as its `eos_token_id`, for the prompts finished within `budget_s`; and the seconds taken."""
    import torch

    newline = tok.convert_tokens_to_ids("Ċ")
    out: list[list[int]] = []
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for prompt in prompts:
            tokens = tok([prompt], padding=True, truncation=True, return_tensors="pt").to(model.device)
            outputs = model.generate(input_ids=tokens["input_ids"].long(),
                                     attention_mask=tokens["attention_mask"].long(),
                                     max_new_tokens=new_tokens, output_scores=True, return_dict_in_generate=True,
                                     eos_token_id=newline, bos_token_id=tok.bos_token_id, pad_token_id=tok.eos_token_id,
                                     do_sample=False)
            gen = outputs.sequences[:, tokens["input_ids"].shape[-1]:]
            probs = torch.stack(outputs.scores, dim=1).log_softmax(dim=-1)  # as theirs: the sequence scores
            probs.max(dim=2)[0].tolist()
            row = gen[0].tolist()
            out.append(row[: row.index(newline) + 1] if newline in row else row)
            if time.perf_counter() - start > budget_s:
                break
    sync(device)
    return out, time.perf_counter() - start


def bench_generate(cfg: dict, device, work: Path) -> dict:
    import torch

    from harness.models.llm import Decoding, TransformersLM
    from harness.models.loading import load_tokenizer
    from harness.models.tiny import build_tokenizer

    shape = cfg["gptj"]
    tok = load_tokenizer(build_tokenizer("gpt2", None, work / "gptj-tokenizer", shape["vocab_size"]),
                         padding_side="left")
    tok.pad_token = tok.eos_token
    base = build_gptj(shape, tok.eos_token_id, device)
    prefix, texts = make_prompts(tok, cfg["prompts"])
    prompts = [tok(t)["input_ids"] for t in texts]
    prefix_ids = shared_prefix(prompts)  # the tokens of `prefix` that every prompt starts with
    assert len(prefix_ids) >= len(tok(prefix)["input_ids"]) - 2, "the prompts do not share the few-shot prefix"
    lm = TransformersLM(copy.deepcopy(base).to(torch.bfloat16), tok, batch_size=cfg["prompts"])
    kw = {"prefix": prefix_ids} if "prefix" in inspect.signature(lm.generate).parameters else {}
    lm.generate(prompts[:2], Decoding(max_new_tokens=2), **kw)  # warm-up
    gens, seconds = timed(device, lm.generate, prompts, Decoding(max_new_tokens=cfg["new_tokens"]), **kw)
    n_tokens = sum(len(g.token_ids) for g in gens)
    log(f"generate: harness bf16: {n_tokens / seconds:.1f} tokens/s ({len(prompts)} prompts, {seconds:.1f} s)")
    del lm
    authors_model = copy.deepcopy(base).to(torch.float16 if str(device).startswith("cuda") else torch.float32)
    del base
    authors_generate(authors_model, tok, texts[:1], 2, 60, device)  # warm-up
    authors, authors_s = authors_generate(authors_model, tok, texts, cfg["new_tokens"], cfg["authors_budget"], device)
    authors_tokens = sum(map(len, authors))
    log(f"generate: authors' loop fp16 batch 1: {authors_tokens / authors_s:.1f} tokens/s "
        f"({len(authors)} of {len(texts)} prompts in {authors_s:.1f} s)")
    del authors_model
    agree = sum(a[: len(g.token_ids)] == g.token_ids for a, g in zip(authors, gens, strict=False))
    rate, authors_rate = n_tokens / seconds, authors_tokens / authors_s
    return {"tokens_per_s": rate, "authors_tokens_per_s": authors_rate, "speedup": rate / authors_rate,
            "greedy_agreement": agree / len(authors), "_prompts_per_s": len(prompts) / seconds,
            "_authors_prompts_per_s": len(authors) / authors_s}


# --- train -----------------------------------------------------------------------------------------------------
def bench_train(cfg: dict, device, tok, base, pairs: dict) -> dict:
    import torch
    from bench_rerank import t5_pair_flops

    from harness.models.rerankers import encode_pairs, target_ids
    from harness.stages.train import Params, make_optimizer, optimizer_step, precision, prepare_model

    params = Params(model="random t5", kind="monot5", optimizer="adafactor", learning_rate=1e-3,
                    batch_size=cfg["train_batch"], micro_batch_size=cfg["micro_batch"], dtype="bfloat16",
                    gradient_checkpointing=True, max_length=512)
    n = cfg["train_batch"] * (cfg["train_steps"] + 1)
    queries = [pairs["queries"][i % len(pairs["queries"])] for i in range(n)]
    docs = [pairs["docs"][i % len(pairs["docs"])] for i in range(n)]
    encoded = encode_pairs(tok, "monot5", queries, docs, 512)
    labels = [i % 2 for i in range(n)]
    on_gpu = str(device).startswith("cuda")
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = prepare_model(base, params)
    optimizer, scheduler = make_optimizer(model, params, cfg["train_steps"] + 1)
    autocast, scaler = precision(params, device)
    targets, pad = target_ids(tok, "monot5"), tok.pad_token_id
    batches = [list(range(s * cfg["train_batch"], (s + 1) * cfg["train_batch"])) for s in range(cfg["train_steps"] + 1)]
    optimizer_step(model, batches[0], encoded, labels, params, targets, pad, device, optimizer, scheduler, scaler,
                   autocast)  # warm-up step
    sync(device)
    start = time.perf_counter()
    losses = [optimizer_step(model, b, encoded, labels, params, targets, pad, device, optimizer, scheduler, scaler,
                             autocast) for b in batches[1:]]
    sync(device)
    seconds = time.perf_counter() - start
    examples = [len(encoded[i]) for b in batches[1:] for i in b]
    flops = 3 * sum(t5_pair_flops(base.config, length) for length in examples)
    if on_gpu:
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux: the process's peak RSS
    samples = len(examples) / seconds
    log(f"train: {samples:.1f} samples/s, losses {[round(x, 3) for x in losses]}, peak {peak:.1f} GiB")
    return {"samples_per_s": samples, "mfu": flops / seconds / (PEAK_TFLOPS * 1e12), "peak_gib": peak}


# --- BEIR estimate ---------------------------------------------------------------------------------------------
def beir_hours(results: dict, extra: dict) -> dict:
    """GPU hours of a whole InPars-v2 run over BEIR at the measured rates (and at the authors' loops' rates)."""
    import yaml

    from harness.data.catalog import GROUPS, get_dataset

    recipe = yaml.safe_load((HERE.parent / "recipes" / "inpars-v2.yaml").read_text())["stages"]
    n_docs, train = recipe["generate"]["n_docs"], recipe["train"]
    datasets = [get_dataset(name) for name in GROUPS["beir"]]
    prompts = sum(min(d.corpus_size or 0, n_docs) for d in datasets)
    trainings = sum(len(d.subsets) or 1 for d in datasets)  # CQADupStack: one reranker per forum
    examples = trainings * train["steps"] * train["batch_size"]
    pairs = sum(d.queries or 0 for d in datasets) * recipe["rerank"]["depth"]
    rerank, generate, train_rate = results["rerank"], extra, results["train"]["samples_per_s"]
    hours = {
        "generate": prompts / generate["_prompts_per_s"] / 3600,
        "filter": prompts / rerank["pairs_per_s"] / 3600,  # one (query, document) pair per generated query
        "train": examples / train_rate / 3600,
        "rerank": pairs / rerank["pairs_per_s"] / 3600,
    }
    authors = (prompts / generate["_authors_prompts_per_s"] + (prompts + pairs) / rerank["authors_pairs_per_s"]
               + examples / train_rate) / 3600  # their training loop is not measured: the harness's rate
    total = sum(hours.values())
    return {**hours, "total": total, "authors_loops_total": authors, "authors_reported": AUTHORS_REPORTED_GPU_HOURS,
            "share_of_reported": total / AUTHORS_REPORTED_GPU_HOURS, "prompts": prompts, "rerank_pairs": pairs,
            "train_examples": examples}


# --- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu.json")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU: checks the script, in seconds")
    parser.add_argument("--work", type=Path, default=None, help="folder for the tokenizers (default: a temp folder)")
    parser.add_argument("--authors-budget", type=float, default=None, help="seconds for the authors' generation loop")
    args = parser.parse_args(argv)

    import torch

    cfg = dict(SHAPES["tiny" if args.tiny else "real"])
    if args.authors_budget is not None:
        cfg["authors_budget"] = args.authors_budget
    if args.tiny:
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print("bench_gpu.py needs a CUDA GPU (or --tiny for the CPU check at tiny shapes).", file=sys.stderr)
        return 2
    results = {"device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({platform.machine()})",
               "versions": versions(), **copy.deepcopy(EMPTY), "beir_gpu_hours": {}}
    write(results, args.out)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        from harness.models.loading import load_tokenizer
        from harness.models.tiny import build_tokenizer

        t5 = cfg["t5"]
        tok = load_tokenizer(build_tokenizer("t5", None, work / "t5-tokenizer", t5["tokenizer_size"],
                                             extra_ids=t5["extra_ids"]))
        base = build_t5(t5, device)
        log(f"{results['device']}: T5 {sum(p.numel() for p in base.parameters()) / 1e9:.2f}B parameters")
        failed = []

        def part(name, fn, *fn_args):
            """Run one part; a failure is printed and leaves its values None, and the other parts still run."""
            try:
                return fn(*fn_args)
            except Exception:  # noqa: BLE001 - one shot on the GPU: measure what can be measured
                traceback.print_exc()
                failed.append(name)
                return None
            finally:
                if device == "cuda":
                    torch.cuda.empty_cache()

        rerank = part("rerank", bench_rerank, cfg, device, tok, base)
        if rerank:
            results["rerank"] = rerank[0]
            write(results, args.out)
        if rerank:
            pairs = rerank[1]
        else:
            queries, docs = make_pairs(tok, cfg["pairs"], cfg["max_tokens"])
            pairs = {"queries": queries, "docs": docs}
        generate = part("generate", bench_generate, cfg, device, work)
        if generate:
            results["generate"] = {k: v for k, v in generate.items() if not k.startswith("_")}
            write(results, args.out)
        train = part("train", bench_train, cfg, device, tok, base, pairs)
        if train:
            results["train"] = train
            write(results, args.out)
        if not failed:
            results["beir_gpu_hours"] = beir_hours(results, generate)
            write(results, args.out)
    log(f"wrote {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    print(json.dumps(results, indent=1, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
