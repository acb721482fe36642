"""Tiny deterministic stand-in checkpoints (GPT-2, T5/monoT5, BERT cross-encoder) built offline for tests and CI.

The folders written here are ordinary transformers checkpoints (config.json, model.safetensors, tokenizer files),
so the harness loads them with `AutoTokenizer` / `AutoModelFor*.from_pretrained` exactly like Hub models.
Recipes name them `tiny:<kind>[-<size>][@seed]`, e.g. `tiny:t5`, `tiny:gpt2-small@1`; `materialize` builds one
once under a cache root. Weights are random (from `torch.manual_seed(seed)`), so scores are meaningless but the
shapes, vocabularies and compute costs are realistic.

Tokenizers are trained with the `tokenizers` BPE trainer only: its output is deterministic, whereas the Unigram
and WordPiece trainers order ties by Rust hash-map iteration and differ from process to process. The T5 Unigram
and BERT WordPiece vocabularies are therefore derived from a BPE run. When the training text is too small to
fill the requested vocabulary, the rest is padded with filler tokens (pseudo-words, or `[unusedN]` for BERT) so
that every id a model can emit decodes to something and the vocabulary has its real size.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, close_matches

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

TINY_PREFIX = "tiny:"
BUILD_VERSION = 2  # bump when a change here alters the bytes of a built folder, so caches rebuild
MARKER = "tiny_model.json"  # written last into a built folder: what was built, by which BUILD_VERSION

KINDS = ("gpt2", "t5", "bert")
DEFAULT_VOCAB_SIZE = 1024

# Shapes per kind and size; the non-tiny ones are the real checkpoints' shapes.
SHAPES: dict[str, dict[str, dict]] = {
    "gpt2": {
        "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": DEFAULT_VOCAB_SIZE},
        "small": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257},  # gpt2
    },
    "t5": {
        "tiny": {
            "num_layers": 2,
            "d_model": 64,
            "d_ff": 128,
            "num_heads": 4,
            "d_kv": 16,
            "vocab_size": DEFAULT_VOCAB_SIZE,
            "tokenizer_size": DEFAULT_VOCAB_SIZE,
            "extra_ids": 0,
        },
        # t5-small / t5-base (monoT5's backbones): 32100 tokens (32000 pieces + 100 sentinels), 32128 embeddings.
        "small": {
            "num_layers": 6,
            "d_model": 512,
            "d_ff": 2048,
            "num_heads": 8,
            "d_kv": 64,
            "vocab_size": 32128,
            "tokenizer_size": 32100,
            "extra_ids": 100,
        },
        "base": {
            "num_layers": 12,
            "d_model": 768,
            "d_ff": 3072,
            "num_heads": 12,
            "d_kv": 64,
            "vocab_size": 32128,
            "tokenizer_size": 32100,
            "extra_ids": 100,
        },
    },
    "bert": {
        "tiny": {
            "num_hidden_layers": 2,
            "hidden_size": 64,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "vocab_size": DEFAULT_VOCAB_SIZE,
        },
        # cross-encoder/ms-marco-MiniLM-L-6-v2
        "minilm": {
            "num_hidden_layers": 6,
            "hidden_size": 384,
            "num_attention_heads": 12,
            "intermediate_size": 1536,
            "vocab_size": 30522,
        },
    },
}

# Words monoT5 (true/false) and FLAN-T5 (yes/no) read the relevance logits of: must be single tokens.
T5_REQUIRED_WORDS = ("▁true", "▁false", "▁yes", "▁no")
_PRINTABLE = [chr(c) for c in range(33, 127)]

# A fixed English sample (InPars/monoT5 prompt words, BEIR-like topics, newlines) for training tokenizers offline.
BUILTIN_TEXT = """\
Example 1:
Document: We don't know a lot about the effects of caffeine during pregnancy on you and your baby. So it's best to \
limit the amount you get each day.
Relevant Query: Is a little caffeine ok during pregnancy?

