"""LLM backends for query generation: transformers (CPU or GPU, causal or seq2seq) and vLLM (GPU), one class each.

A backend takes prompts as token ids and returns, per prompt, the query (decoded, cut at the first newline)
and the log-probability of each chosen token. Both backends share the tokenizer, the stop rule and the
post-processing (`Stops.finish`), so the same prompt gives the same row format whichever backend runs it.

The transformers backend runs its own decoding loop rather than `model.generate`, to get on a CPU what the
authors' loop (batch 1, full prompt, `generate`) spends most of its time on, without changing greedy
outputs: batches formed by prompt length, finished rows dropped from the batch, logits computed for the
last position only, and the few-shot prefix that static prompts share computed once and reused by every
batch (`prefix_cache`). Models that compute attention through transformers' AttentionInterface (GPT-2,
GPT-J, Llama, ...) run through `prefix_attention`: the prefix's keys/values kept once rather than copied per
row, the prompts' suffixes packed into one prefill with no padding, and each decoding step's attention split
into the shared prefix and each row's own tokens. Other models use transformers' cache: the padding goes
between the prefix and each prompt's own suffix, masked out, with position ids that skip it, so each row
attends to exactly the tokens of its own full prompt at their own positions.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.models import prefix_attention

log = logging.getLogger(__name__)


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

    The model passed in is used in place: on a CPU, a GPT-2-style model's `Conv1D` weights are stored [out, in] from
    construction on (same values, the module's forward unchanged but for float rounding order: `out_in_weights`).
    """

    name = "transformers"

    def __init__(self, model, tokenizer, *, batch_size: int = 8, prefix_cache: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.prefix_cache = batch_size, prefix_cache
        config = model.config
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.stops = Stops.for_tokenizer(tokenizer, _config_eos(model))
        self.pad_id = _pad_id(tokenizer, model)
        self.context_length = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        if self.seq2seq:
            self.context_length = None  # relative positions: the encoder takes any length
        self.supports_prefix_cache = not self.seq2seq
        params = inspect.signature(model.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_keep = "logits_to_keep" in params
        self.prefix_attention = prefix_attention.supported(model)  # else: transformers' own cache, one prefix copy per row
        if self.prefix_attention:  # (on a CPU, GPT-2's weights stored [out, in]: see `prefix_attention._faster_forwards`)
            prefix_attention.out_in_weights(model)
        self._prefix_key: tuple[int, ...] | None = None
        self._prefix_kv: Any = None

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

    # --- the public call --------------------------------------------------------------------------
    def generate(self, prompts, decoding, *, prefix=(), seeds=None, progress=None):
        import torch

        prefix = list(prefix) if (self.prefix_cache and self.supports_prefix_cache) else []
        use_prefix = [bool(prefix) and len(p) > len(prefix) and list(p[: len(prefix)]) == prefix for p in prompts]
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        results: list[Generation | None] = [None] * len(prompts)
        # Batches of similar length (longest first, so memory trouble shows at once); ties keep input order.
        for shared in (True, False):
            idx = [i for i in range(len(prompts)) if use_prefix[i] == shared]
            idx.sort(key=lambda i: -len(prompts[i]))
            for start in range(0, len(idx), self.batch_size):
                batch = idx[start : start + self.batch_size]
                batch_seeds = [seeds[i] for i in batch]
                with torch.inference_mode():
                    if shared:
                        outs = self._causal([list(prompts[i][len(prefix):]) for i in batch], decoding,
                                            batch_seeds, prefix)
                    elif self.seq2seq:
                        outs = self._seq2seq([list(prompts[i]) for i in batch], decoding, batch_seeds)
                    else:
                        outs = self._causal([list(prompts[i]) for i in batch], decoding, batch_seeds, [])
                for i, (ids, lps) in zip(batch, outs):
                    results[i] = self.stops.finish(self.tokenizer, ids, lps)
                if progress:
                    progress(len(batch))
        return results  # type: ignore[return-value]

    # --- decoding ---------------------------------------------------------------------------------
    def _prefix_cache(self, prefix: list[int]):
        """Key/value tensors of the shared prefix, computed once (batch of one) and kept."""
        import torch

        if self.prefix_attention:
            if self._prefix_key != tuple(prefix):
                self._prefix_kv, self._prefix_key = prefix_attention.PrefixAttention(self.model, prefix), tuple(prefix)
            return self._prefix_kv
        if self._prefix_key != tuple(prefix):
            ids = torch.tensor([prefix], device=self.device)
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                             **self._keep_kw(ids.shape[1]))
            self._prefix_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self._prefix_key = tuple(prefix)
        return self._prefix_kv

    def _keep_kw(self, n: int) -> dict:
        return {"logits_to_keep": 1} if self._takes_keep else {}

    def _causal(self, rows: list[list[int]], decoding: Decoding, seeds: list[int], prefix: list[int]):
        """Decode a batch of causal-LM prompts (or suffixes after a cached `prefix`); (ids, log-probs) per row.

        Each row's prompt is prefilled on its own (batch of one, no padding: on a CPU the prefill is
        compute-bound, and padded positions would be computed for nothing); the rows' key/value tensors are
        then laid side by side, right-aligned, for the batched token-by-token decoding.
        """
        import torch
        from transformers import DynamicCache

        if self.prefix_attention:  # the prefix's keys/values once, the rows' prompts packed into one prefill
            # (no prefix: a fresh empty one, so that the kept prefix is not dropped for the next batches)
            shared = self._prefix_cache(prefix) if prefix else prefix_attention.PrefixAttention(self.model, [])
            batch = shared.rows(rows, decoding.max_new_tokens)
            return self._loop(batch.first, batch.step, batch.select, len(rows), decoding, seeds)
        dev, n, width, lp = self.device, len(rows), max(map(len, rows)), len(prefix)
        mask = torch.zeros((n, lp + width), dtype=torch.long)
        mask[:, :lp] = 1
        for r, row in enumerate(rows):  # left padding; with a prefix the padding sits between prefix and suffix
            mask[r, lp + width - len(row):] = 1
        mask = mask.to(dev)
        prefix_kv = self._prefix_cache(prefix) if prefix else None
        suffix_kv: list[tuple[Any, Any]] | None = None
        first = []
        for r, row in enumerate(rows):
            logits, kv = self._prefill(row, prefix_kv, lp)
            first.append(logits)
            if suffix_kv is None:
                suffix_kv = [(k.new_zeros((n, k.shape[1], width, k.shape[3])),
                              v.new_zeros((n, v.shape[1], width, v.shape[3]))) for k, v in kv]
            for (k_all, v_all), (k, v) in zip(suffix_kv, kv):
                k_all[r, :, width - len(row):] = k[0]
                v_all[r, :, width - len(row):] = v[0]
        cache = _preallocated(DynamicCache(config=self.model.config), lp + width + decoding.max_new_tokens)
        for layer, (k, v) in enumerate(suffix_kv or []):
            if prefix_kv:  # the shared prefix first, then the rows' own tokens: two appends, no joined copy
                pk, pv = prefix_kv[layer]
                cache.update(pk.expand(n, *pk.shape[1:]), pv.expand(n, *pv.shape[1:]), layer)
            cache.update(k, v, layer)
        next_pos = mask.sum(-1)  # the position of each row's next token

        def step(tokens, alive):
            nonlocal mask, next_pos
            mask = torch.cat([mask[alive], torch.ones((len(alive), 1), dtype=mask.dtype, device=dev)], dim=1)
            next_pos = next_pos[alive]
            kw = {"position_ids": next_pos[:, None]} if self._takes_positions else {}
            res = self.model(input_ids=tokens[:, None], attention_mask=mask, past_key_values=cache,
                             use_cache=True, **kw, **self._keep_kw(1))
            next_pos = next_pos + 1
            return res.logits[:, -1]

        def select(alive):
            cache.batch_select_indices(alive)

        return self._loop(torch.cat(first), step, select, n, decoding, seeds)

    def _prefill(self, row: list[int], prefix_kv, lp: int):
        """One prompt (or suffix after the cached prefix) through the model: last logits and its own keys/values."""
        import torch
        from transformers import DynamicCache

        dev = self.device
        cache = DynamicCache(config=self.model.config)
        for layer, (k, v) in enumerate(prefix_kv or []):
            cache.update(k, v, layer)
        ids = torch.tensor([row], device=dev)
        kw = {"position_ids": torch.arange(lp, lp + len(row), device=dev)[None]} if self._takes_positions else {}
        out = self.model(input_ids=ids, attention_mask=torch.ones((1, lp + len(row)), dtype=torch.long, device=dev),
                         past_key_values=cache, use_cache=True, **kw, **self._keep_kw(len(row)))
        kv = [(layer.keys[:, :, lp:], layer.values[:, :, lp:]) for layer in out.past_key_values.layers]
        return out.logits[:, -1], kv

    def _seq2seq(self, rows: list[list[int]], decoding: Decoding, seeds: list[int]):
        """Decode a batch of encoder-decoder prompts: the encoder once, then the decoder token by token."""
        import torch
        from transformers import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import BaseModelOutput

        dev, n, width = self.device, len(rows), max(map(len, rows))
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for r, row in enumerate(rows):  # right padding: the encoder is bidirectional, the mask hides it
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        hidden = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        cache = EncoderDecoderCache(DynamicCache(config=self.model.config), DynamicCache(config=self.model.config))
        start = self.model.config.decoder_start_token_id
        state = {"hidden": hidden, "mask": mask}

        def call(tokens):
            res = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=state["hidden"]),
                             attention_mask=state["mask"], decoder_input_ids=tokens[:, None],
                             past_key_values=cache, use_cache=True)
            return res.logits[:, -1]

        def select(alive):
            cache.batch_select_indices(alive)
            state["hidden"], state["mask"] = state["hidden"][alive], state["mask"][alive]

        first = call(torch.full((n,), start, dtype=torch.long, device=dev))
        return self._loop(first, lambda tokens, alive: call(tokens), select, n, decoding, seeds)

    def _loop(self, logits, step, select, n: int, decoding: Decoding, seeds: list[int]):
        """Choose tokens until every row has stopped or `max_new_tokens`; finished rows leave the batch."""
        import torch

        stop_ids = torch.tensor(sorted(self.stops.all_ids), device=logits.device)
        out_ids: list[list[int]] = [[] for _ in range(n)]
        out_lps: list[list[float]] = [[] for _ in range(n)]
        rows = list(range(n))  # which original row each batch position is
        gens = [_generator(s, logits.device) for s in seeds] if decoding.do_sample else None
        for t in range(decoding.max_new_tokens):
            # Greedy: the first highest logit, as transformers' argmax. The chosen token's log-prob is its logit
            # minus log Σ exp(logits), shifted by the max: no full log-softmax (the output layer may leave the
            # logits transposed, and a log-softmax would copy them first).
            logits = logits.float()
            top, best = logits.max(dim=-1)
            norm = top + (logits - top[:, None]).exp_().sum(dim=-1).log_()
            if decoding.do_sample:
                chosen = torch.stack([_sample(logits[b], decoding, gens[r]) for b, r in enumerate(rows)])
            else:
                chosen = best
            picked = logits.gather(1, chosen[:, None])[:, 0] - norm
            for b, r in enumerate(rows):
                out_ids[r].append(int(chosen[b]))
                out_lps[r].append(float(picked[b]))
            done = torch.isin(chosen, stop_ids)
            if t + 1 == decoding.max_new_tokens or bool(done.all()):
                break
            if bool(done.any()):
                alive = (~done).nonzero()[:, 0]
                select(alive)
                rows = [rows[int(b)] for b in alive]
                chosen = chosen[alive]
            else:
                alive = torch.arange(len(rows), device=logits.device)
            logits = step(chosen, alive)
        return list(zip(out_ids, out_lps))


