"""benchmarks/bench_gpu.py in its `--tiny` mode (the CPU, tiny shapes): it runs end to end and writes gpu.json's
shape."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_gpu.py"
SHAPE = {  # issue 18's gpu.json
    "rerank": {"pairs_per_s", "authors_pairs_per_s", "speedup", "mfu", "peak_tflops", "max_abs_score_diff"},
    "generate": {"tokens_per_s", "authors_tokens_per_s", "speedup", "greedy_agreement"},
    "train": {"samples_per_s", "mfu", "peak_gib"},
}


def test_tiny_mode_writes_every_key(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "gpu.json"
    assert module.main(["--tiny", "--out", str(out), "--work", str(tmp_path)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"device", *SHAPE, "versions", "beir_gpu_hours"}
    assert data["device"].startswith("cpu") and data["versions"]["torch"]
    for part, keys in SHAPE.items():
        assert set(data[part]) == keys, part
        assert all(isinstance(v, (int, float)) for k, v in data[part].items() if k != "max_abs_score_diff"), part
    assert data["rerank"]["peak_tflops"] == 989.0
    assert 0 <= data["generate"]["greedy_agreement"] <= 1
    assert data["rerank"]["max_abs_score_diff"] < 0.05  # the harness in bf16, the authors' loop in float32 (CPU)
    hours = data["beir_gpu_hours"]
    assert hours["total"] == pytest.approx(hours["generate"] + hours["filter"] + hours["train"] + hours["rerank"],
                                           rel=1e-9)
    assert hours["authors_reported"] == 2000 and hours["prompts"] > 0 and hours["rerank_pairs"] > 0