Example 2:
Document: Famous for its mild, subtle flavor and smooth texture, the Mahi Mahi fish is found in warm tropical waters.
Relevant Query: What fish is mild, flaky and found in warm waters?

Example 3:
Document: Information retrieval is the task of finding documents that satisfy an information need from within \
large collections. Search engines rank passages by their relevance to a query.
Good Question: How do search engines decide which documents are relevant?
Bad Question: What is a search engine?

Query: effects of vitamin D on bone density Document: Vitamin D helps the body absorb calcium, and low levels \
are linked to weaker bones in older adults. Relevant: true
Query: stock market crash 1929 Document: The recipe calls for two cups of flour, one egg and a pinch of salt. \
Relevant: false
Question: Does this passage answer the question? Answer yes or no. Answer: yes
Question: Is the claim supported by the evidence? Answer: no

The coronavirus disease spread quickly across many countries in 2020, and researchers studied how the virus \
infects human cells, which treatments reduce mortality, and whether masks lower transmission in hospitals.
A randomized controlled trial enrolled 1,204 patients; the primary outcome was survival after 28 days.
Scientific claims are verified against abstracts: each claim is either supported, refuted, or lacks evidence.
Nutrition studies report that diets rich in fiber, vegetables and whole grains are associated with lower risk \
of heart disease, diabetes and some cancers.
Financial questions often ask about taxes, retirement accounts, mortgages, interest rates, and how to invest \
savings without taking too much risk.
An argument can be countered by a second argument that attacks its premises or its conclusion.
Duplicate questions on forums are detected by comparing the meaning of two short texts.
The model reads the query and the document together, then predicts a single word: true or false.
Synthetic training data is generated by prompting a large language model with a few examples and a new \
document; the model writes a question that the document answers.
The generated pairs are filtered by their log probability, or by a reranker that keeps the top ten thousand.
Finally, a smaller model is fine-tuned on the synthetic pairs and evaluated with nDCG at ten on the test set.
Climate change affects temperature, rainfall, sea level and the frequency of extreme weather events.
Entity pages describe people, places, organizations and events, with links between related entities.
What is the capital of France? Paris is the capital and largest city of France.
Who wrote the theory of relativity? Albert Einstein published the special theory of relativity in 1905.
How many bones are in the human body? An adult human skeleton has 206 bones.
Why is the sky blue? Sunlight is scattered by molecules in the air, and blue light is scattered more.
When did the first moon landing happen? Apollo 11 landed on the Moon on July 20, 1969.
Where do penguins live? Most penguins live in the Southern Hemisphere, especially in Antarctica.
"""


# ---------------------------------------------------------------------------------------------------- ids


def parse_tiny_id(model_id: str) -> tuple[str, str, int]:
    """`tiny:<kind>[-<size>][@seed]` -> (kind, size, seed); a HarnessError naming the fix when malformed."""
    if not isinstance(model_id, str) or not model_id.startswith(TINY_PREFIX):
        raise HarnessError(f"Model id {model_id!r} is not a tiny model id; expected 'tiny:<kind>[-<size>][@seed]'.")
    rest = model_id[len(TINY_PREFIX) :]
    match = re.fullmatch(r"([a-z0-9]+)(?:-([a-z0-9]+))?(?:@([0-9]+))?", rest)
    if match is None:
        raise HarnessError(
            f"Tiny model id {model_id!r} is malformed; expected 'tiny:<kind>[-<size>][@seed]', e.g. 'tiny:t5' "
            "or 'tiny:gpt2-small@1'."
        )
    kind, size, seed = match.group(1), match.group(2) or "tiny", match.group(3)
    if kind not in SHAPES:
        raise HarnessError(
            f"Tiny model id {model_id!r} has unknown kind {kind!r}; use one of {', '.join(KINDS)}."
            + close_matches(kind, KINDS)
        )
    if size not in SHAPES[kind]:
        raise HarnessError(
            f"Tiny model id {model_id!r} has unknown size {size!r} for {kind}; use one of "
            f"{', '.join(SHAPES[kind])}." + close_matches(size, SHAPES[kind])
        )
    seed_value = int(seed) if seed is not None else 0
    if seed_value >= 2**63:  # torch.manual_seed's range
        raise HarnessError(f"Tiny model id {model_id!r} has a seed too large; use a seed below 2**63.")
    return kind, size, seed_value


def is_tiny_id(model_id: str) -> bool:
    """Whether a model name refers to a tiny model (`tiny:` prefix), rather than a Hub id or a folder."""
    return isinstance(model_id, str) and model_id.startswith(TINY_PREFIX)


def model_id_for(kind: str, size: str = "tiny", seed: int = 0) -> str:
    """The canonical (shortest) id: size omitted when 'tiny', seed omitted when 0."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise HarnessError(f"Tiny model seed must be a non-negative integer; got {seed!r}.")
    canonical = f"{TINY_PREFIX}{kind}" + (f"-{size}" if size != "tiny" else "") + (f"@{seed}" if seed else "")
    parse_tiny_id(canonical)  # validates kind, size and seed
    return canonical


