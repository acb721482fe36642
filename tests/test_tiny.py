"""Tests of the tiny offline checkpoints: Auto-class loading, tokenizer contracts, forward passes, determinism, ids."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.models import tiny

KINDS = ("gpt2", "t5", "bert")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The three tiny checkpoints, built once for this module."""
    root = tmp_path_factory.mktemp("tiny")
    return {kind: tiny.build_model(kind, root / kind) for kind in KINDS}


def test_folder_holds_a_full_checkpoint(built):
    expected = {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        tiny.MARKER,
    }
    for kind, folder in built.items():
        names = {p.name for p in folder.iterdir()}
        assert expected <= names, kind
        assert ("generation_config.json" in names) == (kind != "bert")


def test_gpt2_loads_tokenizes_and_runs(built):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built["gpt2"])
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == len(tok) - 1
    assert tok.pad_token is None  # as GPT-2; the harness sets pad = eos
    newline = [i for i in range(len(tok)) if "\n" in tok.decode([i])]
    assert newline, "generation stops at the first newline, so one token must decode to one"
    text = "Example 1:\nDocument: Caffeine, naïve café.\n\nRelevant Query: is it ok?"
    enc = tok(text)
    assert tok.decode(enc["input_ids"]) == text
    assert "token_type_ids" not in enc

    model = AutoModelForCausalLM.from_pretrained(built["gpt2"])
    assert model.config.n_layer == 2 and model.config.n_embd == 64 and model.config.n_positions == 1024
    assert model.generation_config.eos_token_id == tok.eos_token_id
    with torch.no_grad():
        logits = model(**tok([text], return_tensors="pt")).logits
    assert logits.shape == (1, len(enc["input_ids"]), len(tok))


def test_t5_tokenizer_has_monot5_and_flan_words(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built["t5"])
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    for word in ("true", "false", "yes", "no"):
        ids = tok(word)["input_ids"]
        assert tok.convert_ids_to_tokens(ids) == [f"▁{word}", "</s>"]
    ids = tok("Query: a b Document: c Relevant:")["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "Query: a b Document: c Relevant:"
    pair = tok("Query: a", "Document: b")["input_ids"]
    assert pair.count(tok.eos_token_id) == 2


def test_t5_forward_from_decoder_start(built):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built["t5"])
    model = AutoModelForSeq2SeqLM.from_pretrained(built["t5"])
    assert model.config.decoder_start_token_id == 0 and model.generation_config.decoder_start_token_id == 0
    assert (model.config.num_layers, model.config.num_decoder_layers, model.config.d_model) == (2, 2, 64)
    enc = tok(
        ["Query: a b Document: c Relevant:", "Query: x Document: y z Relevant:"], return_tensors="pt", padding=True
    )
    start = torch.full((2, 1), model.config.decoder_start_token_id, dtype=torch.long)
    with torch.no_grad():
        logits = model(**enc, decoder_input_ids=start).logits
    assert logits.shape == (2, 1, model.config.vocab_size)
    true_false = logits[:, 0, tok.convert_tokens_to_ids(["▁true", "▁false"])].softmax(-1)
    assert torch.allclose(true_false.sum(-1), torch.ones(2))


