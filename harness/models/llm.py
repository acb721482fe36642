"""LLM backends for query generation: transformers (CPU or GPU, causal or seq2seq) and vLLM (GPU), one class each.

A backend takes prompts as token ids and returns, per prompt, the query (decoded, cut at the first newline)
and the log-probability of each chosen token. Both backends share the tokenizer, the stop rule and the
post-processing (`Stops.finish`), so the same prompt gives the same row format whichever backend runs it.

The transformers backend is transformers' own batched `model.generate` for every model (GPT-J included): batches
formed by prompt length, the library's cache, and the log-probs taken from the logits it returns
(`output_logits`). The few-shot prefix that static prompts share is run through the model once into a
`DynamicCache`, and each batch gets a copy as `past_key_values` (transformers' documented prefix reuse).
Sampling draws each prompt's tokens with its own seeded generator (`SeededSampler`), so a sampled query does
not depend on the batch it ran in; it does depend on the device (CPU and CUDA generators differ).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError


@dataclass(frozen=True)
class Decoding:
    """How tokens are chosen: greedy by default; sampling settings are pinned in the recipe."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


@dataclass
class Generation:
    """One prompt's output: the query and the log-probabilities of its tokens (stop token excluded)."""

    query: str
    token_ids: list[int]
    log_probs: list[float]
    stopped: str  # "newline", "eos" or "length"


