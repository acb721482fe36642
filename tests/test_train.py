"""The `train` stage: a tiny monoT5 and a tiny cross-encoder learn, save a loadable model, and resume exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.data import beir
from tests.support import die_after_checkpoint
from tests.test_negatives import build_stage, rows_artifact


def toy_triples(n: int = 16) -> list[dict]:
    """Triples where relevance is quickly learnable: positives answer in one style about the query's topic."""
    topics = ["caffeine", "bees", "volcano", "tides", "insulin", "glacier", "bridge", "whale"]
    rows = []
    for i in range(n):
        a, b = topics[i % len(topics)], topics[(i + 3) % len(topics)]
        rows.append({"query_id": f"q{i}", "query": f"what about {a}", "pos_id": f"p{i}", "neg_id": f"n{i}",
                     "positive": f"answer: {a} is explained here", "negative": f"unrelated note on {b}"})
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny checkpoints built once per module, passed to the stage as local folders."""
    from harness.models.tiny import materialize

    root = tmp_path_factory.getbasetemp() / "tiny-models"  # one build per session, shared by test modules
    return {ref: str(materialize(ref, root)) for ref in ("tiny:t5", "tiny:bert")}


def train(store, triples, **params):
    base = {"model": "tiny:t5", "kind": "monot5", "learning_rate": 3e-3, "batch_size": 8, "micro_batch_size": 4,
            "steps": 12, "max_length": 32, "seed": 3, "checkpoint_every": 5}
    return build_stage(store, "train", {**base, **params}, {"triples": triples})


def _log(artifact):
    return [row["loss"] for row in beir.read_jsonl(artifact.file("train_log.jsonl"))]


@pytest.mark.parametrize("model, kind, steps, lr", [("tiny:t5", "monot5", 12, 3e-3),
                                                    ("tiny:bert", "cross-encoder", 30, 1e-3)])
def test_training_lowers_the_loss_and_saves_a_loadable_reranker(store, tiny, model, kind, steps, lr):
    from harness.models.rerankers import load_reranker

    triples = rows_artifact(store, "negatives-toy", "triples.jsonl", toy_triples())
    art = train(store, triples, model=tiny[model], kind=kind, learning_rate=lr, steps=steps, micro_batch_size=8)
    losses = _log(art)
    assert len(losses) == steps and art.summary["steps"] == steps and art.summary["examples_seen"] == 8 * steps
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    assert "model/model.safetensors" in art.manifest["files"]
    assert not any("checkpoint" in f for f in art.manifest["files"])
    reranker = load_reranker(art.path / "model")  # kind from the marker the stage wrote
    assert reranker.kind == kind
    rows = toy_triples()
    pos = reranker.score([r["query"] for r in rows], [r["positive"] for r in rows])
    neg = reranker.score([r["query"] for r in rows], [r["negative"] for r in rows])
    assert sum(p > n for p, n in zip(pos, neg, strict=True)) >= 0.75 * len(rows)


def test_killed_training_resumes_to_identical_weights(store, tiny, monkeypatch):
    from harness.stages import train as train_stage

    triples = rows_artifact(store, "negatives-toy", "triples.jsonl", toy_triples())
    whole = train(store, triples, model=tiny["tiny:t5"], steps=8, checkpoint_every=3)

    # The same training killed after its checkpoint at step 6, then run again: it continues from step 6.
    other = store.__class__(store.root.parent / "home2")
    triples2 = rows_artifact(other, "negatives-toy", "triples.jsonl", toy_triples())
    die_after_checkpoint(monkeypatch, at_step=6)
    with pytest.raises(KeyboardInterrupt):
        train(other, triples2, model=tiny["tiny:t5"], steps=8, checkpoint_every=3)
    resumed_steps = []
    real_step = train_stage.step_indices
    monkeypatch.setattr(train_stage, "step_indices", lambda step, *a: resumed_steps.append(step) or real_step(step, *a))
    resumed = train(other, triples2, model=tiny["tiny:t5"], steps=8, checkpoint_every=3)
    assert resumed_steps == [6, 7]
    assert ((resumed.path / "model/model.safetensors").read_bytes()
            == (whole.path / "model/model.safetensors").read_bytes())
    assert _log(resumed) == _log(whole)


def test_steps_cover_the_epoch_permutations():
    from harness.stages.train import step_indices

    seen = [i for s in range(3) for i in step_indices(s, 10, 4, 10, seed=1)]
    assert sorted(seen) == list(range(10))  # one epoch: every example once, the last step partial
    assert step_indices(0, 10, 4, 40, seed=1) != step_indices(0, 10, 4, 40, seed=2)


def test_batch_must_be_a_multiple_of_the_micro_batch(store):
    from harness.errors import HarnessError

    triples = rows_artifact(store, "negatives-toy", "triples.jsonl", toy_triples(2))
    with pytest.raises(HarnessError, match="multiple of micro_batch_size"):
        train(store, triples, batch_size=6, micro_batch_size=4)


def _resume_after_kill(store, triples, monkeypatch, kill_at: int, **params):
    """Train once, killed right after the checkpoint of step `kill_at`, then again to the end: the artifact."""
    from harness.stages import train as train_stage

    real_save = train_stage._save_checkpoint

    def save_then_die(folder, model, optimizer, scheduler, scaler, step, log):
        real_save(folder, model, optimizer, scheduler, scaler, step, log)
        assert sorted(p.name for p in folder.iterdir()) == ["state.pt"]  # one checkpoint, no copy beside it
        if step == kill_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_stage, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(store, triples, **params)
    monkeypatch.setattr(train_stage, "_save_checkpoint", real_save)
    return train(store, triples, **params)


def test_adafactor_resumes_to_identical_weights(store, tiny, monkeypatch):
    params = {"model": tiny["tiny:t5"], "optimizer": "adafactor", "learning_rate": 1e-3, "steps": 7,
              "checkpoint_every": 2}
    triples = rows_artifact(store, "negatives-toy", "triples.jsonl", toy_triples())
    whole = train(store, triples, **params)
    other = store.__class__(store.root.parent / "home2")
    triples2 = rows_artifact(other, "negatives-toy", "triples.jsonl", toy_triples())
    resumed = _resume_after_kill(other, triples2, monkeypatch, 4, **params)
    assert ((resumed.path / "model/model.safetensors").read_bytes()
            == (whole.path / "model/model.safetensors").read_bytes())
    assert _log(resumed) == _log(whole)
    adamw = train(store, triples, **{**params, "optimizer": "adamw"})
    assert adamw.key != whole.key and _log(adamw) != _log(whole)  # the optimizer is part of the key and the result


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
def test_an_optimizer_step_changes_the_weights_and_reads_the_loss_once(tiny, optimizer, monkeypatch):
    import torch

    from harness.models.loading import load_model, load_tokenizer
    from harness.models.rerankers import encode_pairs, target_ids
    from harness.stages.train import Params, make_optimizer, optimizer_step, prepare_model

    rows = toy_triples(4)
    path = Path(tiny["tiny:t5"])
    tok = load_tokenizer(path)
    encoded = encode_pairs(tok, "monot5", [r["query"] for r in rows] * 2,
                           [r["positive"] for r in rows] + [r["negative"] for r in rows], 32)
    labels = [1] * 4 + [0] * 4
    reads = {}
    real_item = torch.Tensor.item
    for micro in (8, 2):  # one micro-batch, then four: the loss is read once per step either way
        params = Params(model="tiny:t5", optimizer=optimizer, learning_rate=1e-2, batch_size=8, micro_batch_size=micro)
        torch.manual_seed(0)
        model = prepare_model(load_model("seq2seq", path), params)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer_, scheduler = make_optimizer(model, params, 1)
        calls = []
        monkeypatch.setattr(torch.Tensor, "item", lambda t, calls=calls: calls.append(1) or real_item(t))
        loss = optimizer_step(model, list(range(8)), encoded, labels, params, target_ids(tok, "monot5"),
                              tok.pad_token_id, "cpu", optimizer_, scheduler)
        monkeypatch.setattr(torch.Tensor, "item", real_item)
        reads[micro] = len(calls)
        assert loss > 0
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert "shared.weight" in changed and len(changed) >= len(before) // 2
    assert reads[8] == reads[2]


def test_cuda_random_states_restore_on_fewer_gpus(monkeypatch):
    import torch

    from harness.stages.train import restore_cuda_rng

    set_to = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: set_to.append((device, state)))
    saved = [torch.tensor([i], dtype=torch.uint8) for i in range(4)]  # saved on four GPUs
    assert restore_cuda_rng(saved) == 2 and [d for d, _ in set_to] == [0, 1]
    assert all(torch.equal(state, saved[d]) for d, state in set_to)
    set_to.clear()
    assert restore_cuda_rng(saved[:1]) == 1 and [d for d, _ in set_to] == [0]  # saved on one, two visible
    assert restore_cuda_rng([]) == 1 - 1  # a CPU checkpoint: nothing to set
