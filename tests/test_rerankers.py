"""Rerankers: templates and truncation, relevance tokens, batched scoring equal to one pair at a time."""

from __future__ import annotations

import pytest

from harness.models import rerankers

QUERIES = ["what does caffeine do in pregnancy", "how do bees make honey", "volcano ash", "tides"]
DOCS = [
    "Caffeine crosses the placenta; limit intake to 200 milligrams a day.",
    "Bees collect nectar and turn it into honey in the hive. " * 6,
    "Ash from a volcano eruption travels far. " * 40,  # longer than max_length below: truncated
    "The moon's gravity drives ocean tides.",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from harness.models.tiny import materialize

    root = tmp_path_factory.getbasetemp() / "tiny-models"  # one build per session, shared by test modules
    return {kind: materialize(f"tiny:{kind}", root) for kind in ("t5", "bert")}


def test_monot5_input_is_the_template_and_truncation_keeps_the_suffix(models):
    reranker = rerankers.load_reranker(models["t5"], max_length=64)
    tok = reranker.tokenizer
    short, long = reranker.encode([QUERIES[0], QUERIES[2]], [DOCS[0], DOCS[2]])
    assert short.input_ids == tok(f"Query: {QUERIES[0]} Document: {DOCS[0]} Relevant:")["input_ids"]
    suffix = tok("Relevant:", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(long) <= 64 and long.input_ids[-len(suffix):] == suffix
    text = tok.decode(long.input_ids, skip_special_tokens=True)
    assert text.startswith(f"Query: {QUERIES[2]} Document: Ash from a volcano") and text.endswith("Relevant:")
    assert len(long) >= 64 - 4  # the document is cut close to the limit, not far below it


def test_flan_template_and_a_runaway_query_are_truncated_too(models):
    tok = rerankers.load_reranker(models["t5"]).tokenizer
    flan = rerankers.encode_pairs(tok, "flan-t5", ["bees " * 300], [DOCS[1]], max_length=48)[0]
    text = tok.decode(flan.input_ids, skip_special_tokens=True)
    assert len(flan) <= 48 and text.startswith("Is the following passage relevant to the query?")
    assert "Passage:" in text  # the query was shortened, the template kept


def test_relevance_tokens_are_found_through_the_tokenizer(models):
    reranker = rerankers.load_reranker(models["t5"])
    assert reranker.kind == "monot5"
    assert reranker.tokenizer.convert_ids_to_tokens(reranker.token_ids) == ["▁true", "▁false"]
    yes, no = rerankers.relevance_token_ids(reranker.tokenizer, "flan-t5")
    assert reranker.tokenizer.convert_ids_to_tokens([yes, no]) == ["▁yes", "▁no"]
    assert rerankers.load_reranker(models["bert"]).kind == "cross-encoder"


def test_monot5_score_is_p_true_of_the_first_generated_step(models):
    """One encoder pass + one decoder step gives what the authors' `generate(max_new_tokens=1)` gives."""
    import torch

    reranker = rerankers.load_reranker(models["t5"], batch_size=3, max_length=64)
    scores = reranker.score(QUERIES, DOCS)
    true_id, false_id = reranker.token_ids
    for q, d, s in zip(QUERIES, DOCS, scores, strict=True):
        inputs = rerankers.collate(reranker.encode([q], [d]), reranker.pad_id)
        out = reranker.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                      return_dict_in_generate=True)
        p_true = torch.softmax(out.scores[0][0, [true_id, false_id]], dim=0)[0].item()
        assert abs(p_true - s) < 1e-6 and 0 < s < 1


@pytest.mark.parametrize("kind", ["t5", "bert"])
def test_length_batched_scores_equal_one_pair_at_a_time(models, kind):
    import random

    rng = random.Random(0)
    words = " ".join(DOCS).split()
    queries = [rng.choice(QUERIES) for _ in range(40)]
    docs = [" ".join(rng.choices(words, k=rng.randint(1, 120))) for _ in range(40)]
    batched = rerankers.load_reranker(models[kind], batch_size=8, max_length=128).score(queries, docs)
    single = rerankers.load_reranker(models[kind], batch_size=1, max_length=128)
    one_by_one = [single.score([q], [d])[0] for q, d in zip(queries, docs, strict=True)]
    assert max(abs(a - b) for a, b in zip(batched, one_by_one, strict=True)) < 1e-5
    assert len(set(batched)) > 1


def test_length_batches_sort_longest_first():
    assert rerankers.length_batches([3, 9, 1, 9, 5], 2) == [[1, 3], [4, 0], [2]]


def test_kind_detection_reads_the_training_marker(models, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(models["t5"], folder)
    assert rerankers.detect_kind(folder) == "monot5"
    (folder / rerankers.MARKER).write_text('{"kind": "flan-t5"}')
    assert rerankers.detect_kind(folder) == "flan-t5"
    assert rerankers.load_reranker(folder).score(["tea"], ["green tea leaves"])[0] > 0