@dataclass
class Stops:
    """Where a query ends, for any tokenizer: the first token whose text holds a newline, or an end token.

    The newline tokens are found by decoding every vocabulary id (GPT-2's 'Ċ', SentencePiece's '<0x0A>',
    merged tokens such as '.\\n'), not by a hard-coded id.
    """

    newline_ids: frozenset[int]
    eos_ids: frozenset[int]
    # For newline tokens that carry query text before their newline ('?\\n'): that text.
    newline_heads: dict[int, str] = field(default_factory=dict)

    @classmethod
    def for_tokenizer(cls, tokenizer, extra_eos: Sequence[int] = ()) -> Stops:
        size = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        newline = {i for i, t in enumerate(texts) if "\n" in t}
        heads = {i: texts[i].split("\n", 1)[0] for i in newline if texts[i].split("\n", 1)[0].strip()}
        eos = {i for i in [tokenizer.eos_token_id, *extra_eos] if isinstance(i, int)}
        return cls(frozenset(newline - eos), frozenset(eos), heads)

    @property
    def all_ids(self) -> frozenset[int]:
        return self.newline_ids | self.eos_ids

    def finish(self, tokenizer, ids: Sequence[int], log_probs: Sequence[float]) -> Generation:
        """Cut the generated tokens at the stop token; decode the query; keep the query tokens' log-probs."""
        ids, log_probs = list(ids), list(log_probs)
        stopped, cut, keep_stop = "length", len(ids), False
        for i, t in enumerate(ids):
            if t in self.eos_ids:
                stopped, cut = "eos", i
                break
            if t in self.newline_ids:
                stopped, cut = "newline", i
                keep_stop = t in self.newline_heads  # text before its newline belongs to the query
                break
        end = cut + 1 if keep_stop else cut
        text = tokenizer.decode(ids[:end], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return Generation(text.split("\n", 1)[0].strip(), ids[:end], log_probs[:end], stopped)


class LLM:
    """A query generator. Subclasses implement `generate`; `name` is the recipe's `backend` value."""

    name: ClassVar[str]
    tokenizer: Any
    stops: Stops
    context_length: int | None = None  # the model's maximum sequence length, when known
    supports_prefix_cache: bool = False

    def generate(self, prompts: Sequence[Sequence[int]], decoding: Decoding, *, prefix: Sequence[int] = (),
                 seeds: Sequence[int] | None = None, progress: Callable[[int], Any] | None = None) -> list[Generation]:
        """One `Generation` per prompt, in order. Prompts that start with `prefix` may share its cache."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """The prompt's token ids as the model sees them (with the tokenizer's special tokens, e.g. BOS)."""
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])


# --------------------------------------------------------------------------------------------- transformers


class TransformersLM(LLM):
    """Any transformers causal LM (GPT-2, GPT-J, Llama, ...) or seq2seq LM (T5, FLAN-T5), greedy or sampled.

    GPU options: `dtype` float16/bfloat16, `device_map="auto"` to spread a large model over the GPUs
    (accelerate), `load_in_8bit` when bitsandbytes is installed.
    """

    name = "transformers"

    def __init__(self, model, tokenizer, *, batch_size: int = 8, prefix_cache: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.prefix_cache = batch_size, prefix_cache
        config = model.config
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.stops = Stops.for_tokenizer(tokenizer, _config_eos(model))
        self.pad_id = _pad_id(tokenizer, model)
        # Relative positions (T5): the encoder takes any length.
        self.context_length = None if self.seq2seq else (
            getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None))
        # A shared prefix puts each row's padding after it: the positions must come from the mask (`position_ids`).
        self.supports_prefix_cache = not self.seq2seq and "position_ids" in inspect.signature(model.forward).parameters
        self._prefix: tuple[tuple[int, ...], Any] | None = None  # the last shared prefix and its cache

    @classmethod
    def load(cls, path: Path, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 8,
             prefix_cache: bool = True, device_map: str | None = None, load_in_8bit: bool = False) -> TransformersLM:
        from harness.models.loading import config_kind, load_model, load_tokenizer

        tokenizer = load_tokenizer(path, padding_side="left")
        kind = config_kind(path)
        if kind == "classifier":
            raise HarnessError(f"Model {path} is a classifier, not a language model that can write queries.")
        if device_map is None and not load_in_8bit:
            model = load_model(kind, path, device=device, dtype=dtype)
        else:
            model = _load_sharded(kind, path, dtype=dtype, device_map=device_map, load_in_8bit=load_in_8bit)
        return cls(model, tokenizer, batch_size=batch_size, prefix_cache=prefix_cache)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def generate(self, prompts, decoding, *, prefix=(), seeds=None, progress=None):
        prefix = list(prefix) if (self.prefix_cache and self.supports_prefix_cache) else []
        use_prefix = [bool(prefix) and len(p) > len(prefix) and list(p[: len(prefix)]) == prefix for p in prompts]
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        results: list[Generation | None] = [None] * len(prompts)
        # Batches of similar length (longest first, so memory trouble shows at once); ties keep input order.
        for shared in (True, False):
            idx = sorted((i for i in range(len(prompts)) if use_prefix[i] == shared), key=lambda i: -len(prompts[i]))
            for start in range(0, len(idx), self.batch_size):
                batch = idx[start : start + self.batch_size]
                rows = [list(prompts[i][len(prefix) if shared else 0 :]) for i in batch]
                outs = self._batch(rows, decoding, [seeds[i] for i in batch], prefix if shared else [])
                for i, (ids, lps) in zip(batch, outs, strict=True):
                    results[i] = self.stops.finish(self.tokenizer, ids, lps)
                if progress:
                    progress(len(batch))
        return results

    def _batch(self, rows: list[list[int]], decoding: Decoding, seeds: list[int], prefix: list[int]):
        """One batch through `model.generate`: (generated ids, their log-probs) per row, moved to the CPU once.

        Causal LMs are padded on the left, after the shared `prefix` when there is one (the mask hides the
        padding and the positions, counted from the mask, skip it); seq2seq prompts on the right.
        """
        import torch
        from transformers import LogitsProcessorList

        n, width = len(rows), max(map(len, rows))
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for r, row in enumerate(rows):
            cols = slice(0, len(row)) if self.seq2seq else slice(width - len(row), width)
            ids[r, cols], mask[r, cols] = torch.tensor(row), 1
        extra: dict[str, Any] = {}
        if prefix:
            ids = torch.cat([torch.tensor([prefix]).expand(n, -1), ids], dim=1)
            mask = torch.cat([torch.ones((n, len(prefix)), dtype=torch.long), mask], dim=1)
            extra["past_key_values"] = self._prefix_cache(prefix, n)
        if decoding.do_sample:  # drawn by the processor; generate's greedy choice then takes the drawn token
            extra["logits_processor"] = LogitsProcessorList([SeededSampler(decoding, seeds)])
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=False, num_beams=1,
                max_new_tokens=decoding.max_new_tokens, eos_token_id=sorted(self.stops.all_ids),
                pad_token_id=self.pad_id, output_logits=True, return_dict_in_generate=True, **extra)
            # After the prompt (causal) or the decoder's start token (seq2seq): one step per returned logits row.
            new = out.sequences[:, -len(out.logits):]
            # Log-probs of the raw logits (before any processor), as the authors' scores of a greedy run.
            lps = torch.stack([step.float().log_softmax(-1).gather(1, new[:, t, None])[:, 0]
                               for t, step in enumerate(out.logits)], dim=1)
        return list(zip(new.tolist(), lps.tolist(), strict=True))

    def _prefix_cache(self, prefix: list[int], n: int):
        """A copy, for a batch of `n` rows, of the shared prefix's `DynamicCache`, computed once and kept."""
        import copy

        import torch
        from transformers import DynamicCache

        if self._prefix is None or self._prefix[0] != tuple(prefix):
            cache = DynamicCache(config=self.model.config)
            ids = torch.tensor([prefix], device=self.device)
            with torch.inference_mode():
                self.model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache, use_cache=True)
            self._prefix = (tuple(prefix), cache)
        cache = copy.deepcopy(self._prefix[1])  # generate extends the cache it is given
        cache.batch_repeat_interleave(n)
        return cache