def canonical_tiny_id(model_id: str) -> str:
    """The canonical form of any spelling of a tiny id (`tiny:t5-tiny@0` -> `tiny:t5`)."""
    return model_id_for(*parse_tiny_id(model_id))


# ---------------------------------------------------------------------------------------------------- tokenizers


def _filler_words() -> Iterator[str]:
    """Deterministic pronounceable pseudo-words ('bada', 'bade', ...) to pad a vocabulary to its real size."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    syllables = [c + v for c in consonants for v in vowels]  # 70
    n = len(syllables)
    index = n  # start at two syllables
    while True:
        digits, i = [], index
        while i:
            i, r = divmod(i, n)
            digits.append(syllables[r])
        yield "".join(reversed(digits))
        index += 1


def _fillers(prefix: str, taken: Iterable[str], count: int) -> list[str]:
    """`count` filler tokens `prefix + pseudo-word` not in `taken`."""
    taken = set(taken)
    out: list[str] = []
    for word in _filler_words():
        if len(out) == count:
            return out
        token = prefix + word
        if token not in taken:
            out.append(token)
    raise AssertionError("unreachable")  # the generator is infinite


def _train_bpe(tok: Tokenizer, texts: list[str], vocab_size: int, **trainer_kwargs) -> dict:
    """Train `tok` (a BPE tokenizer) in place and return its JSON as a dict."""
    from tokenizers import trainers

    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, **trainer_kwargs)
    tok.train_from_iterator(texts, trainer=trainer)
    return json.loads(tok.to_str())


def _vocab_by_id(vocab: dict[str, int]) -> list[str]:
    return [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]


def _gpt2_tokenizer(texts: list[str], vocab_size: int) -> tuple[Tokenizer, dict]:
    """Byte-level BPE like GPT-2: every byte is a token (so '\\n' is 'Ċ'), `<|endoftext|>` is the last id."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    def pipeline(tok: Tokenizer) -> Tokenizer:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return tok

    eos = "<|endoftext|>"
    data = _train_bpe(
        pipeline(Tokenizer(models.BPE())), texts, vocab_size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokens = _vocab_by_id(data["model"]["vocab"])
    tokens += _fillers("Ġ", tokens, vocab_size - 1 - len(tokens))  # 'Ġ' is the byte-level space
    tokens.append(eos)  # id vocab_size-1, as GPT-2's 50256
    pairs = (m.split(" ", 1) if isinstance(m, str) else m for m in data["model"]["merges"])
    merges = [(first, second) for first, second in pairs]
    tok = pipeline(Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)))
    tok.add_special_tokens([AddedToken(eos, special=True, normalized=False)])
    config = {
        "model_max_length": 1024,
        "model_input_names": ["input_ids", "attention_mask"],
        "add_prefix_space": False,
        "special": {"bos_token": eos, "eos_token": eos, "unk_token": eos},  # as GPT-2: no pad token
    }
    return tok, config


