"""The `examples` stage: the few-shot examples generate shows, and the queries evaluation leaves out, without
generating anything."""

from __future__ import annotations

import json

import pytest

from harness.stages import Context, examples, generate
from harness.store import artifact_key
from tests.test_generate import corpus_artifact

SETTINGS = ("prompt", "n_examples", "examples_source", "seed")


def build(store, corpus, **values):
    params = examples.Params(prompt="promptagator-scifact", **values)
    key = artifact_key("examples", examples.STAGE.version, params.key_params(), {"corpus": corpus.key})
    artifact, _ = store.get_or_build(
        key, lambda out: examples.run({"corpus": corpus}, params, out, Context(store, "sample", progress=False)),
        kind="examples", stage="examples", params=params.key_params(), inputs={"corpus": corpus.key})
    return artifact


def test_its_settings_are_generates_with_generates_defaults():
    """The runner reads them from the recipe's `generate` section: a default that differed would draw other
    examples than generate's own settings select."""
    for name in SETTINGS:
        assert examples.Params.model_fields[name].default == generate.Params.model_fields[name].default, name
    assert examples.STAGE.settings_in == "generate"
    with pytest.raises(ValueError, match="registry:"):
        examples.Params(examples_source="published")


def test_shown_is_the_draw_and_source_every_train_query(store):
    from harness.data import beir
    from harness.prompts import train_split_examples

    corpus = corpus_artifact(store)
    shown = build(store, corpus, n_examples=3, seed=2)
    drawn = train_split_examples(corpus, 3, 2)
    assert examples.read(shown) == drawn  # in the order drawn: generate's prompts depend on it
    assert json.loads(shown.file("examples.json").read_text())["query_ids"] == sorted(e.query_id for e in drawn)
    source = build(store, corpus, n_examples=3, seed=2, scope="source")
    assert examples.read(source) == drawn
    train = sorted(beir.read_qrels(corpus.file("qrels/train.tsv")))
    assert json.loads(source.file("examples.json").read_text())["query_ids"] == train
    assert len(train) > 3 and source.summary == {"examples": 3, "query_ids": len(train), "scope": "source"}


def test_published_examples_source_scope_is_every_row_of_the_file(store, local_hub, tmp_path, monkeypatch):
    from harness.prompts import published_examples
    from harness.refs import registry_files

    monkeypatch.setattr("harness.registry.project_lock", lambda: tmp_path / "registry.lock")
    rows = [{"query_id": f"pq{i}", "doc_id": f"pd{i}", "query": f"question {i}?", "document": f"document {i}."}
            for i in range(6)]
    local_hub.add_repo("inpars/fewshot-examples", "dataset", {"data/scifact.json": json.dumps(rows)})
    corpus = corpus_artifact(store)
    ref = "registry:inpars/fewshot/scifact"
    shown = build(store, corpus, n_examples=2, examples_source=ref)
    path = next(p for p in registry_files(ref, store).rglob("*") if p.is_file())
    assert examples.read(shown) == published_examples(path, 2, 1)
    source = build(store, corpus, n_examples=2, examples_source=ref, scope="source")
    assert json.loads(source.file("examples.json").read_text())["query_ids"] == [r["query_id"] for r in rows]


def test_a_fetched_reranker_leaves_out_every_source_query_and_nothing_is_generated(store):
    """Fetch mode: the reranker was trained elsewhere, on examples the toolkit drew from the whole published file
    (InPars 9865521 inpars/inpars.py line 20), so evaluation leaves out every query of the file; it takes them from
    the `examples` stage, so no generation is needed to learn them."""
    from harness import recipes
    from harness.runner import Runner

    scopes = {}
    for mode in ("fetch", "auto", "regenerate"):
        runner = Runner(recipes.load("promptagator"), store, mode=mode, echo=lambda _: None, progress=False)
        steps = runner.steps("scifact", missing_data_ok=True)
        chosen = steps["evaluate"].inputs["examples"]
        assert chosen.stage == "examples" and steps["generate"].inputs["examples"] is steps["examples"]
        assert {k: getattr(chosen.params, k) for k in SETTINGS} == {
            k: getattr(steps["generate"].params, k) for k in SETTINGS}
        scopes[mode] = chosen.params.scope
        needed = runner.needed(steps)
        assert ("generate" in needed) == (mode == "regenerate"), mode
    assert scopes == {"fetch": "source", "auto": "source", "regenerate": "shown"}


def test_a_static_prompt_has_no_examples_step(store):
    from harness import recipes
    from harness.runner import Runner

    steps = Runner(recipes.load("inpars-v2"), store, echo=lambda _: None).steps("scifact", missing_data_ok=True)
    assert "examples" not in steps and "examples" not in steps["evaluate"].inputs
    assert "examples" not in steps["generate"].inputs