def _preallocated(cache, capacity: int):
    """`cache` with its plain layers swapped for ones that write into buffers sized for the whole batch.

    transformers' DynamicLayer concatenates at every step, copying the whole cache each time: on a CPU that
    copy costs more than the attention itself. Sliding-window or other special layers are left as they are.
    """
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if isinstance(layers, list) and layers:
        cache.layers = [_BufferLayer(capacity) if type(layer) is DynamicLayer else layer for layer in layers]
    return cache


def _buffer_layer_class():
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A DynamicLayer whose keys and values are views into preallocated buffers: no copy per step."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity, self.length = capacity, 0

        def lazy_initialization(self, key_states, value_states):
            import torch

            self.dtype, self.device = key_states.dtype, key_states.device
            b, h, _, dk = key_states.shape
            self._k = torch.empty((b, h, self.capacity, dk), dtype=self.dtype, device=self.device)
            self._v = torch.empty((b, h, self.capacity, value_states.shape[-1]), dtype=self.dtype, device=self.device)
            self.keys, self.values = self._k[:, :, :0], self._v[:, :, :0]
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.capacity:
                raise RuntimeError(f"cache buffer of {self.capacity} tokens overflowed ({end})")
            self._k[:, :, self.length:end] = key_states
            self._v[:, :, self.length:end] = value_states
            self.length = end
            self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices) -> None:
            if self.is_initialized:
                self._k, self._v = self._k[indices], self._v[indices]
                self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError

        def crop(self, tokens_to_remove: int) -> None:
            raise NotImplementedError

    return BufferLayer


