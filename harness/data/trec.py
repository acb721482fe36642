"""TREC run files: `qid Q0 docid rank score tag`, read strictly and written in rank order."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

Run = dict[str, list[tuple[str, float]]]  # query id → [(doc id, score)] best first


def write_run(run: Run, path: Path, tag: str = "harness") -> None:
    """Write a run; each query's hits are written in the given order with ranks 1..n."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for qid in sorted(run):
            for rank, (docid, score) in enumerate(run[qid], 1):
                fh.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")


def read_run(path: Path) -> Run:
    """Read a TREC run, hits sorted by score (desc), ties by rank; one clear error for a bad line."""
    rows: dict[str, list[tuple[float, int, str]]] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 6:
                    raise HarnessError(
                        f"{path} line {number}: a TREC run line has 6 columns "
                        f"(qid Q0 docid rank score tag), this one has {len(parts)}."
                    )
                qid, _, docid, rank, score, _ = parts
                try:
                    rows.setdefault(qid, []).append((float(score), int(rank), docid))
                except ValueError:
                    raise HarnessError(
                        f"{path} line {number}: rank {rank!r} or score {score!r} is not a number.") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text ({exc.reason}).") from None
    if not rows:
        raise HarnessError(f"{path} holds no run lines.")
    return {qid: [(d, s) for s, _, d in sorted(hits, key=lambda h: (-h[0], h[1]))] for qid, hits in rows.items()}
