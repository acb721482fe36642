"""The comparator: our scores against the papers' tables (loose) and our own pinned results (tight)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean

from harness import reported
from harness.atomic import write_text_atomic
from harness.data.catalog import expand
from harness.paths import pinned_dir
from harness.recipes import Recipe, Reference

# `info`: another system shown for information (no pass/fail); `not-comparable`: the paper reports this dataset in
# a form ours cannot be compared with (the row says why).
VERDICTS = ("ok", "above", "below", "no-reference", "no-result", "info", "not-comparable")
_EPS = 1e-9  # printed numbers have 3-4 decimals; don't let float noise flip a verdict at the boundary
# A printed average further than this from the mean of the row's printed cells is a misprint, not rounding: each
# of the cells and the average is rounded or truncated to 3 decimals (at most 0.001 off each), so the two agree
# within 0.002. Then the comparator compares with the mean of the printed cells and says so (results/reported/README.md
# lists the three such rows).
AVERAGE_SLACK = 0.002


@dataclass(frozen=True)
class Row:
    recipe: str
    dataset: str
    metric: str
    reference: str  # e.g. "inpars-v2-table1: monoT5-3B +InPars-v2", or "pinned"
    expected: float | None
    actual: float | None
    delta: float | None
    tolerance: float
    verdict: str
    note: str = ""
    std: float | None = None  # sample standard deviation over the recipe's seeds (None: one run)

    def as_dict(self) -> dict:
        return asdict(self)


def verdict(expected: float | None, actual: float | None, tolerance: float) -> tuple[float | None, str]:
    """(signed delta, verdict) of one comparison."""
    if expected is None:
        return None, "no-reference"
    if actual is None:
        return None, "no-result"
    delta = actual - expected
    if abs(delta) <= tolerance + _EPS:
        return delta, "ok"
    return delta, "above" if delta > 0 else "below"


def results_folder(recipe: Recipe, results_dir: Path) -> Path:
    return results_dir / recipe.name / f"v{recipe.version}"


def load_results(recipe: Recipe, results_dir: Path) -> dict[str, dict]:
    """dataset → results file content, for the recipe's current version (unmodified runs only)."""
    folder = results_folder(recipe, results_dir)
    out: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(path.read_text())
        out[data["dataset"]] = data
    return out


def compare(
    recipe: Recipe, results_dir: Path, datasets: list[str] | None = None, pinned: bool = False
) -> list[Row]:
    """One row per (reference, dataset, metric), plus the table's average where the paper prints one."""
    results = load_results(recipe, results_dir)
    wanted = (expand(datasets) if datasets
              else [d for d in expand(recipe.datasets) if d in results] or expand(recipe.datasets))
    rows: list[Row] = []
    if pinned:
        return _against_pinned(recipe, results, wanted)
    for ref in recipe.reference:
        table = dict(reported.lookup(ref.table, ref.system, ref.metric))
        for dataset, system in ref.system_for.items():  # e.g. Climate-FEVER: the row run with FEVER's prompt
            table[dataset] = reported.lookup(ref.table, system, ref.metric)[dataset]
        label = ref.label or f"{ref.table}: {ref.system}"
        for dataset in wanted:
            rows.append(_row(recipe, ref, label, dataset, table.get(dataset), results.get(dataset, {})))
        if not datasets:  # a paper's average is compared only when the whole recipe is
            for avg_name in (k for k in table if k.startswith(reported.AVERAGE)):
                rows.append(_average(recipe, ref, label, table, avg_name, results))
    return rows


