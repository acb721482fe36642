"""The smoke recipe: the InPars-v2 pipeline shape end to end on CPU, checked against its pinned results."""

from __future__ import annotations

import json

from harness.cli import main


def test_smoke_runs_the_whole_pipeline_and_matches_its_pins(store, tmp_path, capsys):
    results = str(tmp_path / "results")
    assert main(["-q", "reproduce", "smoke", "--results-dir", results]) == 0
    out = capsys.readouterr().out
    assert "(0 reused, 0 fetched, 9 built)" in out
    data = json.loads(next((tmp_path / "results" / "smoke").rglob("sample.json")).read_text())
    assert [s["stage"] for s in data["stages"]] == [
        "corpus", "index", "retrieve", "generate", "filter", "negatives", "train", "rerank", "evaluate"]
    assert main(["compare", "smoke", "--pinned", "--strict", "--results-dir", results]) == 0
    out = capsys.readouterr().out
    assert "4 ok" in out and "below" not in out
    assert main(["-q", "reproduce", "smoke", "--results-dir", results]) == 0
    assert "(9 reused, 0 fetched, 0 built)" in capsys.readouterr().out
