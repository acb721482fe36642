"""The `generate` stage on the bundled sample with tiny random models: rows, examples, skipping, resuming."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.stages import Context, generate
from harness.stages import corpus as corpus_stage
from harness.store import artifact_key, sha256_file


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> str:
    """The tiny GPT-2, built once per session, named by its folder (as a recipe may name a local model)."""
    from harness.models.tiny import materialize

    return str(materialize("tiny:gpt2", tmp_path_factory.getbasetemp() / "shared-models"))


def corpus_artifact(store):
    params = corpus_stage.Params(dataset="sample", source="builtin", fingerprint="test")
    key = artifact_key("corpus", 1, params.key_params(), {})
    ctx = Context(store, "sample", progress=False)
    artifact, _ = store.get_or_build(key, lambda out: corpus_stage.run({}, params, out, ctx), kind="dataset",
                                     stage="corpus", params=params.key_params(), inputs={})
    return artifact


def examples_artifact(store, corpus, params: generate.Params):
    """The few-shot examples generate's settings select (the `examples` stage), built through the store."""
    from harness.stages import examples

    chosen = examples.Params(**{k: getattr(params, k) for k in ("prompt", "n_examples", "examples_source", "seed")})
    key = artifact_key("examples", examples.STAGE.version, chosen.key_params(), {"corpus": corpus.key})
    ctx = Context(store, "sample", progress=False)
    artifact, _ = store.get_or_build(
        key, lambda out: examples.run({"corpus": corpus}, chosen, out, ctx), kind="examples", stage="examples",
        params=chosen.key_params(), inputs={"corpus": corpus.key})
    return artifact


def build(store, corpus, model, **values):
    """Build the generate artifact for `values` through the store, as the runner does (with the few-shot examples
    as an input where the prompt shows the dataset's own)."""
    from harness.prompts import load_template

    params = generate.Params(**{"model": model, "n_docs": 6, "max_new_tokens": 6, "shard_size": 4, **values})
    inputs = {"corpus": corpus}
    if load_template(params.prompt).dynamic:
        inputs["examples"] = examples_artifact(store, corpus, params)
    keys = {role: a.key for role, a in sorted(inputs.items())}
    key = artifact_key("generate", generate.STAGE.version, params.key_params(), keys)
    ctx = Context(store, "sample", progress=False)
    artifact, _ = store.get_or_build(
        key, lambda out: generate.run(inputs, params, out, ctx), kind="queries", stage="generate",
        params=params.key_params(), inputs=keys, resumable=True)
    return artifact


def rows_of(artifact):
    return [json.loads(line) for line in artifact.file("queries.jsonl").read_text().splitlines()]


def test_sampling_follows_the_toolkit_and_is_capped(tmp_path):
    import numpy as np

    from harness.data import beir, sample

    sample.build(tmp_path / "s")
    path = tmp_path / "s" / "corpus.jsonl"
    ids = [d.id for d in beir.iter_corpus(path)]
    picked = generate.sample_documents(path, 5, seed=1)
    assert [d.id for d in picked] == [ids[i] for i in np.random.RandomState(1).permutation(len(ids))[:5]]
    assert len(generate.sample_documents(path, 10**6, seed=1)) == len(ids)


def test_rows_have_the_artifact_fields(store, gpt2):
    corpus = corpus_artifact(store)
    artifact = build(store, corpus, gpt2)
    rows = rows_of(artifact)
    sampled = generate.sample_documents(corpus.file("corpus.jsonl"), 6, 1)
    assert [r["doc_id"] for r in rows] == [d.id for d in sampled]
    for row in rows:
        assert set(row) == {"query_id", "doc_id", "query", "log_probs", "n_tokens", "example_ids", "prompt"}
        assert row["query_id"] == f"syn-{row['doc_id']}"
        assert row["n_tokens"] == len(row["log_probs"]) <= 6
        assert all(x <= 0 for x in row["log_probs"])
        assert row["prompt"].endswith("Relevant Query:") and row["example_ids"] == []
    assert json.loads(artifact.file("examples.json").read_text()) == {"query_ids": [], "doc_ids": []}
    assert artifact.summary["generated"] == 6 and artifact.summary["skipped_prompt_too_long"] == 0


def test_promptagator_examples_come_from_train_split_and_are_recorded(store, gpt2):
    from harness.data import beir

    corpus = corpus_artifact(store)
    artifact = build(store, corpus, gpt2, prompt="promptagator-scifact", n_examples=2, example_tokens=20, n_docs=3,
                     store_prompts=False)
    examples = json.loads(artifact.file("examples.json").read_text())
    train = beir.read_qrels(corpus.file("qrels/train.tsv"))
    assert len(examples["query_ids"]) == 2 and all(q in train for q in examples["query_ids"])
    assert examples["query_ids"] == sorted(examples["query_ids"])
    assert set(examples["doc_ids"]) == {d for q in examples["query_ids"] for d in train[q]}
    rows = rows_of(artifact)
    assert all(sorted(r["example_ids"]) == examples["query_ids"] and "prompt" not in r for r in rows)


