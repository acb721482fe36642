"""Per-query analysis: the evaluation's per-query scores read back from the store, and one system against another."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from harness.errors import HarnessError
from harness.store import Store

_TIE = 1e-12  # trec_eval scores of the same query are equal or differ by far more than float noise


@dataclass(frozen=True)
class PerQuery:
    """One recipe's per-query scores on one dataset: the mean over seeds per query when there are several."""

    recipe: str
    dataset: str
    metric: str
    scores: dict[str, float]
    seeds: tuple = ()  # the seeds averaged (empty: a single-seed results file)
    texts: dict[str, str] = field(default_factory=dict, compare=False)  # query id → text, where the store has it


def results_file(recipe, results_dir: Path, dataset: str) -> tuple[Path, dict]:
    """The recipe's results file for a dataset (current version, unmodified run), read; an error when absent."""
    from harness.compare import results_folder

    path = results_folder(recipe, results_dir) / f"{dataset.replace('/', '--')}.json"
    if not path.is_file():
        raise HarnessError(f"No results file {path}: run `harness reproduce {recipe.name} -d {dataset}` first.")
    return path, json.loads(path.read_text())


def per_query(result: dict, metric: str, store: Store, texts: bool = False, where: str = "") -> PerQuery:
    """The per-query scores of `metric` from the evaluate artifacts that the results file names, never recomputed.

    The evaluate stage keeps trec_eval `-c` semantics in its per_query (a judged query missing from the run is
    there with 0), so these are the queries the headline mean is taken over. Several seeds: the mean per query.
    A group such as CQADupStack: the forums' queries pooled, ids prefixed with the forum.
    """
    recipe, dataset = result.get("recipe", "?"), result.get("dataset", "?")
    where = where or f"{recipe}'s results on {dataset}"
    entries = [s for s in result.get("stages", []) if s.get("stage") == "evaluate"]
    if not entries:
        raise HarnessError(f"No evaluate artifact is named in {where}: "
                           f"run `harness reproduce {recipe} -d {dataset}` again.")
    pooled = len({e.get("dataset") for e in entries}) > 1
    by_seed: dict = {}
    names: dict[str, str] = {}
    for entry in entries:
        art = store.get(entry["key"])
        if art is None:
            raise HarnessError(f"The store {store.root} lacks {entry['key']}, the per-query scores behind {where}: "
                               f"run `harness reproduce {recipe} -d {dataset}` first (with this HARNESS_HOME).")
        rows = json.loads(art.file("scores.json").read_text())["per_query"]
        prefix = f"{entry.get('dataset')}/" if pooled else ""
        got = {}
        for qid, scores in rows.items():
            if metric not in scores:
                raise HarnessError(f"{art.path / 'scores.json'} has no per-query {metric!r} (it has "
                                   f"{sorted(scores)}): pick one of those with --metric.")
            got[prefix + qid] = scores[metric]
        by_seed.setdefault(entry.get("seed"), {}).update(got)
        if texts and "corpus" in art.manifest.get("inputs", {}):
            names.update({prefix + q: t for q, t in _query_texts(store, art.manifest["inputs"]["corpus"]).items()})
    runs = list(by_seed.values())
    if any(set(r) != set(runs[0]) for r in runs):
        raise HarnessError(f"The seeds in {where} were scored on different queries: rerun them with the same settings.")
    means = {q: fmean(r[q] for r in runs) for q in runs[0]}
    seeds = tuple(s for s in by_seed if s is not None)
    return PerQuery(recipe, dataset, metric, means, seeds, {q: names[q] for q in means if q in names})


def _query_texts(store: Store, corpus_key: str) -> dict[str, str]:
    from harness.data.beir import read_queries

    corpus = store.get(corpus_key, verify=False)
    if corpus is None or "queries.jsonl" not in corpus.manifest.get("files", {}):
        return {}
    return read_queries(corpus.file("queries.jsonl"))


@dataclass(frozen=True)
class Change:
    query: str
    text: str
    a: float
    b: float

    @property
    def delta(self) -> float:
        return self.b - self.a