def _row(recipe: Recipe, ref: Reference, label: str, dataset: str, printed: reported.Reported | None,
         result: dict) -> Row:
    """One dataset against one reported row, with the verdict and every caveat in the note."""
    expected = printed.value if printed else None
    actual = result.get("metrics", {}).get(ref.metric)
    std = result.get("std", {}).get(ref.metric)
    notes = [printed.note] if printed and printed.note else []
    if ref.system_for.get(dataset):
        notes.append(f"reference row: {ref.system_for[dataset]}")
    excluded = result.get("excluded_example_queries") or 0
    if excluded and expected is not None:  # the leak fix: our query set is smaller than the paper's
        notes.append(f"{excluded} few-shot example queries excluded here; the reported number included them")
    if dataset in ref.not_comparable:
        return Row(recipe.name, dataset, ref.metric, label, expected, actual, None, ref.tolerance, "not-comparable",
                   "; ".join([ref.not_comparable[dataset], *notes]), std)
    delta, v = verdict(expected, actual, ref.tolerance)
    if ref.informational and v not in ("no-reference", "no-result"):
        v = "info"
    return Row(recipe.name, dataset, ref.metric, label, expected, actual, delta, ref.tolerance, v, "; ".join(notes),
               std)


def _average(recipe, ref, label, table, avg_name, results) -> Row:
    """The paper's average: the mean over the datasets the table prints for this system.

    Where the printed average disagrees with the mean of the printed cells beyond rounding (AVERAGE_SLACK), the
    expected value is the mean of the printed cells, and the note gives the printed one.
    """
    if avg_name in ref.averages:  # an average over some of the datasets (the recipe's reference says which)
        members = list(ref.averages[avg_name])
    elif avg_name == reported.AVERAGE:
        members = [d for d, r in table.items() if not d.startswith(reported.AVERAGE) and r.value is not None]
    else:
        note = f"the reference does not say which datasets {avg_name} averages (its `averages`)"
        return Row(recipe.name, avg_name, ref.metric, label, table[avg_name].value, None, None, ref.tolerance,
                   "no-result", note)
    have = [results[d]["metrics"][ref.metric] for d in members if ref.metric in results.get(d, {}).get("metrics", {})]
    actual = fmean(have) if members and len(have) == len(members) else None
    expected, notes = table[avg_name].value, []
    cells = [table[d].value for d in members if d in table and table[d].value is not None]
    if expected is not None and cells and len(cells) == len(members):
        cells_mean = fmean(cells)
        if abs(cells_mean - expected) > AVERAGE_SLACK + _EPS:
            notes.append(f"printed average {expected:.3f} is not the mean of the printed cells ({cells_mean:.4f}): "
                         "compared with the mean of the cells")
            expected = round(cells_mean, 6)
    delta, v = verdict(expected, actual, ref.tolerance)
    if ref.informational and v not in ("no-reference", "no-result"):
        v = "info"
    if actual is None:
        notes.append(f"{len(have)} of {len(members)} datasets have results")
    return Row(recipe.name, avg_name, ref.metric, label, expected, actual, delta, ref.tolerance, v, "; ".join(notes))


def pinned_path(recipe: Recipe) -> Path:
    return pinned_dir() / f"{recipe.name}.json"


def _against_pinned(recipe: Recipe, results: dict, wanted: list[str]) -> list[Row]:
    path = pinned_path(recipe)
    pins = json.loads(path.read_text()) if path.is_file() else {}
    if pins and pins.get("version") != recipe.version:
        pins = {}  # pins of another recipe version say nothing about this one
    tol = recipe.regression.tolerance
    rows = []
    for dataset in wanted:
        expected_metrics = pins.get("datasets", {}).get(dataset, {})
        actual_metrics = results.get(dataset, {}).get("metrics", {})
        for metric in sorted(set(expected_metrics) | set(actual_metrics)):
            delta, v = verdict(expected_metrics.get(metric), actual_metrics.get(metric), tol)
            rows.append(Row(recipe.name, dataset, metric, "pinned", expected_metrics.get(metric),
                            actual_metrics.get(metric), delta, tol, v,
                            std=results.get(dataset, {}).get("std", {}).get(metric)))
    return rows


def pin(recipe: Recipe, results_dir: Path) -> Path:
    """Record the current results as the recipe's pinned regression reference."""
    results = load_results(recipe, results_dir)
    path = pinned_path(recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"recipe": recipe.name, "version": recipe.version,
               "datasets": {d: r["metrics"] for d, r in sorted(results.items())}}
    return write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