class SeededSampler:
    """A logits processor that draws each row's token with that row's own seeded generator.

    transformers' sampling draws from the process's random stream, so a prompt's sample would depend on the
    other prompts of its batch; drawn here, it depends on its seed alone (and on the device: CPU and CUDA
    generators give different streams). Temperature and nucleus truncation are transformers' own warpers;
    the returned scores keep only the drawn token, which greedy decoding then chooses.
    """

    def __init__(self, decoding: Decoding, seeds: Sequence[int]):
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(decoding.temperature)]
                                           + ([TopPLogitsWarper(decoding.top_p)] if decoding.top_p < 1.0 else []))
        self.seeds = list(seeds)
        self.generators: list[Any] | None = None

    def __call__(self, input_ids, scores):
        import torch

        if self.generators is None:  # on the logits' device (the last GPU's under `device_map: auto`)
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        probs = self.warpers(input_ids, scores.float()).softmax(-1)
        drawn = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators, strict=True)])
        return torch.full_like(scores, -math.inf).scatter_(1, drawn[:, None], 0.0)


def _config_eos(model) -> list[int]:
    ids: list[int] = []
    for cfg in (getattr(model, "generation_config", None), model.config):
        value = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        ids += value if isinstance(value, list) else [value] if isinstance(value, int) else []
    return ids


def _pad_id(tokenizer, model) -> int:
    for value in (tokenizer.pad_token_id, getattr(model.config, "pad_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            return value
    return 0


def _load_sharded(kind: str, path: Path, *, dtype: str, device_map: str | None, load_in_8bit: bool):
    """A large model spread over GPUs (`device_map`) and/or in 8-bit (bitsandbytes): GPU only."""
    from harness.models.loading import load_model

    kw: dict[str, Any] = {"device_map": device_map or "auto"}
    if load_in_8bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise HarnessError(
                "`load_in_8bit` needs bitsandbytes on a CUDA machine: pip install 'harness[gpu]'.") from None
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    return load_model(kind, path, dtype=dtype, **kw)


# --------------------------------------------------------------------------------------------------- vLLM


class VllmLM(LLM):
    """vLLM on GPUs (optional extra `harness[vllm]`): the same token-id prompts, stop rule and row format.

    Prefix caching is vLLM's own (`enable_prefix_caching`); log-probs are its sampler's log-softmax of the
    chosen tokens (`logprobs=0` returns exactly the chosen token's).
    """

    name = "vllm"
    supports_prefix_cache = True

    def __init__(self, path: Path, *, dtype: str = "bfloat16", prefix_cache: bool = True, seed: int = 1,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
                 distributed_executor_backend: str | None = None):
        try:
            import vllm
        except ImportError:
            raise HarnessError("Backend `vllm` needs vLLM on a CUDA machine: pip install 'harness[vllm]'.") from None
        from harness.models.loading import load_tokenizer

        self.vllm = vllm
        self.tokenizer = load_tokenizer(path, padding_side="left")
        self.stops = Stops.for_tokenizer(self.tokenizer)
        self.engine = vllm.LLM(model=str(path), tokenizer=str(path), dtype=dtype, seed=seed,
                               enable_prefix_caching=prefix_cache, trust_remote_code=False,
                               tensor_parallel_size=tensor_parallel_size,
                               # "ray": vLLM places the model's GPUs on the Ray cluster itself
                               distributed_executor_backend=distributed_executor_backend,
                               gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        self.context_length = max_model_len

    @classmethod
    def load(cls, path: Path, *, device: str = "cuda", dtype: str = "bfloat16", batch_size: int = 8,
             prefix_cache: bool = True, device_map: str | None = None, load_in_8bit: bool = False,
             seed: int = 1, **options) -> VllmLM:
        if not str(device).startswith("cuda"):
            raise HarnessError("Backend `vllm` runs on CUDA GPUs only: use `--device cuda` or backend `transformers`.")
        if load_in_8bit:
            raise HarnessError("`load_in_8bit` is a transformers option; vLLM has its own quantized checkpoints.")
        return cls(path, dtype=dtype, prefix_cache=prefix_cache, seed=seed, **options)

    def generate(self, prompts, decoding, *, prefix=(), seeds=None, progress=None):
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        params = [
            self.vllm.SamplingParams(
                n=1, temperature=decoding.temperature if decoding.do_sample else 0.0,
                top_p=decoding.top_p if decoding.do_sample else 1.0, max_tokens=decoding.max_new_tokens,
                stop_token_ids=sorted(self.stops.all_ids), logprobs=0, seed=seed if decoding.do_sample else None,
                skip_special_tokens=True,
            )
            for seed in seeds
        ]
        inputs = [self.vllm.inputs.TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        outputs = self.engine.generate(inputs, params, use_tqdm=False)
        results = []
        for out in outputs:
            completion = out.outputs[0]
            ids = list(completion.token_ids)
            lps = [float(step[t].logprob) for t, step in zip(ids, completion.logprobs or [], strict=False)]
            results.append(self.stops.finish(self.tokenizer, ids, lps))
        if progress:
            progress(len(prompts))
        return results


BACKENDS: dict[str, type[LLM]] = {"transformers": TransformersLM, "vllm": VllmLM}


def get_backend(name: str) -> type[LLM]:
    """The backend class named `name`; adding a backend is one class plus one entry in `BACKENDS`."""
    from harness.errors import close_matches

    if name not in BACKENDS:
        raise HarnessError(
            f"Unknown LLM backend {name!r}.{close_matches(name, BACKENDS)} Backends: {', '.join(BACKENDS)}.")
    return BACKENDS[name]
