"""The command line, end to end on the bundled sample (bm25s: no Java needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.cli import main


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from harness.cli import build_parser; build_parser().format_help(); " \
           "print(sorted(m for m in ('torch', 'transformers', 'pyserini', 'bm25s', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reproduce_sample_then_reuse_everything(store, tmp_path, capsys):
    args = ["-q", "reproduce", "bm25-flat", "--dataset", "sample", "--retriever", "bm25s",
            "--results-dir", str(tmp_path / "results")]
    started = time.perf_counter()
    assert main(args) == 0
    first = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "4 built" in out and "nDCG@10 0." in out
    started = time.perf_counter()
    assert main(args) == 0
    second = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "4 reused" in out and "0 built" in out
    assert second < first
    [result] = (tmp_path / "results" / "bm25-flat").glob("*/sample.json")
    data = json.loads(result.read_text())
    assert data["modified"] == {"retrieve.retriever": "bm25s"}
    assert {s["stage"] for s in data["stages"]} == {"corpus", "index", "retrieve", "evaluate"}
    assert 0.5 < data["metrics"]["nDCG@10"] <= 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["reproduce", "bm25-flatt", "-d", "sample"], "Unknown recipe 'bm25-flatt'. Did you mean 'bm25-flat'"),
        (["reproduce", "bm25-flat", "-d", "scifakt"], "Unknown dataset 'scifakt'. Did you mean 'scifact'"),
        (["show", "bm25-flat", "--set", "retrieve.kk=1"], "unknown key 'kk'"),
    ],
)
def test_user_mistakes_get_one_sentence_and_exit_2(store, capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_data_folder_says_what_to_download(store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_BEIR_URL", "http://127.0.0.1:9/beir/{name}.zip")  # fetched on first use: no server
    code = main(["reproduce", "bm25-flat", "-d", "nfcorpus", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "nfcorpus.zip" in out and "skipped" in out
    assert not (store.root / "artifacts").exists()


def test_list_and_show(store, capsys):
    assert main(["list", "datasets"]) == 0
    assert "cqadupstack" in capsys.readouterr().out
    assert main(["show", "bm25-multifield"]) == 0
    assert "fields: multifield" in capsys.readouterr().out
