"""Attention over one shared prefix plus each row's own tokens: batched causal decoding without copies of the prefix.

The static prompts (`inpars`, `inpars-gbq`) begin every document's prompt with the same few-shot prefix of several
hundred tokens. A plain key/value cache holds one copy of that prefix per row, and every decoding step reads all
the copies; here the prefix's keys/values are kept once, each row keeps only its own tokens (its prompt's suffix
after the prefix, then what it generates), and attention is computed in two parts joined in one softmax: all the
rows' queries against the one prefix (a matrix product per head), and each row against its own tokens.

A model runs through it with transformers' AttentionInterface: for the duration of a call the model's attention
implementation is switched to `prefix-attention`, which reads this module's state from the `prefix_attention`
keyword that transformers passes down to every attention layer. Three kinds of call:
- the prefix (`PrefixAttention`): one sequence, causal attention; its keys/values are kept per layer;
- the prefill (`Rows.__init__`): the rows' suffixes packed side by side into one sequence, so the linear layers see
  one long matrix with no padding, each suffix attending to the prefix and causally to itself; its keys/values go
  to the rows' buffers (right-aligned: a row's last prompt token in the same column for every row);
- a decoding step (`Rows.step`): one token per row, written to the next column of the buffers.

Any causal model that computes attention through the interface (GPT-2, GPT-J, Llama, Mistral, Qwen, ...) can use it,
except where the attention needs more than a causal mask (sliding windows, logit soft-capping): `supported` says.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable
from typing import Any

IMPLEMENTATION = "prefix-attention"
PREFILL_TOKENS = {"cpu": 1024}  # tokens per packed prefill forward, by device type: long enough for the matrix
PREFILL_TOKENS_DEFAULT = 8192  # products to run near full speed, short enough for the activations to stay in cache
GROUP_COST_BYTES = 2 << 20  # decoding: a group of rows costs about as much as reading this much more key/value
SMALL_ROWS = 64  # up to this many rows a linear layer runs as W·xᵀ on a CPU (measured crossover: 64-128 rows)
OUTPUT_BLOCK = 2048  # the output layer's W·xᵀ on a CPU, in blocks of this many vocabulary rows
_SPECIAL_ATTENTION = ("sliding_window", "use_sliding_window", "attn_logit_softcapping", "attention_chunk_size")


def supported(model) -> bool:
    """Whether `model` can run through this attention: a causal LM computing attention through the interface,
    taking `position_ids` and `logits_to_keep`, with plain causal attention in every layer."""
    config = model.config
    params = inspect.signature(model.forward).parameters
    if getattr(config, "is_encoder_decoder", False) or not getattr(model, "_supports_attention_backend", False):
        return False
    if "position_ids" not in params or "logits_to_keep" not in params:
        return False
    if any(getattr(config, name, None) for name in _SPECIAL_ATTENTION):
        return False
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return all(kind == "full_attention" for kind in layer_types)


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, _attention)


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The AttentionInterface function: the state passed as `prefix_attention` does the work."""
    state = kwargs.get("prefix_attention")
    if state is None:
        raise RuntimeError(f"the {IMPLEMENTATION!r} attention was called without its state")
    scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    return state.attend(module.layer_idx, query, key, value, scale).transpose(1, 2), None


def _faster_forwards(model) -> list[tuple[Any, Callable]]:
    """Modules whose computation has a faster equivalent, with it: swapped in only for this module's calls.

    - GPT-2's tanh-approximated GELU (`NewGELUActivation`, also GPT-J's and GPT-Neo's) in five in-place passes
      through a sigmoid (`_gelu_tanh`) instead of seven allocating ones through a tanh: for 1024 x 3072 activations
      on a 2-core CPU, median 4.9 ms, where the fused `gelu(approximate="tanh")` kernel takes 5.9 and the seven
      passes 18 (on one core: 9.0 vs 11.7).
    - On a CPU, the linear layers of a call with few rows (a decoding step: one token per row) as W·xᵀ with W
      stored [out, in], and the output layer so for any number of rows: for a few rows against a weight read from
      memory the BLAS runs that shape 1.3-1.6x faster than x·Wᵀ (GPT-2's output layer, 32 rows: 33 vs 58 ms); for
      many rows (a prefill) x·Wᵀ is as fast or faster and is kept. GPT-2's `Conv1D` stores its weight [in, out]:
      it runs so only after `out_in_weights`. The output layer's product goes in blocks of `OUTPUT_BLOCK`
      vocabulary rows (the same sums: bitwise the same logits): GPT-2's, 32 rows, 22-26 ms against 30-37 in one
      product of 50,257 rows; a decoding step of the generation benchmark 10-20 ms shorter (A/B in one process,
      medians 155 vs 164 and 190 vs 210 ms). Splitting the other layers' products so gained nothing measurable.
    """
    import functools

    swaps: list[tuple[Any, Callable]] = []
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for module in model.modules():
        kind = type(module).__name__
        if kind == "NewGELUActivation":
            swaps.append((module, _gelu_tanh))
        elif kind in ("Linear", "Conv1D") and module.weight.device.type == "cpu" and module.weight.dim() == 2:
            limit = None if module is head else SMALL_ROWS
            swaps.append((module, functools.partial(_few_rows_linear, module, limit)))
    return [(module, fn) for module, fn in swaps if "forward" not in vars(module)]