def test_queries_from_the_examples_artifact_are_the_bytes_of_examples_drawn_in_generate(store, gpt2, tmp_path):
    """Before the `examples` stage, generate drew its examples itself (`train_split_examples(corpus, n_examples,
    seed)`, harness dec0b72): the same shards written with that draw are the bytes of the artifact's queries."""
    from harness.prompts import train_split_examples

    corpus = corpus_artifact(store)
    values = {"prompt": "promptagator-scifact", "n_examples": 3, "example_tokens": 20, "n_docs": 5}
    artifact = build(store, corpus, gpt2, **values)
    params = generate.Params(**{"model": gpt2, "max_new_tokens": 6, "shard_size": 4, **values})
    docs = generate.sample_documents(corpus.file("corpus.jsonl"), params.n_docs, params.seed)
    drawn = train_split_examples(corpus, params.n_examples, params.seed)
    (tmp_path / "shards").mkdir()
    work = generate.GenerateWork(params, docs, drawn, tmp_path / "shards", store.root, "cpu")
    work.setup()
    for shard in range(2):  # 5 documents in shards of 4
        work.run_shard(shard)
    before = b"".join((tmp_path / "shards" / f"{i:05d}.jsonl").read_bytes() for i in range(2))
    assert artifact.file("queries.jsonl").read_bytes() == before
    assert all(len(r["example_ids"]) == 3 for r in rows_of(artifact))


def test_a_dynamic_prompt_without_its_examples_is_a_clear_error(store, gpt2):
    corpus = corpus_artifact(store)
    params = generate.Params(model=gpt2, prompt="promptagator-scifact", n_docs=2)
    key = artifact_key("generate", generate.STAGE.version, params.key_params(), {"corpus": corpus.key})
    with pytest.raises(HarnessError, match="needs the `examples` artifact"):
        store.get_or_build(key, lambda out: generate.run(
            {"corpus": corpus}, params, out, Context(store, "sample", progress=False)), kind="queries",
            stage="generate", params=params.key_params(), inputs={"corpus": corpus.key})


def test_a_dataset_without_train_split_is_a_clear_error(store, gpt2):
    corpus = corpus_artifact(store)
    (corpus.path / "qrels" / "train.tsv").unlink()
    corpus.manifest["files"].pop("qrels/train.tsv")
    with pytest.raises(HarnessError, match="no train split"):
        build(store, corpus, gpt2, prompt="promptagator-scifact", n_docs=2)


def test_prompts_that_cannot_fit_are_skipped_and_counted(store, gpt2):
    from pathlib import Path

    from harness.models.loading import load_tokenizer

    corpus = corpus_artifact(store)
    full = rows_of(build(store, corpus, gpt2, n_docs=8, max_new_tokens=1))
    tokenizer = load_tokenizer(Path(gpt2))
    lengths = sorted(len(tokenizer(r["prompt"])["input_ids"]) for r in full)
    budget = lengths[3] + 6  # prompt + max_new_tokens must fit: the four shortest do
    artifact = build(store, corpus, gpt2, max_prompt_tokens=budget, n_docs=8, max_skipped_share=1.0)
    summary = artifact.summary
    assert (summary["generated"], summary["skipped_prompt_too_long"]) == (4, 4)
    assert [r["doc_id"] for r in rows_of(artifact)] == [
        r["doc_id"] for r in full if len(tokenizer(r["prompt"])["input_ids"]) + 6 <= budget]
    with pytest.raises(HarnessError, match="max_skipped_share=0.01"):  # the default: a shard may lose 1%
        build(store, corpus, gpt2, max_prompt_tokens=budget, n_docs=8, shard_size=8)  # not built yet: a new key


def test_promptagator_examples_are_cut_so_that_every_prompt_fits(store, gpt2):
    """Promptagator's 8 examples of up to 256 tokens and the target overflow GPT-J's 2,048 tokens: cut, they fit."""
    from pathlib import Path

    from harness.models.loading import load_tokenizer

    corpus = corpus_artifact(store)
    values = {"prompt": "promptagator-scifact", "n_examples": 4, "n_docs": 8, "max_doc_tokens": 64,
              "example_tokens": 100, "max_new_tokens": 6}
    roomy = build(store, corpus, gpt2, **values, max_prompt_tokens=1024)  # the tiny GPT-2's context
    assert roomy.summary["example_doc_tokens"] == 100
    tokenizer = load_tokenizer(Path(gpt2))
    budget = max(len(tokenizer(r["prompt"])["input_ids"]) for r in rows_of(roomy)) - 40
    artifact = build(store, corpus, gpt2, **values, max_prompt_tokens=budget)
    assert artifact.summary["skipped_prompt_too_long"] == 0 and artifact.summary["generated"] == 8
    assert artifact.summary["example_doc_tokens"] < 100
    assert all(len(tokenizer(r["prompt"])["input_ids"]) + 6 <= budget for r in rows_of(artifact))


