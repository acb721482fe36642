"""Small helpers shared by several test modules (not fixtures)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def compile_latex(folder: Path, body: str) -> None:
    """Compile `body` (a LaTeX table) in a minimal booktabs document with pdflatex; fail with its log's tail."""
    doc = folder / "t.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}" + body + "\\end{document}")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=folder,
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (folder / "t.pdf").stat().st_size > 1000


def die_after_checkpoint(monkeypatch: pytest.MonkeyPatch, at_step: int) -> None:
    """Make training raise KeyboardInterrupt right after it saved its checkpoint at `at_step` (a kill, in-process)."""
    from harness.stages import train as train_stage

    real_save = train_stage._save_checkpoint

    def save_then_die(folder, model, optimizer, scheduler, scaler, step, log):
        real_save(folder, model, optimizer, scheduler, scaler, step, log)
        if step == at_step:
            monkeypatch.setattr(train_stage, "_save_checkpoint", real_save)
            raise KeyboardInterrupt

    monkeypatch.setattr(train_stage, "_save_checkpoint", save_then_die)