def _gelu_tanh(x):
    """0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), computed as x·sigmoid(2·√(2/π)·(x + 0.044715·x³)) (the same
    function: 1 + tanh(u) = 2·sigmoid(2u)); within 5e-7 of the fused kernel, as close as it to float64."""
    inner = 2.0 * math.sqrt(2.0 / math.pi)
    out = x * x
    out.mul_(inner * 0.044715).add_(inner)
    return out.mul_(x).sigmoid_().mul_(x)


def _few_rows_linear(module, rows_limit, x):
    """`module`'s output for input `x`, as W·xᵀ when `x` has at most `rows_limit` rows (None: any number, the output
    layer, in blocks of `OUTPUT_BLOCK` rows of W) and the weight is stored [out, in]; else the module's own forward."""
    import torch

    rows = x.numel() // x.shape[-1]
    weight = module.weight if type(module).__name__ == "Linear" else module.weight.t()
    if (rows_limit is not None and rows > rows_limit) or not weight.is_contiguous():
        return type(module).forward(module, x)
    flat = x.reshape(rows, x.shape[-1]).T
    out = flat.new_empty((weight.shape[0], rows))
    block = OUTPUT_BLOCK if rows_limit is None else weight.shape[0]
    for start in range(0, weight.shape[0], block):
        part = slice(start, start + block)
        if module.bias is None:
            torch.mm(weight[part], flat, out=out[part])
        else:
            torch.addmm(module.bias[part, None], weight[part], flat, out=out[part])
    # (the output layer's logits may stay transposed: copying them costs more than reading them so)
    return (out.T if rows_limit is None else out.T.contiguous()).view(*x.shape[:-1], -1)


def out_in_weights(model) -> None:
    """GPT-2's `Conv1D` weights ([in, out]) stored [out, in] from now on: same values, each module's weight the
    [in, out] view of the new storage, which its own forward accepts (x·Wᵀ, as `nn.Linear` computes): see
    `_faster_forwards`. One weight copied at a time; nothing changes for other models or off the CPU. Done once
    per model (`TransformersLM` on these models): a copy each way per call cost 0.33 s of the generation
    benchmark's 19-s call."""
    for module in model.modules():
        if type(module).__name__ == "Conv1D" and module.weight.device.type == "cpu" and module.weight.is_contiguous():
            module.weight.data = module.weight.data.t().contiguous().t()


@contextlib.contextmanager
def _switched(model, swaps):
    """The model's attention implementation set to this module's for the duration of a call (no masks are built),
    and the `swaps` (`_faster_forwards`) in place."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = IMPLEMENTATION
    for module, forward in swaps:
        module.forward = forward
    try:
        yield
    finally:
        config._attn_implementation = before
        for module, _ in swaps:
            del module.forward


def _forward(state, ids, positions, keep):
    """Logits at the `keep` positions of one forward call through `state`'s attention (no gradients: decoding)."""
    import torch

    with _switched(state.model, state.swaps), torch.no_grad():
        out = state.model(input_ids=ids, position_ids=positions, use_cache=False, logits_to_keep=keep,
                          prefix_attention=state)
    return out.logits


class PrefixAttention:
    """The shared prefix's keys and values per layer, computed once (an empty prefix is allowed)."""

    def __init__(self, model, prefix: list[int]):
        import torch

        _register()
        self.model, self.length, self.swaps = model, len(prefix), _faster_forwards(model)
        self.layers: dict[int, tuple[Any, Any]] = {}
        if prefix:
            dev = next(model.parameters()).device
            _forward(self, torch.tensor([prefix], device=dev), torch.arange(len(prefix), device=dev)[None], 1)

    def attend(self, layer: int, q, k, v, scale: float):
        import torch.nn.functional as F

        self.layers[layer] = (k.contiguous(), v.contiguous())
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=q.shape[1] != k.shape[1])

    def rows(self, rows: list[list[int]], max_new_tokens: int, prefill_tokens: int | None = None) -> Rows:
        """A batch of prompts' suffixes (the tokens after the prefix), prefilled: see `Rows`."""
        if prefill_tokens is None:
            device = next(self.model.parameters()).device.type
            prefill_tokens = PREFILL_TOKENS.get(device, PREFILL_TOKENS_DEFAULT)
        return Rows(self, rows, max_new_tokens, prefill_tokens)