class _LazyBufferLayer:
    cls = None

    def __call__(self, capacity: int):
        if _LazyBufferLayer.cls is None:
            _LazyBufferLayer.cls = _buffer_layer_class()
        return _LazyBufferLayer.cls(capacity)


_BufferLayer = _LazyBufferLayer()


def _generator(seed: int, device):
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _sample(logits, decoding: Decoding, gen):
    """One token from temperature-scaled, nucleus-truncated probabilities, with the row's own generator."""
    import torch

    scores = logits / max(decoding.temperature, 1e-6)
    if decoding.top_p < 1.0:
        sorted_scores, order = scores.sort(descending=True)
        cum = sorted_scores.softmax(-1).cumsum(-1)
        drop = cum - sorted_scores.softmax(-1) >= decoding.top_p  # keep the smallest set reaching top_p
        scores = scores.clone()
        scores[order[drop]] = -math.inf
    return torch.multinomial(scores.softmax(-1), 1, generator=gen)[0]


def _config_eos(model) -> list[int]:
    ids = []
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
            raise HarnessError("`load_in_8bit` needs bitsandbytes on a CUDA machine: pip install 'harness[gpu]'.") from None
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
            lps = [float(step[t].logprob) for t, step in zip(ids, completion.logprobs or [])]
            results.append(self.stops.finish(self.tokenizer, ids, lps))
        if progress:
            progress(len(prompts))
        return results


BACKENDS: dict[str, type[LLM]] = {"transformers": TransformersLM, "vllm": VllmLM}


def get_backend(name: str) -> type[LLM]:
    """The backend class named `name`; adding a backend is one class plus one entry in `BACKENDS`."""
    from harness.errors import close_matches

    if name not in BACKENDS:
        raise HarnessError(f"Unknown LLM backend {name!r}.{close_matches(name, BACKENDS)} Backends: {', '.join(BACKENDS)}.")
    return BACKENDS[name]