@dataclass(frozen=True)
class Diff:
    """System B against system A on the queries both were scored on."""

    a: PerQuery
    b: PerQuery
    changes: tuple[Change, ...]  # sorted by delta, largest gain first
    only_a: int = 0  # queries scored for one system only (left out)
    only_b: int = 0

    @property
    def wins(self) -> int:
        return sum(c.delta > _TIE for c in self.changes)

    @property
    def losses(self) -> int:
        return sum(c.delta < -_TIE for c in self.changes)

    @property
    def ties(self) -> int:
        return len(self.changes) - self.wins - self.losses

    def gains(self, top: int) -> list[Change]:
        return [c for c in self.changes if c.delta > _TIE][:top]

    def drops(self, top: int) -> list[Change]:
        return [c for c in reversed(self.changes) if c.delta < -_TIE][:top]


def diff(a: PerQuery, b: PerQuery) -> Diff:
    """Per-query changes from A to B, largest gain first (ties broken by query id)."""
    common = set(a.scores) & set(b.scores)
    texts = {**a.texts, **b.texts}
    changes = sorted((Change(q, texts.get(q, ""), a.scores[q], b.scores[q]) for q in common),
                     key=lambda c: (-c.delta, c.query))
    return Diff(a, b, tuple(changes), len(set(a.scores) - common), len(set(b.scores) - common))


def load(recipe_a: str, recipe_b: str, dataset: str, metric: str, results_dir: Path, store: Store) -> Diff:
    """The diff of two recipes' results on a dataset, from their results files and the store."""
    from harness import recipes

    sides = []
    for name in (recipe_a, recipe_b):
        recipe = recipes.load(name)
        path, result = results_file(recipe, results_dir, dataset)
        sides.append(per_query(result, metric, store, texts=True, where=str(path)))
    return diff(*sides)


def report(d: Diff, top: int = 10, width: int = 70) -> str:
    """Markdown: the summary line, then the largest gains and losses with both scores."""
    from tabulate import tabulate

    from harness.significance import paired

    a, b, m = d.a.recipe, d.b.recipe, d.a.metric
    n = len(d.changes)
    lines = [f"{b} against {a} on {d.a.dataset}, {m} per query ({n} queries"
             + (f"; {d.only_a} only in {a}, {d.only_b} only in {b}, left out" if d.only_a or d.only_b else "") + ")"]
    if n:
        mean_a, mean_b = fmean(c.a for c in d.changes), fmean(c.b for c in d.changes)
        lines.append(f"mean {a} {mean_a:.4f}, {b} {mean_b:.4f}, delta {mean_b - mean_a:+.4f}; "
                     f"{d.wins} wins, {d.ties} ties, {d.losses} losses for {b}")
        if n >= 2:
            lines.append(f"paired two-sided t-test p = {paired(d.a.scores, d.b.scores, 't-test').p_value:.4g}")
    if any(s for s in (d.a.seeds, d.b.seeds)):
        lines.append("scores are per-query means over seeds (" + "; ".join(
            f"{p.recipe}: {', '.join(map(str, p.seeds))}" for p in (d.a, d.b) if p.seeds) + ")")
    for title, changes in (("largest gains", d.gains(top)), ("largest losses", d.drops(top))):
        lines += ["", f"{title} ({len(changes)}):", ""]
        body = [[c.query, _short(c.text, width), f"{c.a:.4f}", f"{c.b:.4f}", f"{c.delta:+.4f}"] for c in changes]
        lines.append(tabulate(body, headers=["query", "text", a, b, "delta"], tablefmt="github",
                              disable_numparse=True) if body else "(none)")
    return "\n".join(lines) + "\n"


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def plot(d: Diff, base: Path) -> list[Path]:
    """The sorted per-query differences (B − A) as a bar plot, written as `<base>.png` and `<base>.svg`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deltas = [c.delta for c in d.changes]
    colors = ["#2b8a3e" if x > _TIE else "#c92a2a" if x < -_TIE else "#868e96" for x in deltas]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    ax.bar(range(len(deltas)), deltas, width=1.0, color=colors, linewidth=0)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlim(-0.5, max(len(deltas), 1) - 0.5)
    ax.set_xlabel(f"queries, sorted by difference ({len(deltas)})")
    ax.set_ylabel(f"Δ {d.a.metric}")
    ax.set_title(f"{d.b.recipe} − {d.a.recipe} on {d.a.dataset}: {d.wins} wins, {d.ties} ties, {d.losses} losses",
                 fontsize=9)
    fig.tight_layout()
    base = Path(base)
    if base.suffix in (".png", ".svg"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")]
    fig.savefig(paths[0], format="png", metadata={"Software": None})
    fig.savefig(paths[1], format="svg", metadata={"Date": None})
    plt.close(fig)
    return paths