class Rows:
    """A batch's own keys/values (buffers of `width + max_new_tokens` columns, right-aligned) and its decoding.

    After construction, `first` holds the logits of each row's last prompt token; `step` feeds one token per
    row and returns the next logits; `select` keeps only some rows (finished ones leave the batch).
    """

    def __init__(self, prefix: PrefixAttention, rows: list[list[int]], max_new_tokens: int, prefill_tokens: int):
        import torch

        self.prefix, self.model, self.swaps = prefix, prefix.model, prefix.swaps
        self.masks: dict[int, Any] = {}  # per suffix length: which of prefix + suffix each position may attend to
        dev = next(self.model.parameters()).device
        self.width = max(map(len, rows))
        self.capacity = self.width + max_new_tokens
        self.end = self.width  # columns [0, end) are filled
        self.starts = [self.width - len(r) for r in rows]  # each row's first column
        self.groups: list[tuple[int, int, int, bool]] | None = None  # decoding's groups of rows (`_groups`)
        starts = torch.tensor(self.starts, device=dev)
        self.padding = torch.arange(self.capacity, device=dev)[None, :] < starts[:, None]  # [rows, columns]
        self.positions = torch.tensor([prefix.length + len(r) for r in rows], device=dev)  # each row's next position
        self.keys: dict[int, Any] = {}
        self.values: dict[int, Any] = {}
        self.mode = "prefill"
        first = [None] * len(rows)
        for group in _packed(rows, prefill_tokens):
            self.segments, offset = [], 0
            for r in group:
                self.segments.append((offset, len(rows[r]), r))
                offset += len(rows[r])
            ids = torch.tensor([[t for r in group for t in rows[r]]], device=dev)
            positions = torch.cat([torch.arange(prefix.length, prefix.length + len(rows[r]), device=dev)
                                   for r in group])[None]
            keep = torch.tensor([o + n - 1 for o, n, _ in self.segments], device=dev)
            logits = _forward(self, ids, positions, keep)[0]
            for j, r in enumerate(group):
                first[r] = logits[j]
        self.first = torch.stack(first)
        self.mode, self.segments = "decode", []

    def step(self, tokens, alive):
        """Logits after feeding `tokens` (one per row still in the batch)."""
        logits = _forward(self, tokens[:, None], self.positions[:, None], 1)[:, -1]
        self.end += 1
        self.positions = self.positions + 1
        return logits

    def select(self, alive) -> None:
        """Keep only the rows at indices `alive` (a copy of their buffers)."""
        for layer in self.keys:
            self.keys[layer], self.values[layer] = self.keys[layer][alive], self.values[layer][alive]
        self.padding, self.positions = self.padding[alive], self.positions[alive]
        self.starts, self.groups = [self.starts[int(i)] for i in alive], None

    def attend(self, layer: int, q, k, v, scale: float):
        if layer not in self.keys:
            # Uninitialized but for the padding columns (masked, but their values must be finite: 0 x NaN is
            # NaN); the other columns are written before they are read.
            n, heads = len(self.padding), k.shape[1]
            self.keys[layer] = k.new_empty((n, heads, self.capacity, k.shape[3]))
            self.values[layer] = v.new_empty((n, heads, self.capacity, v.shape[3]))
            for r, start in enumerate(self.starts):
                self.keys[layer][r, :, :start] = 0
                self.values[layer][r, :, :start] = 0
        if self.mode == "prefill":
            return self._prefill(layer, q, k, v, scale)
        return self._decode(layer, q, k, v, scale)

    def _prefill(self, layer: int, q, k, v, scale: float):
        """Each packed suffix against the prefix and causally against itself; its keys/values to the buffers."""
        import torch
        import torch.nn.functional as F

        out = torch.empty_like(q)
        pk, pv = self.prefix.layers.get(layer, (None, None))
        lp, gqa = self.prefix.length, q.shape[1] != k.shape[1]
        masks = self.masks
        for offset, n, r in self.segments:
            ks, vs = k[:, :, offset : offset + n], v[:, :, offset : offset + n]
            self.keys[layer][r, :, self.width - n : self.width] = ks[0]
            self.values[layer][r, :, self.width - n : self.width] = vs[0]
            qs = q[:, :, offset : offset + n]
            if pk is None:
                o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale, enable_gqa=gqa)
            else:
                if n not in masks:  # True = may attend: the whole prefix, then causally within the suffix
                    mask = torch.ones((n, lp + n), dtype=torch.bool, device=q.device)
                    mask[:, lp:] = torch.ones((n, n), dtype=torch.bool, device=q.device).tril()
                    masks[n] = mask
                o = F.scaled_dot_product_attention(qs, torch.cat([pk, ks], dim=2), torch.cat([pv, vs], dim=2),
                                                   attn_mask=masks[n], scale=scale, enable_gqa=gqa)
            out[:, :, offset : offset + n] = o
        return out

    def _decode(self, layer: int, q, k, v, scale: float):
        """One query per row: against the shared prefix (one product per key/value head) and its own columns, the
        latter per group of rows from the group's first filled column (`_groups`: padding mostly skipped)."""
        import torch

        bk, bv = self.keys[layer], self.values[layer]
        bk[:, :, self.end] = k[:, :, 0]
        bv[:, :, self.end] = v[:, :, 0]
        end = self.end + 1
        rows, heads, _, dim = q.shape
        kv_heads = k.shape[1]
        groups = heads // kv_heads
        qg = q.reshape(rows, kv_heads, groups, dim) * scale
        pk, pv = self.prefix.layers.get(layer, (None, None))
        lp = 0 if pk is None else pk.shape[2]
        if pk is not None:
            by_head = qg.permute(1, 0, 2, 3).reshape(kv_heads, rows * groups, dim)
            shared = torch.bmm(by_head, pk[0].transpose(-1, -2))  # [kv_heads, rows * groups, lp]
            shared = shared.view(kv_heads, rows, groups, lp).permute(1, 0, 2, 3)
            p_shared = shared.new_empty((kv_heads, rows, groups, lp))
        out = q.new_empty((rows, kv_heads, groups, dim))
        if self.groups is None:
            self.groups = _groups(self.starts, GROUP_COST_BYTES // (kv_heads * dim * 2 * k.element_size()))
        for a, b, first, padded in self.groups:
            own = torch.matmul(qg[a:b], bk[a:b, :, first:end].transpose(-1, -2))  # [b - a, kv_heads, groups, cols]
            if padded:  # (`.to`: a model spread over GPUs has layers on other devices than the first)
                own.masked_fill_(self.padding[a:b, None, None, first:end].to(own.device), float("-inf"))
            probs = torch.softmax(own if pk is None else torch.cat([shared[a:b], own], dim=-1), dim=-1)
            out[a:b] = torch.matmul(probs[..., lp:], bv[a:b, :, first:end])
            if pk is not None:
                p_shared.permute(1, 0, 2, 3)[a:b] = probs[..., :lp]
        if pk is not None:
            from_prefix = torch.bmm(p_shared.view(kv_heads, rows * groups, lp), pv[0])
            out += from_prefix.view(kv_heads, rows, groups, dim).permute(1, 0, 2, 3)
        return out.reshape(rows, heads, 1, dim)


def _groups(starts: list[int], cost: int) -> list[tuple[int, int, int, bool]]:
    """Consecutive rows grouped for decoding, as (first row, end row, first column, any padding inside): the fewest
    columns computed for nothing (a row's columns before its first, from its group's first), a group costing as
    much as `cost` such columns. Rows ordered by first column (prompts by length) group best."""
    n = len(starts)
    best, cut = [0.0] + [math.inf] * n, [0] * (n + 1)
    for b in range(1, n + 1):
        low, total = math.inf, 0
        for a in range(b - 1, -1, -1):
            low, total = min(low, starts[a]), total + starts[a]
            price = best[a] + total - (b - a) * low + cost
            if price < best[b]:
                best[b], cut[b] = price, a
    out, b = [], n
    while b:
        a = cut[b]
        out.append((a, b, min(starts[a:b]), max(starts[a:b]) > min(starts[a:b])))
        b = a
    return out[::-1]


def _packed(rows: list[list[int]], budget: int) -> list[list[int]]:
    """Row indices grouped in order, each group's tokens within `budget` (a longer row goes alone)."""
    groups: list[list[int]] = []
    total = budget + 1
    for r, row in enumerate(rows):
        if total + len(row) > budget:
            groups.append([])
            total = 0
        groups[-1].append(r)
        total += len(row)
    return groups
