"""Rerankers: monoT5, FLAN-T5 and encoder-only cross-encoders, with their input templates, truncation and scoring.

The one place where a (query, document) pair becomes model input: the `train` stage encodes its examples
with `encode_pairs` and the `rerank` and `filter` stages score with `Reranker.score`, so training and
scoring always see the same text, the same truncation and the same relevance tokens.

- monoT5: `Query: {q} Document: {d} Relevant:`, P(true) = softmax over the logits of `▁true`/`▁false` at the
  first decoder step: transformers' own T5 forward with one decoder start token (one encoder pass and one
  decoder step), never `generate`.
- FLAN-T5: `Is the following passage relevant to the query?\\nQuery: {q}\\nPassage: {d}`, P(yes) over yes/no.
- cross-encoder (BERT, MiniLM, DeBERTa...): `[CLS] q [SEP] d [SEP]`, one logit.

Truncation only ever shortens the document (and a query longer than a quarter of the budget), so the
`Relevant:` suffix and the end-of-sequence token always survive; the authors' GPU script truncated the
whole string to 300 tokens, which can cut `Relevant:` off. Scoring sorts pairs by length and pads each
batch to its longest member only (the authors' loop pads unsorted batches of 16: about half the tokens
are padding on BEIR-like lengths).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

KINDS = ("monot5", "flan-t5", "cross-encoder")
TEMPLATES = {
    "monot5": "Query: {query} Document: {document} Relevant:",
    "flan-t5": "Is the following passage relevant to the query?\nQuery: {query}\nPassage: {document}",
}
# The words whose first-step logits give the relevance probability, and the training targets.
TARGET_WORDS = {"monot5": ("true", "false"), "flan-t5": ("yes", "no")}
# Written next to a trained model by the `train` stage, so that loading needs no `kind`.
MARKER = "harness_reranker.json"
_ENCODER_ONLY = {"bert", "roberta", "xlm-roberta", "deberta", "deberta-v2", "electra", "distilbert", "albert",
                 "mpnet", "modernbert"}


# --------------------------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Encoded:
    """One pair as token ids (and segment ids for cross-encoders that use them)."""

    input_ids: list[int]
    token_type_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def _cut(tokenizer, text: str, n_tokens: int) -> str:
    """The prefix of `text` that holds its first `n_tokens` tokens (whole words for slow tokenizers)."""
    if n_tokens <= 0:
        return ""
    if tokenizer.is_fast:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return text if n_tokens >= len(offsets) else text[: offsets[n_tokens - 1][1]]
    words = text.split()
    n_ids = len(tokenizer(text, add_special_tokens=False)["input_ids"]) or 1
    return " ".join(words[: max(0, len(words) * n_tokens // n_ids)])


def _fit_template(tokenizer, template: str, query: str, doc: str, max_length: int, ids: list[int]) -> list[int]:
    """Token ids of the filled template within `max_length`, shortening the document (never the suffix)."""
    n_query = len(tokenizer(query, add_special_tokens=False)["input_ids"])
    if n_query > max_length // 4:  # a runaway query would leave no room for the document
        query = _cut(tokenizer, query, max_length // 4)
        ids = tokenizer(template.format(query=query, document=doc), verbose=False)["input_ids"]
    keep = len(tokenizer(doc, add_special_tokens=False, verbose=False)["input_ids"])
    while len(ids) > max_length and keep > 0:
        keep = max(0, keep - (len(ids) - max_length))
        ids = tokenizer(template.format(query=query, document=_cut(tokenizer, doc, keep)), verbose=False)["input_ids"]
    if len(ids) > max_length:  # the template alone is too long: keep its end (suffix and eos)
        ids = ids[len(ids) - max_length :]
    return ids


def encode_pairs(tokenizer, kind: str, queries: Sequence[str], docs: Sequence[str],
                 max_length: int = 512) -> list[Encoded]:
    """Token ids for each (query, document) pair as the reranker of `kind` reads them, at most `max_length`."""
    if len(queries) != len(docs):
        raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
    if kind == "cross-encoder":
        enc = tokenizer(list(queries), list(docs), truncation="longest_first", max_length=max_length)
        types = enc.get("token_type_ids")
        return [Encoded(ids, types[i] if types is not None else None) for i, ids in enumerate(enc["input_ids"])]
    template = TEMPLATES[_check_kind(kind)]
    texts = [template.format(query=q, document=d) for q, d in zip(queries, docs, strict=True)]
    out = []
    for i, ids in enumerate(tokenizer(texts, verbose=False)["input_ids"]):
        if len(ids) > max_length:
            ids = _fit_template(tokenizer, template, queries[i], docs[i], max_length, ids)
        out.append(Encoded(ids))
    return out


def relevance_token_ids(tokenizer, kind: str) -> tuple[int, int]:
    """The ids of the (relevant, not relevant) words, e.g. `▁true`/`▁false`, found through the tokenizer."""
    ids = []
    for word in TARGET_WORDS[_check_kind(kind)]:
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
            raise HarnessError(
                f"The tokenizer has no single token for {word!r} (got {pieces}): it cannot be a {kind} reranker."
            )
        ids.append(pieces[0])
    return ids[0], ids[1]


def target_ids(tokenizer, kind: str) -> tuple[list[int], list[int]]:
    """The decoder targets of a relevant and a non-relevant example (the word and end-of-sequence)."""
    pos, neg = TARGET_WORDS[_check_kind(kind)]
    return tokenizer(pos)["input_ids"], tokenizer(neg)["input_ids"]


def collate(batch: Sequence[Encoded], pad_id: int, device="cpu") -> dict:
    """Right-padded tensors (input_ids, attention_mask[, token_type_ids]) for a batch."""
    import torch

    width = max(len(e) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, : len(e)] = torch.tensor(e.input_ids)
        mask[row, : len(e)] = 1
    out = {"input_ids": _to_device(ids, device), "attention_mask": _to_device(mask, device)}
    if batch[0].token_type_ids is not None:
        types = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            types[row, : len(e)] = torch.tensor(e.token_type_ids)
        out["token_type_ids"] = _to_device(types, device)
    return out


def _to_device(tensor, device):
    """`tensor` on `device`; to a GPU through pinned memory without waiting, so the host prepares the next batch
    while the GPU still computes this one (a copy from pageable memory would wait for the queued work)."""
    import torch

    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so that little padding is computed."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------------------------- models


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise HarnessError(f"Unknown reranker kind {kind!r}; use one of {', '.join(KINDS)}.")
    return kind


def detect_kind(model_path: Path, tokenizer=None) -> str:
    """monot5, flan-t5 or cross-encoder, from the harness marker, else the checkpoint's config and tokenizer."""
    from transformers import AutoConfig

    marker = Path(model_path) / MARKER
    if marker.is_file():
        return _check_kind(json.loads(marker.read_text())["kind"])
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=False)
    if config.is_encoder_decoder:
        name = f"{getattr(config, 'name_or_path', '')} {getattr(config, '_name_or_path', '')} {model_path}".lower()
        if "flan" in name:
            return "flan-t5"
        if tokenizer is not None:
            vocab = tokenizer.get_vocab()
            if "▁true" not in vocab and "▁yes" in vocab:
                return "flan-t5"
        return "monot5"
    archs = " ".join(config.architectures or [])
    if "SequenceClassification" in archs or config.model_type in _ENCODER_ONLY:
        return "cross-encoder"
    raise HarnessError(
        f"Cannot tell which reranker {model_path} is (model type {config.model_type!r}, architectures {archs!r}): "
        f"set `kind` to one of {', '.join(KINDS)}."
    )