def _t5_tokenizer(texts: list[str], vocab_size: int, extra_ids: int) -> tuple[Tokenizer, dict]:
    """SentencePiece-like Unigram with Metaspace like T5; pieces from a BPE run, scores from their frequencies."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    def pipeline(tok: Tokenizer) -> Tokenizer:
        # T5's own normalizer is a precompiled nmt_nfkc charsmap; NFKC plus space folding is its portable core.
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
        )
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        return tok

    specials = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5
    n_pieces = vocab_size - extra_ids
    bpe = pipeline(Tokenizer(models.BPE(unk_token="<unk>")))
    # Leave room for the required whole words, which the BPE run may not have learned.
    data = _train_bpe(
        bpe, texts, n_pieces - len(T5_REQUIRED_WORDS), special_tokens=specials, initial_alphabet=_PRINTABLE
    )
    pieces = _vocab_by_id(data["model"]["vocab"])[len(specials) :]

    # One EM-like step: a piece's score is the log of its smoothed frequency in the BPE segmentation of the text.
    counts = Counter(token for enc in bpe.encode_batch(texts, add_special_tokens=False) for token in enc.tokens)
    total = sum(counts.values()) + len(pieces)
    scores = {p: math.log((counts[p] + 1) / total) for p in pieces}
    top = max(scores.values())
    for word in T5_REQUIRED_WORDS:  # as likely as the likeliest piece, so 'true' is never split
        if word not in scores:
            pieces.append(word)
        scores[word] = top
    vocab = [(s, 0.0) for s in specials] + [(p, scores[p]) for p in pieces]
    # Fillers score far below any real segmentation of a word, so they never change how text is split.
    vocab += [(f, -100.0) for f in _fillers("▁", pieces, n_pieces - len(vocab))]
    sentinels = [f"<extra_id_{i}>" for i in reversed(range(extra_ids))]  # T5: the last id is <extra_id_0>
    vocab += [(s, 0.0) for s in sentinels]

    tok = pipeline(Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False)))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials + sentinels])
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    config: dict[str, Any] = {
        "model_max_length": 512,
        "model_input_names": ["input_ids", "attention_mask"],
        "special": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    }
    if sentinels:
        config["special"]["additional_special_tokens"] = sentinels
        config["extra_ids"] = extra_ids
    return tok, config


def _bert_tokenizer(texts: list[str], vocab_size: int) -> tuple[Tokenizer, dict]:
    """Uncased WordPiece like bert-base-uncased, its pieces from a BPE run that marks word starts with '▁'."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    def pipeline(tok: Tokenizer) -> Tokenizer:
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        return tok

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # The BPE trainer's own continuing_subword_prefix is not deterministic, so words get a '▁' start marker
    # instead (as SentencePiece): '▁abc' becomes the word-initial 'abc', a bare 'abc' the continuation '##abc'.
    bpe = pipeline(Tokenizer(models.BPE(unk_token="[UNK]")))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    # Every lowercase printable character, word-initial and as a continuation, so no ASCII word is [UNK].
    alphabet = [c for c in _PRINTABLE if not c.isupper()]
    singles = alphabet + [f"##{c}" for c in alphabet]
    data = _train_bpe(bpe, texts, vocab_size - len(singles), special_tokens=specials, initial_alphabet=alphabet)
    tokens: dict[str, None] = {}  # an ordered set
    for piece in _vocab_by_id(data["model"]["vocab"]):
        if piece in specials:
            tokens[piece] = None
        elif piece.startswith("▁"):
            if len(piece) > 1:
                tokens[piece[1:]] = None
        else:
            tokens[f"##{piece}"] = None
    tokens.update(dict.fromkeys(singles))
    vocab = list(tokens)
    vocab += [f"[unused{i}]" for i in range(vocab_size - len(vocab))]  # BERT's own kind of filler
    ids = {t: i for i, t in enumerate(vocab)}
    tok = pipeline(Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]", max_input_chars_per_word=100)))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    config = {
        "model_max_length": 512,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "do_lower_case": True,
        "special": {
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        },
    }
    return tok, config


