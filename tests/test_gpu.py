"""The CUDA paths: bf16 reranking, greedy generation, bf16 training resumed exactly, the smoke recipe end to end.

Skipped without a CUDA GPU (`-m gpu` selects them); each uses the project's tiny models, so a run takes seconds.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from tests.support import die_after_checkpoint

torch = pytest.importorskip("torch")

# cuBLAS reads this when its first handle is made: with it, deterministic algorithms need no extra workspace setup.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

DEVICE = "cuda"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# |P(true) in bfloat16 - P(true) in float32| on the same pairs. bf16 keeps 8 significant bits (relative rounding
# 2^-9, about 0.2%) for every weight and activation; P(true) = sigmoid(logit difference) moves by at most a quarter
# of the difference's error. Measured on a CPU for these pairs: 0.0052 (tiny:t5), 0.0062 (tiny:t5-small); 0.02
# leaves room for 3-4 times that from the GPU's other kernels and summation orders.
BF16_SCORE_TOLERANCE = 0.02
STAGES = ["corpus", "index", "retrieve", "generate", "filter", "negatives", "train", "rerank", "evaluate"]


def _pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Queries and documents of mixed lengths (1 to 120 words), so batches hold padding."""
    words = ["caffeine", "pregnancy", "bees", "honey", "volcano", "ash", "tides", "moon", "insulin", "glucose",
             "glacier", "ice", "bridge", "steel", "whale", "ocean", "river", "delta", "forest", "rain"]
    rng = random.Random(seed)
    queries = [" ".join(rng.choices(words, k=rng.randint(2, 6))) for _ in range(n)]
    docs = [" ".join(rng.choices(words, k=rng.randint(1, 120))) for _ in range(n)]
    return queries, docs


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from harness.models.tiny import materialize

    root = tmp_path_factory.getbasetemp() / "tiny-models"
    return {kind: materialize(f"tiny:{kind}", root) for kind in ("t5", "gpt2")}


def test_bf16_reranking_scores_match_float32(models):
    from harness.models.rerankers import load_reranker

    queries, docs = _pairs(64)
    cpu = load_reranker(models["t5"], "monot5", batch_size=16).score(queries, docs)
    full = load_reranker(models["t5"], "monot5", device=DEVICE, batch_size=16).score(queries, docs)
    half = load_reranker(models["t5"], "monot5", device=DEVICE, dtype="bfloat16", batch_size=16).score(queries, docs)
    # float32 on the GPU (TF32 off by default) = the CPU
    assert max(abs(a - b) for a, b in zip(full, cpu, strict=True)) < 1e-4
    assert max(abs(a - b) for a, b in zip(half, full, strict=True)) <= BF16_SCORE_TOLERANCE
    assert len(half) == len(queries) and all(0 < s < 1 for s in half)


def test_greedy_generation_on_cuda_equals_the_cpu(models):
    from harness.models.llm import Decoding, TransformersLM
    from harness.models.loading import load_model, load_tokenizer

    texts = [f"Example {i}: Document: the {w} of the river and the moon. Relevant query:"
             for i, w in enumerate(["tides", "banks", "delta", "ice", "fish", "rain", "mills", "boats"])]
    outputs = {}
    for device in ("cpu", DEVICE):
        tokenizer = load_tokenizer(models["gpt2"], padding_side="left")
        lm = TransformersLM(load_model("causal", models["gpt2"], device=device), tokenizer, batch_size=4)
        prompts = [tokenizer(t)["input_ids"] for t in texts]
        outputs[device] = lm.generate(prompts, Decoding(max_new_tokens=16))
    assert [g.token_ids for g in outputs[DEVICE]] == [g.token_ids for g in outputs["cpu"]]
    for gpu, cpu in zip(outputs[DEVICE], outputs["cpu"], strict=True):
        assert gpu.log_probs == pytest.approx(cpu.log_probs, abs=1e-3)


def _build(store, name: str, params: dict, inputs: dict):
    """One stage's artifact built on the GPU as the runner builds it (key, lock, manifest)."""
    from harness.stages import Context, get_stage, parse_params
    from harness.store import artifact_key

    stage = get_stage(name)
    p = parse_params(name, params, "test")
    input_keys = {role: a.key for role, a in sorted(inputs.items())}
    key = artifact_key(name, stage.version, p.key_params(), input_keys)
    ctx = Context(store, "sample", DEVICE, progress=False)
    artifact, _ = store.get_or_build(key, lambda out: stage.run(inputs, p, out, ctx), kind=stage.kind, stage=name,
                                     params=p.key_params(), inputs=input_keys, resumable=stage.resumable)
    return artifact


def test_bf16_training_with_checkpointing_and_adafactor_resumes_exactly(tmp_path, models, monkeypatch):
    from harness.store import Store
    from tests.test_negatives import rows_artifact
    from tests.test_train import toy_triples

    params = {"model": str(models["t5"]), "kind": "monot5", "optimizer": "adafactor", "learning_rate": 1e-3,
              "dtype": "bfloat16", "gradient_checkpointing": True, "batch_size": 8, "micro_batch_size": 4,
              "steps": 6, "max_length": 64, "seed": 3, "checkpoint_every": 2}
    deterministic = torch.are_deterministic_algorithms_enabled()
    # Deterministic kernels where torch has them (a warning names any op without one), so bitwise equality can be asked.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        whole_store, killed_store = Store(tmp_path / "a"), Store(tmp_path / "b")
        whole = _build(whole_store, "train", params,
                       {"triples": rows_artifact(whole_store, "toy", "triples.jsonl", toy_triples())})
        triples = {"triples": rows_artifact(killed_store, "toy", "triples.jsonl", toy_triples())}
        die_after_checkpoint(monkeypatch, at_step=4)
        with pytest.raises(KeyboardInterrupt):
            _build(killed_store, "train", params, triples)
        resumed = _build(killed_store, "train", params, triples)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    assert whole.manifest["environment"]["device"] == DEVICE
    assert ((resumed.path / "model/model.safetensors").read_bytes()
            == (whole.path / "model/model.safetensors").read_bytes())
    log = [json.loads(line) for line in whole.file("train_log.jsonl").read_text().splitlines()]
    assert resumed.file("train_log.jsonl").read_text() == whole.file("train_log.jsonl").read_text()
    assert len(log) == 6 and all(row["loss"] > 0 for row in log)


def test_smoke_recipe_end_to_end_on_cuda(tmp_path, monkeypatch):
    from harness.cli import main

    home, results = tmp_path / "home", tmp_path / "results"
    monkeypatch.setenv("HARNESS_HOME", str(home))
    assert main(["-q", "reproduce", "smoke", "--device", DEVICE, "--results-dir", str(results)]) == 0
    data = json.loads(next((results / "smoke").rglob("sample.json")).read_text())
    assert [s["stage"] for s in data["stages"]] == STAGES
    devices = {}
    for manifest in home.rglob("manifest.json"):
        content = json.loads(manifest.read_text())
        devices[content.get("stage")] = (content.get("environment") or {}).get("device")
    for stage in ("generate", "filter", "train", "rerank"):  # the model stages ran on the GPU
        assert devices.get(stage) == DEVICE, (stage, devices)