def test_sampled_queries_are_keyed_by_the_device_type():
    sampled = generate.Params(do_sample=True)
    assert sampled.on_device("cuda:1").key_params()["sampling_device"] == "cuda"
    assert sampled.on_device("cpu").key_params() != sampled.on_device("cuda").key_params()
    greedy = generate.Params()
    assert greedy.on_device("cuda").key_params() == greedy.on_device("cpu").key_params()


def test_rerun_and_resume_give_the_same_bytes(tmp_path, monkeypatch, gpt2):
    from harness.models import llm as llm_module
    from harness.store import Store

    first = Store(tmp_path / "a")
    corpus = corpus_artifact(first)
    whole = build(first, corpus, gpt2)
    again = Store(tmp_path / "b")
    corpus_b = corpus_artifact(again)
    assert corpus_b.key == corpus.key

    calls = []
    real = llm_module.TransformersLM.generate

    def dying(self, prompts, *args, **kwargs):
        calls.append(len(prompts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second shard
        return real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(llm_module.TransformersLM, "generate", dying)
    with pytest.raises(KeyboardInterrupt):
        build(again, corpus_b, gpt2)
    assert again.get(whole.key) is None  # nothing committed
    calls.clear()
    monkeypatch.setattr(llm_module.TransformersLM, "generate",
                        lambda self, prompts, *a, **k: calls.append(len(prompts)) or real(self, prompts, *a, **k))
    resumed = build(again, corpus_b, gpt2)
    assert calls == [2]  # only the second shard (6 docs in shards of 4) was generated again
    assert resumed.summary["shards_resumed"] == 1
    assert sha256_file(resumed.file("queries.jsonl")) == sha256_file(whole.file("queries.jsonl"))
    assert resumed.manifest["files"] == whole.manifest["files"]


def test_batch_size_and_prefix_cache_do_not_change_the_queries(store, gpt2):
    corpus = corpus_artifact(store)
    fast = rows_of(build(store, corpus, gpt2, batch_size=4, prefix_cache=True))
    slow = rows_of(build(store, corpus, gpt2, batch_size=1, prefix_cache=False))
    assert [r["query"] for r in fast] == [r["query"] for r in slow]
    for a, b in zip(fast, slow, strict=True):
        assert a["log_probs"] == pytest.approx(b["log_probs"], abs=1e-4)


def test_published_examples_come_from_the_registry_pinned_and_recorded(store, gpt2, local_hub, tmp_path, monkeypatch):
    monkeypatch.setattr("harness.registry.project_lock", lambda: tmp_path / "registry.lock")
    published = [{"query_id": f"pq{i}", "doc_id": f"pd{i}", "query": f"published question {i}?",
                  "document": f"A published example document number {i}."} for i in range(5)]
    local_hub.add_repo("inpars/fewshot-examples", "dataset", {"data/scifact.json": json.dumps(published)})
    corpus = corpus_artifact(store)
    ref = "registry:inpars/fewshot/scifact"
    artifact = build(store, corpus, gpt2, prompt="promptagator-scifact", examples_source=ref, n_examples=3, n_docs=2)
    examples = json.loads(artifact.file("examples.json").read_text())
    assert len(examples["query_ids"]) == 3 and set(examples["query_ids"]) <= {e["query_id"] for e in published}
    rows = rows_of(build(store, corpus, gpt2, prompt="promptagator-scifact", examples_source=ref, n_examples=3,
                         n_docs=2, store_prompts=True))
    shown = {e["query"] for e in published if e["query_id"] in examples["query_ids"]}
    assert all(all(q in r["prompt"] for q in shown) and sorted(r["example_ids"]) == examples["query_ids"] for r in rows)
    local_hub.down()  # the examples are now in the store: a rebuild needs no network
    again = build(store, corpus, gpt2, prompt="promptagator-scifact", examples_source=ref, n_examples=3, n_docs=2,
                  seed=1, shard_size=2)
    assert json.loads(again.file("examples.json").read_text()) == examples


def test_examples_source_is_train_split_or_a_registry_reference():
    with pytest.raises(ValueError, match="registry:"):
        generate.Params(examples_source="published")




def test_the_runner_keys_a_sampling_recipe_by_the_device_type(store):
    from harness import recipes
    from harness.runner import Runner

    def key(device):
        runner = Runner(recipes.load("smoke"), store, device=device, echo=lambda s: None, progress=False)
        return runner.steps("sample")["generate"].key

    assert recipes.load("smoke").stage_params("generate", "sample")["do_sample"] is True
    assert key("cuda:0") == key("cuda:1") != key("cpu")