def _write_json(path: Path, value: dict) -> None:
    # Sorted keys and a fixed layout: byte-identical files for identical content.
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def build_tokenizer(
    kind: str,
    texts: Iterable[str] | None,
    out_dir: Path,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    *,
    extra_ids: int = 0,
) -> Path:
    """Train a `kind` tokenizer ('gpt2', 't5', 'bert') on `texts` (None: a built-in English sample) into `out_dir`.

    Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json, loadable with
    `AutoTokenizer.from_pretrained(out_dir)` as a fast tokenizer; the vocabulary has exactly `vocab_size` tokens
    (for t5 including `extra_ids` `<extra_id_N>` sentinels). Returns `out_dir`.
    """
    if texts is None:
        from harness.data.sample import vocabulary_text

        corpus = [BUILTIN_TEXT, vocabulary_text()]  # the bundled sample's words, for the smoke recipe
    else:
        corpus = list(texts)
    minimum = {  # the alphabet and special tokens, which every vocabulary holds
        "gpt2": 256 + 1,
        "t5": 3 + len(_PRINTABLE) + len(T5_REQUIRED_WORDS) + extra_ids,
        "bert": 5 + 2 * len(_PRINTABLE),
    }
    if kind not in minimum:
        raise HarnessError(
            f"Unknown tiny tokenizer kind {kind!r}; use one of {', '.join(KINDS)}." + close_matches(kind, KINDS)
        )
    if extra_ids and kind != "t5":
        raise HarnessError(f"extra_ids is a T5 feature; got extra_ids={extra_ids} for {kind!r}.")
    if vocab_size < minimum[kind] + 32:  # room for the alphabet plus a few merges
        raise HarnessError(
            f"vocab_size {vocab_size} is too small for a {kind} tokenizer; use at least {minimum[kind] + 32}."
        )

    if kind == "gpt2":
        tok, config = _gpt2_tokenizer(corpus, vocab_size)
    elif kind == "t5":
        tok, config = _t5_tokenizer(corpus, vocab_size, extra_ids)
    else:
        tok, config = _bert_tokenizer(corpus, vocab_size)
    assert tok.get_vocab_size(with_added_tokens=True) == vocab_size, (kind, tok.get_vocab_size(), vocab_size)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
    special = config.pop("special")
    # 'PreTrainedTokenizerFast' makes AutoTokenizer load tokenizer.json as is (transformers 4 and 5) instead of
    # rebuilding a GPT2/T5/Bert tokenizer from vocab files that don't exist here.
    _write_json(
        out_dir / "tokenizer_config.json",
        {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, **config, **special},
    )
    _write_json(out_dir / "special_tokens_map.json", special)
    return out_dir


# ---------------------------------------------------------------------------------------------------- models