def load_cross_encoder_model(path: Path, dtype: str = "float32", num_labels: int | None = None, device="cpu"):
    """A sequence-classification model; `num_labels=1` adds (or replaces) a one-logit head for training."""
    from harness.models.loading import load_model

    extra = {"num_labels": num_labels, "ignore_mismatched_sizes": True} if num_labels is not None else {}
    return load_model("classifier", Path(path), device=device, dtype=dtype, **extra)


class Reranker:
    """A loaded reranker: `score(queries, docs)` → one relevance score per pair (higher is more relevant)."""

    def __init__(self, model, tokenizer, kind: str, *, device="cpu", batch_size=32, max_length=512):
        self.model, self.tokenizer, self.kind = model, tokenizer, _check_kind(kind)
        self.device, self.batch_size, self.max_length = device, batch_size, max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if kind != "cross-encoder":
            self.token_ids = list(relevance_token_ids(tokenizer, kind))
            start = model.config.decoder_start_token_id
            self.decoder_start = self.pad_id if start is None else start

    def encode(self, queries: Sequence[str], docs: Sequence[str]) -> list[Encoded]:
        return encode_pairs(self.tokenizer, self.kind, queries, docs, self.max_length)

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> list[float]:
        """Relevance of each (query, document) pair: P(true) (monoT5), P(yes) (FLAN-T5) or the logit."""
        return self.score_encoded(self.encode(queries, docs))

    def score_encoded(self, encoded: Sequence[Encoded]) -> list[float]:
        """Scores of pre-encoded pairs, batched by length; the result follows the input order."""
        import torch

        if not encoded:
            return []
        batches = length_batches([len(e) for e in encoded], self.batch_size)
        with torch.inference_mode():  # the scores stay on the device until the end: one transfer, not one per batch
            values = torch.cat([self.score_batch(collate([encoded[i] for i in batch], self.pad_id, self.device))
                                for batch in batches]).tolist()
        scores = [0.0] * len(encoded)
        for i, value in zip((i for batch in batches for i in batch), values, strict=True):
            scores[i] = value
        return scores

    def score_batch(self, inputs: dict):
        """Scores (a float32 tensor) of one padded batch."""
        import torch

        if self.kind == "cross-encoder":
            logits = self.model(**inputs).logits.float()
            # One logit, or two (not relevant, relevant): the log-odds of relevance.
            return logits[:, 0] if logits.shape[1] == 1 else logits[:, -1] - logits[:, 0]
        ids = inputs["input_ids"]
        start = torch.full((ids.shape[0], 1), self.decoder_start, dtype=torch.long, device=ids.device)
        logits = self.model(
            input_ids=ids, attention_mask=inputs["attention_mask"], decoder_input_ids=start, use_cache=False
        ).logits[:, 0, self.token_ids]
        return torch.softmax(logits.float(), dim=-1)[:, 0]


def load_reranker(
    model_path: Path, kind: str | None = None, *, device="cpu", dtype="float32", batch_size=32, max_length=512
) -> Reranker:
    """A reranker from a checkpoint folder; `kind` None detects it (see `detect_kind`)."""
    from harness.models.loading import load_model, load_tokenizer

    model_path = Path(model_path)
    tokenizer = load_tokenizer(model_path)
    kind = _check_kind(kind) if kind else detect_kind(model_path, tokenizer)
    if kind == "cross-encoder":
        model = load_cross_encoder_model(model_path, dtype, device=device)
    else:
        model = load_model("seq2seq", model_path, device=device, dtype=dtype)
    return Reranker(model, tokenizer, kind, device=device, batch_size=batch_size, max_length=max_length)