def test_bert_cross_encoder_pairs(built):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built["bert"])
    enc = tok("What is Caffeine?", "Caffeine is a stimulant.")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
    assert "caffeine" in tokens  # uncased
    first_sep = tokens.index("[SEP]")
    assert enc["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)

    model = AutoModelForSequenceClassification.from_pretrained(built["bert"])
    batch = tok(["q one", "q two"], ["a document", "another longer document"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 1)


def test_builds_are_byte_identical_across_processes(built, tmp_path):
    # A fresh process with another hash seed: catches any dict/set ordering leaking into the files.
    script = (
        "import sys; from pathlib import Path; from harness.models import tiny\n"
        "for kind in sys.argv[2:]: tiny.build_model(kind, Path(sys.argv[1]) / kind)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), *KINDS],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    for kind in KINDS:
        assert _hashes(tmp_path / kind) == _hashes(built[kind]), kind


def test_seed_changes_weights_only(built, tmp_path):
    other = _hashes(tiny.build_model("bert", tmp_path / "bert", seed=1))
    same = _hashes(built["bert"])
    assert other["model.safetensors"] != same["model.safetensors"]
    assert other["tokenizer.json"] == same["tokenizer.json"]


def test_build_leaves_the_callers_rng_alone(tmp_path):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.build_model("bert", tmp_path / "bert", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_tokenizers_from_custom_texts_have_the_requested_size(tmp_path):
    from transformers import AutoTokenizer

    texts = ["Straße, café and 東京: naïve résumé.", "plain words here and there"] * 3
    for kind in KINDS:
        tiny.build_tokenizer(kind, texts, tmp_path / kind, vocab_size=400)
        tok = AutoTokenizer.from_pretrained(tmp_path / kind)
        assert len(tok) == 400, kind


@pytest.mark.parametrize(
    "model_id, expected",
    [
        ("tiny:t5", ("t5", "tiny", 0)),
        ("tiny:t5-tiny@0", ("t5", "tiny", 0)),
        ("tiny:gpt2-small@1", ("gpt2", "small", 1)),
        ("tiny:bert-minilm", ("bert", "minilm", 0)),
        ("tiny:t5-base@42", ("t5", "base", 42)),
    ],
)
def test_parse_tiny_id(model_id, expected):
    assert tiny.parse_tiny_id(model_id) == expected
    assert tiny.parse_tiny_id(tiny.model_id_for(*expected)) == expected


@pytest.mark.parametrize(
    "model_id",
    [
        "t5",
        "tiny:",
        "tiny:t6",
        "tiny:T5",
        "tiny:t5-huge",
        "tiny:bert-small",
        "tiny:t5@",
        "tiny:t5@-1",
        "tiny:t5@x",
        "tiny:t5-small-base",
        "tiny:gpt2@1@2",
        " tiny:t5",
        "tiny:t5 ",
        f"tiny:t5@{2**63}",
    ],
)
def test_parse_tiny_id_rejects_malformed(model_id):
    with pytest.raises(HarnessError):
        tiny.parse_tiny_id(model_id)


def test_model_id_for_is_canonical():
    assert tiny.model_id_for("t5") == "tiny:t5"
    assert tiny.model_id_for("gpt2", "small", 1) == "tiny:gpt2-small@1"
    assert tiny.canonical_tiny_id("tiny:bert-tiny@0") == "tiny:bert"
    with pytest.raises(HarnessError, match="Did you mean"):
        tiny.model_id_for("gpt3")
    with pytest.raises(HarnessError):
        tiny.model_id_for("t5", seed=-1)


def test_materialize_builds_once_under_canonical_name(tmp_path):
    path = tiny.materialize("tiny:bert-tiny@0", tmp_path)
    assert path == tmp_path / "tiny" / "bert"
    assert json.loads((path / tiny.MARKER).read_text())["id"] == "tiny:bert"
    before = _hashes(path)
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny.materialize("tiny:bert", tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt
    assert _hashes(path) == before
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir() if not p.name.endswith(".lock")) == ["bert"]
    assert tiny.resolve_model_path("tiny:bert", tmp_path) == str(path)
    assert tiny.resolve_model_path("castorini/monot5-base-msmarco", tmp_path) == "castorini/monot5-base-msmarco"


def test_materialize_concurrent_callers_build_once(tmp_path, monkeypatch):
    calls = []
    real_build = tiny.build_model

    def counting_build(kind, out_dir, seed=0, size="tiny", texts=None):
        calls.append(kind)
        return real_build(kind, out_dir, seed=seed, size=size, texts=texts)

    monkeypatch.setattr(tiny, "build_model", counting_build)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(tiny.materialize("tiny:t5", tmp_path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["t5"]
    assert results == [tmp_path / "tiny" / "t5"] * 4


def test_materialize_rebuilds_a_stale_folder(tmp_path):
    stale = tmp_path / "tiny" / "bert"
    stale.mkdir(parents=True)
    (stale / "junk.txt").write_text("left by an older build")
    path = tiny.materialize("tiny:bert", tmp_path)
    assert path == stale and not (path / "junk.txt").exists() and (path / "model.safetensors").is_file()


def test_import_does_not_load_torch():
    code = "import sys, harness.models.tiny; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, size, shape",
    [
        ("gpt2", "small", {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257}),
        ("t5", "small", {"num_layers": 6, "d_model": 512, "d_ff": 2048, "num_heads": 8, "vocab_size": 32128}),
        (
            "bert",
            "minilm",
            {
                "num_hidden_layers": 6,
                "hidden_size": 384,
                "num_attention_heads": 12,
                "intermediate_size": 1536,
                "vocab_size": 30522,
            },
        ),
    ],
)
def test_realistic_shapes(tmp_path, kind, size, shape):
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = tiny.build_model(kind, tmp_path / kind, size=size)
    config = AutoConfig.from_pretrained(folder)
    assert {k: getattr(config, k) for k in shape} == shape
    tok = AutoTokenizer.from_pretrained(folder)
    assert len(tok) == (32100 if kind == "t5" else shape["vocab_size"])
    model = AutoModel.from_pretrained(folder)
    enc = tok(["a short query"], return_tensors="pt")
    extra = {"decoder_input_ids": torch.zeros((1, 1), dtype=torch.long)} if kind == "t5" else {}
    with torch.no_grad():
        model(**enc, **extra)