def _model(kind: str, size: str, vocab_size: int):
    """A randomly initialised model of `kind` and `size`, drawing from torch's global RNG."""
    shape = dict(SHAPES[kind][size])
    shape.pop("tokenizer_size", None)
    shape.pop("extra_ids", None)
    shape["vocab_size"] = vocab_size
    if kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        eos = vocab_size - 1
        return GPT2LMHeadModel(GPT2Config(n_positions=1024, bos_token_id=eos, eos_token_id=eos, **shape))
    if kind == "t5":
        from transformers import T5Config, T5ForConditionalGeneration

        layers = shape.pop("num_layers")
        # Keywords every PreTrainedConfig takes, beyond the fields T5Config declares.
        common: dict[str, Any] = {"tie_word_embeddings": True, "decoder_start_token_id": 0}
        config = T5Config(
            num_layers=layers,
            num_decoder_layers=layers,
            feed_forward_proj="relu",  # T5 v1.0, monoT5's base
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
            pad_token_id=0,
            eos_token_id=1,
            is_encoder_decoder=True,
            **common,
            **shape,
        )
        return T5ForConditionalGeneration(config)
    from transformers import BertConfig, BertForSequenceClassification

    labels: dict[str, Any] = {"num_labels": 1}  # a PreTrainedConfig keyword, not a declared BertConfig field
    bert = BertConfig(max_position_embeddings=512, type_vocab_size=2, pad_token_id=0, **labels, **shape)
    return BertForSequenceClassification(bert)


def _generation_config(kind: str, eos: int):
    from transformers import GenerationConfig

    if kind == "gpt2":  # GPT-2 has no pad token; the harness pads with eos, so say so to silence the warning
        return GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    return GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)


def _save_quietly(model, out_dir: Path) -> None:
    """`save_pretrained` without its 'Writing model shards' progress bar (noise in test and CI logs)."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        model.save_pretrained(out_dir)
    finally:
        if enabled:
            logging.enable_progress_bar()


def build_model(
    kind: str, out_dir: Path, seed: int = 0, size: str = "tiny", texts: Iterable[str] | None = None
) -> Path:
    """Write a full checkpoint folder (config, safetensors weights, tokenizer) for `kind`/`size` into `out_dir`.

    Weights are random from `torch.manual_seed(seed)` (the caller's RNG state is left untouched); the same
    arguments give byte-identical files. Returns `out_dir`.
    """
    model_id_for(kind, size, seed)  # validates the arguments with a readable error
    import torch

    out_dir = Path(out_dir)
    shape = SHAPES[kind][size]
    tokenizer_size = shape.get("tokenizer_size", shape["vocab_size"])
    build_tokenizer(kind, texts, out_dir, tokenizer_size, extra_ids=shape.get("extra_ids", 0))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _model(kind, size, shape["vocab_size"])
    model.eval()
    if kind in ("gpt2", "t5"):
        model.generation_config = _generation_config(kind, tokenizer_size - 1)
    _save_quietly(model, out_dir)
    _write_json(
        out_dir / MARKER,
        {
            "id": model_id_for(kind, size, seed),
            "kind": kind,
            "size": size,
            "seed": seed,
            "build_version": BUILD_VERSION,
            "builtin_text": texts is None,
        },
    )
    return out_dir


# ---------------------------------------------------------------------------------------------------- cache


def _is_built(path: Path) -> bool:
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("build_version") == BUILD_VERSION


def materialize(model_id: str, cache_root: Path) -> Path:
    """Build the tiny model `model_id` once under `cache_root/tiny/<canonical id without 'tiny:'>/`; its path.

    Concurrent callers (threads or processes) are serialised by a file lock; the folder appears atomically
    (built in a temporary folder beside it, then renamed), so a reader never sees a partial checkpoint.
    """
    from filelock import FileLock

    kind, size, seed = parse_tiny_id(model_id)
    name = model_id_for(kind, size, seed)[len(TINY_PREFIX) :]
    root = Path(cache_root) / "tiny"
    final = root / name
    if _is_built(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{name}.lock")):
        if _is_built(final):  # another process built it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary shared folder
        try:
            build_model(kind, tmp, seed=seed, size=size)
            if final.exists():  # a build from an older BUILD_VERSION, or a broken one: move it aside first
                stale = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".stale", dir=root))
                os.replace(final, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_model_path(model_id: str, cache_root: Path) -> str:
    """A name `from_pretrained` accepts: the built folder for a `tiny:` id, else `model_id` unchanged."""
    return str(materialize(model_id, cache_root)) if is_tiny_id(model_id) else model_id
