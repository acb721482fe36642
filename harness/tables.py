"""Tables for papers and READMEs: comparison rows as Markdown, LaTeX (booktabs), CSV or an HTML report.

Every reported number keeps the label of its source (paper and table); our scores show mean ± standard deviation
when the results hold several seeds; `--significance` marks systems that differ from the first (the baseline) on
the per-query scores of the evaluation, read from the store.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean

from harness.compare import Row
from harness.errors import HarnessError
from harness.significance import CORRECTIONS, DEFAULT_RESAMPLES, DEFAULT_SEED, TESTS, Paired

FORMATS = ("markdown", "latex", "csv", "html")
HIGHLIGHTS = ("best+second", "best", "none")
DAGGER = "†"


@dataclass(frozen=True)
class Options:
    """How a table is built and printed (the `harness table` options)."""

    significance: str | None = None  # None, "t-test" or "randomization"
    alpha: float = 0.05
    correction: str = "none"  # or "holm"
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    references: tuple[str, ...] = ()  # reference labels to keep; () keeps all
    scale: float = 1.0  # 100: scores printed ×100, as most IR papers do (CSV keeps the 0-1 values)
    digits: int | None = None  # decimals; default 4, or 2 with scale 100
    highlight: str = "best+second"  # LaTeX: best per row bold, second best underlined

    def __post_init__(self):
        if self.significance not in (None, *TESTS):
            raise ValueError(f"significance must be one of {TESTS}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}")
        if self.highlight not in HIGHLIGHTS:
            raise ValueError(f"highlight must be one of {HIGHLIGHTS}")

    @property
    def decimals(self) -> int:
        return self.digits if self.digits is not None else (4 if self.scale == 1 else 2)


@dataclass
class Ours:
    """Our score for one recipe on one dataset, with its spread over seeds and its test against the baseline."""

    mean: float | None
    std: float | None = None
    seeds: int | None = 1  # None: several, number unknown (a comparison row with a std)
    test: Paired | None = None
    p_value: float | None = None  # the p-value the decision uses (Holm-adjusted with --correction holm)
    significant: bool = False
    note: str = ""  # e.g. queries scored for one of the two systems only, left out of the test


@dataclass
class Table:
    """Comparison rows plus what the wide layouts need: systems (baseline first), our scores, the legend."""

    rows: list[Row]
    systems: list[str]
    metric: dict[str, str]  # recipe → headline metric (its first reference's)
    ours: dict[tuple[str, str], Ours]  # (recipe, dataset) → our score
    options: Options = field(default_factory=Options)
    versions: dict[str, int] = field(default_factory=dict)
    title: str = ""

    @classmethod
    def from_rows(cls, rows: list[Row], title: str = "", options: Options | None = None) -> Table:
        """A table of comparison rows alone (no seeds, no tests): what `harness compare` prints."""
        systems: list[str] = []
        metric: dict[str, str] = {}
        ours: dict[tuple[str, str], Ours] = {}
        for r in rows:
            if r.recipe not in systems:
                systems.append(r.recipe)
                metric[r.recipe] = r.metric
            if r.metric == metric[r.recipe] and not _is_average(r.dataset):
                std = getattr(r, "std", None)  # rows of results with several seeds carry their spread
                ours.setdefault((r.recipe, r.dataset), Ours(r.actual, std, 1 if std is None else None))
        return cls(rows, systems, metric, ours, options or Options(), title=title)

    # --- what the renderers ask ------------------------------------------------------------------
    @property
    def datasets(self) -> list[str]:
        """The datasets of the rows, in order, without the papers' averages."""
        out: list[str] = []
        for r in self.rows:
            if not _is_average(r.dataset) and r.dataset not in out:
                out.append(r.dataset)
        for _, dataset in self.ours:
            if dataset not in out:
                out.append(dataset)
        return out

    @property
    def tested(self) -> bool:
        return any(o.test is not None for o in self.ours.values())

    def cell(self, recipe: str, dataset: str, metric: str | None = None) -> Ours | None:
        if metric is not None and metric != self.metric.get(recipe):
            return None
        return self.ours.get((recipe, dataset))

    def legend(self) -> list[str]:
        """Plain-text lines under a table: significance, seeds, scale."""
        from harness.significance import describe

        o, lines = self.options, []
        if o.significance and len(self.systems) > 1:
            averaged = any(c.test is not None and c.seeds != 1 for c in self.ours.values()) or any(
                c.seeds != 1 for (r, _), c in self.ours.items() if r == self.systems[0])
            steps = {c.test.resolution for c in self.ours.values() if c.test is not None}
            lines.append(f"{DAGGER} " + describe(o.significance, o.alpha, o.correction, o.resamples, o.seed, averaged,
                                                 steps.pop() if len(steps) == 1 else None)
                         + f"; first system: {self.systems[0]}.")
            lines += [f"{r} on {d}: {c.note}." for (r, d), c in self.ours.items() if c.note]
        seeds = {r: c.seeds for (r, _), c in self.ours.items() if c.std is not None}
        if seeds:
            lines.append("± sample standard deviation over seeds (" + ", ".join(
                f"{r}: {n} seeds" if n else r for r, n in seeds.items()) + "); the score is the mean over seeds.")
        if o.scale != 1:
            lines.append(f"scores ×{o.scale:g}.")
        return lines

    def caption(self) -> str:
        metrics = sorted(set(self.metric.values()))
        if self.versions:
            systems = ", ".join(f"{r} v{v}" for r, v in self.versions.items())
            return f"{'/'.join(metrics)} per dataset. Recipes: {systems}."
        return self.title


def _is_average(dataset: str) -> bool:
    return dataset.startswith("average")


# --- building a table from results ------------------------------------------------------------------------
def build(recipe_names: list[str], results_dir: Path, datasets: list[str] | None = None, store=None,
          options: Options | None = None, pinned: bool = False) -> Table:
    """Compare each recipe, keep the chosen references, read seeds' spread, and test against the first recipe."""
    from harness import recipes
    from harness.compare import compare, load_results
    from harness.data.catalog import expand

    options = options or Options()
    rows: list[Row] = []
    results, metric, versions = {}, {}, {}
    for name in recipe_names:
        recipe = recipes.load(name)
        versions[name] = recipe.version
        results[name] = load_results(recipe, results_dir)
        metric[name] = recipe.reference[0].metric if recipe.reference else "nDCG@10"
        got = compare(recipe, results_dir, datasets, pinned=pinned)
        rows += _keep_references(got, options.references)
        wanted = expand(datasets) if datasets else [d for d in expand(recipe.datasets) if d in results[name]] or \
            expand(recipe.datasets)
        for dataset in wanted:  # our score shows even where no reference (or no kept one) has the dataset
            if not any(r.recipe == name and r.dataset == dataset for r in rows):
                actual = results[name].get(dataset, {}).get("metrics", {}).get(metric[name])
                rows.append(Row(name, dataset, metric[name], "", None, actual, None, 0.0,
                                "no-reference" if actual is not None else "no-result"))
    if options.references:
        labels = sorted({r.reference for r in rows if r.reference})
        missing = [label for label in options.references if label not in labels]
        if missing:
            known = sorted({r.label or f"{r.table}: {r.system}"
                            for n in recipe_names for r in recipes.load(n).reference})
            raise HarnessError(f"No reference labelled {missing[0]!r} in the recipes {', '.join(recipe_names)}: "
                               f"use one of {'; '.join(known)} with --reference.")
    table = Table(rows, list(recipe_names), metric, {}, options, versions)
    for name in recipe_names:
        for dataset in table.datasets:
            result = results[name].get(dataset)
            if result is None:
                table.ours[(name, dataset)] = Ours(None)
                continue
            n_seeds = len(result.get("seeds") or []) or 1
            table.ours[(name, dataset)] = Ours(result["metrics"].get(metric[name]),
                                               result.get("std", {}).get(metric[name]) if n_seeds > 1 else None,
                                               n_seeds)
    if options.significance and len(recipe_names) > 1:
        if store is None:
            from harness.store import Store

            store = Store()
        _test(table, results, store)
    return table


def _keep_references(rows: list[Row], labels: tuple[str, ...]) -> list[Row]:
    return [r for r in rows if not labels or r.reference in labels]


def _test(table: Table, results: dict, store) -> None:
    """Each system against the baseline, per dataset, on the baseline's headline metric; Holm over all tests."""
    from harness.diff import per_query
    from harness.significance import holm, paired

    o = table.options
    test = o.significance or "t-test"
    base = table.systems[0]
    metric = table.metric[base]
    other = [n for n in table.systems[1:] if table.metric[n] != metric]
    if other:
        raise HarnessError(f"--significance tests one metric: {base} reports {metric}, {other[0]} "
                           f"{table.metric[other[0]]}; put recipes with the same headline metric in one table.")
    done: list[Ours] = []
    for dataset in table.datasets:
        if dataset not in results[base]:
            continue
        baseline = per_query(results[base][dataset], metric, store)
        for name in table.systems[1:]:
            cell = table.ours[(name, dataset)]
            if dataset not in results[name] or name == base:
                continue
            scores = per_query(results[name][dataset], metric, store)
            cell.test = paired(baseline.scores, scores.scores, test, o.resamples, o.seed)
            if cell.test.n < max(len(baseline.scores), len(scores.scores)):
                cell.note = (f"tested on the {cell.test.n} queries both were scored on ({base} {len(baseline.scores)}, "
                             f"{name} {len(scores.scores)})")
            done.append(cell)
    p_values = [c.test.p_value for c in done if c.test]
    adjusted = holm(p_values) if o.correction == "holm" else p_values
    for cell, p in zip(done, adjusted, strict=True):
        cell.p_value, cell.significant = p, p < o.alpha


# --- numbers -------------------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 4, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _delta(value: float | None, digits: int = 4, scale: float = 1.0) -> str:
    return "" if value is None else f"{value * scale:+.{digits}f}"


def _ours_text(t: Table, r: Row) -> str:
    """The actual score of a row: mean ± std over seeds, a dagger when significantly different from the baseline."""
    o = t.options
    text = _fmt(r.actual, o.decimals, o.scale)
    cell = t.cell(r.recipe, r.dataset, r.metric)
    if cell is None or r.actual is None:
        return text
    if cell.std is not None:
        text += f" ± {cell.std * o.scale:.{o.decimals}f}"
    return text + (DAGGER if cell.significant else "")


def _p_text(p: float | None) -> str:
    return "" if p is None else f"{p:.4g}"


def comparison(rows: list[Row] | Table) -> list[list[str]]:
    """The long form: one line per comparison (plus a p-value column when the table has tests)."""
    t = rows if isinstance(rows, Table) else Table.from_rows(rows)
    o = t.options
    header = ["recipe", "dataset", "metric", "reference", "expected", "actual", "delta", "tolerance", "verdict"]
    tested = t.tested
    if tested:
        header.append("p")
    body = []
    for r in t.rows:
        line = [r.recipe, r.dataset, r.metric, r.reference or "—", _fmt(r.expected, o.decimals, o.scale),
                _ours_text(t, r), _delta(r.delta, o.decimals, o.scale), f"{r.tolerance * o.scale:g}",
                r.verdict + (f" ({r.note})" if r.note else "")]
        if tested:
            cell = t.cell(r.recipe, r.dataset, r.metric)
            line.append(_p_text(cell.p_value) if cell else "")
        body.append(line)
    return [header, *body]


def render(rows: list[Row] | Table, fmt: str, title: str = "") -> str:
    """The table in one of FORMATS; a list of comparison rows is rendered as a table of its own."""
    t = rows if isinstance(rows, Table) else Table.from_rows(rows, title)
    if title and not t.title:
        t = replace(t, title=title)
    if fmt == "markdown":
        return markdown(t)
    if fmt == "latex":
        return latex(t)
    if fmt == "csv":
        return csv_text(t)
    if fmt == "html":
        return html_report(t)
    raise ValueError(fmt)


def markdown(rows: list[Row] | Table) -> str:
    from tabulate import tabulate

    t = rows if isinstance(rows, Table) else Table.from_rows(rows)
    header, *body = comparison(t)
    text = tabulate(body, headers=header, tablefmt="github", disable_numparse=True) + "\n"
    legend = t.legend()
    return text + ("\n" + "\n".join(legend) + "\n" if legend else "")


CSV_COLUMNS = ("recipe", "version", "dataset", "metric", "reference", "expected", "actual", "std", "seeds", "delta",
               "tolerance", "verdict", "note", "p_value", "p_resolution", "significant")


def csv_text(rows: list[Row] | Table) -> str:
    """One line per comparison, values on the 0-1 scale; p_value empty for the baseline and untested rows."""
    t = rows if isinstance(rows, Table) else Table.from_rows(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in t.rows:
        cell = t.cell(r.recipe, r.dataset, r.metric)
        test = cell.test if cell else None
        writer.writerow([r.recipe, t.versions.get(r.recipe, ""), r.dataset, r.metric, r.reference, _num(r.expected),
                         _num(r.actual), _num(cell.std if cell else None), cell.seeds if cell and r.actual is not None
                         else "", _num(r.delta), r.tolerance, r.verdict, r.note,
                         _num(cell.p_value if test and cell else None), _num(test.resolution if test else None),
                         ("yes" if cell and cell.significant else "no") if test else ""])
    return out.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


# --- LaTeX ---------------------------------------------------------------------------------------------------
def latex(rows: list[Row] | Table, title: str = "") -> str:
    """booktabs: datasets × systems; per system each reference's reported number (headed by its label), ours and
    the delta to the first reference; best (bold) and second best (underlined) of ours per row; the average over
    the datasets every system has under a rule; a caption naming the recipes and versions, and the legend."""
    t = rows if isinstance(rows, Table) else Table.from_rows(rows, title)
    o = t.options
    esc = _latex_escape
    groups: list[tuple[str, list[str]]] = []  # (system, reference column labels)
    expected: dict[tuple[str, str, str], float | None] = {}
    for system in t.systems:
        labels: list[str] = []
        for r in t.rows:
            if r.recipe != system or r.metric != t.metric[system] or not r.reference:
                continue
            label, k = r.reference, 1
            while (system, label, r.dataset) in expected:  # two references with one label: two columns, none lost
                k += 1
                label = f"{r.reference} ({k})"
            expected[(system, label, r.dataset)] = r.expected
            if label not in labels:
                labels.append(label)
        groups.append((system, labels))
    widths = [len(labels) + 1 + bool(labels) for _, labels in groups]
    datasets = t.datasets
    lines = [
        "% generated by `harness table --format latex`; needs \\usepackage{booktabs}",
        "\\begin{table}[t]", "\\centering", "\\small",
        "\\begin{tabular}{l" + "r" * sum(widths) + "}", "\\toprule",
        "Dataset & " + " & ".join(f"\\multicolumn{{{w}}}{{c}}{{{esc(s)} ({esc(t.metric[s])})}}"
                                  for (s, _), w in zip(groups, widths, strict=True)) + " \\\\",
    ]
    start, rules = 2, []
    for w in widths:
        rules.append(f"\\cmidrule(lr){{{start}-{start + w - 1}}}")
        start += w
    lines.append(" ".join(rules))
    heads = []
    for _, labels in groups:
        heads += [esc(label) for label in labels] + ["Ours"] + (["$\\Delta$"] if labels else [])
    lines += [" & " + " & ".join(heads) + " \\\\", "\\midrule"]

    def row_cells(values: dict[str, dict]) -> list[str]:
        ours = {s: v["ours"] for s, v in values.items() if v["ours"] is not None}
        ranks = _ranks(ours, o) if len(ours) > 1 and o.highlight != "none" else {}
        cols = []
        for system, labels in groups:
            v = values[system]
            cols += [_fmt(v["reported"].get(label), o.decimals, o.scale) for label in labels]
            text = _fmt(v["ours"], o.decimals, o.scale)
            rank = ranks.get(system)
            if rank == 1:
                text = f"\\textbf{{{text}}}"
            elif rank == 2 and o.highlight == "best+second":
                text = f"\\underline{{{text}}}"
            if v.get("std") is not None:
                text += f"\\,$\\pm$\\,{v['std'] * o.scale:.{o.decimals}f}"
            if v.get("significant"):
                text += "$^\\dagger$"
            cols.append(text)
            if labels:
                first = v["reported"].get(labels[0])
                delta = None if first is None or v["ours"] is None else v["ours"] - first
                cols.append(_delta(delta, o.decimals, o.scale).replace("-", "$-$"))
        return cols

    for dataset in datasets:
        values = {}
        for system, labels in groups:
            cell = t.cell(system, dataset) or Ours(None)
            values[system] = {"ours": cell.mean, "std": cell.std, "significant": cell.significant,
                              "reported": {label: expected.get((system, label, dataset)) for label in labels}}
        lines.append(esc(dataset) + " & " + " & ".join(row_cells(values)) + " \\\\")
    averaged = [d for d in datasets if all((t.cell(s, d) or Ours(None)).mean is not None for s in t.systems)]
    if len(averaged) > 1:
        values = {}
        for system, labels in groups:
            reported = {}
            for label in labels:
                got = [expected.get((system, label, d)) for d in averaged]
                reported[label] = fmean(got) if all(g is not None for g in got) else None  # type: ignore[arg-type]
            values[system] = {"ours": fmean(t.ours[(system, d)].mean for d in averaged),  # type: ignore[misc]
                              "reported": reported}
        lines += ["\\midrule", f"Average ({len(averaged)} datasets) & " + " & ".join(row_cells(values)) + " \\\\"]
    lines += ["\\bottomrule", "\\end{tabular}"]
    notes = t.legend()
    if any(labels for _, labels in groups):
        notes.append("Δ: ours − the system's first reported column (each reported column headed by its source).")
    caption = " ".join([t.caption(), *notes]).strip()
    if caption:
        lines.append(f"\\caption{{{esc(caption)}}}")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def _ranks(ours: dict[str, float], o: Options) -> dict[str, int]:
    """1 for the best printed value of the row (ties share it), 2 for the second best distinct value."""
    printed = {s: round(v * o.scale, o.decimals) for s, v in ours.items()}
    distinct = sorted(set(printed.values()), reverse=True)
    return {s: distinct.index(v) + 1 for s, v in printed.items() if distinct.index(v) < 2}


def _latex_escape(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#"),
                 ("$", "\\$"), ("{", "\\{"), ("}", "\\}"), ("~", "\\textasciitilde{}"), ("^", "\\^{}")):
        text = text.replace(a, b)
    for a, b in ((DAGGER, "$^\\dagger$"), ("±", "$\\pm$"), ("×", "$\\times$"), ("<", "$<$"), (">", "$>$"),
                 ("−", "$-$"), ("Δ", "$\\Delta$")):
        text = text.replace(a, b)
    return text


# --- HTML ----------------------------------------------------------------------------------------------------
def delta_chart_svg(t: Table) -> str:
    """Per-dataset deltas as horizontal bars (inline SVG): ours − reported per reference, with the tolerance as a
    grey band; and, with several systems, each system − the first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    o = t.options
    vs_reported = [r for r in t.rows if r.delta is not None]
    vs_base = []
    if len(t.systems) > 1:
        base = t.systems[0]
        for dataset in t.datasets:
            b = t.cell(base, dataset)
            for system in t.systems[1:]:
                c = t.cell(system, dataset)
                if b and c and b.mean is not None and c.mean is not None:
                    vs_base.append((f"{dataset} · {system}" + (f" {DAGGER}" if c.significant else ""), c.mean - b.mean))
    panels = [p for p in (vs_reported, vs_base) if p]
    if not panels:
        return ""
    heights = [max(1.2, 0.28 * len(p) + 0.9) for p in panels]
    color = {"ok": "#2f9e44", "above": "#1c7ed6", "below": "#e03131"}
    with matplotlib.rc_context({"svg.hashsalt": "harness", "font.size": 8}):
        fig, axes = plt.subplots(len(panels), 1, figsize=(5.5, sum(heights)), dpi=100,
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
        ax_iter = iter(axes[:, 0])
        if vs_reported:
            ax = next(ax_iter)
            ys = range(len(vs_reported))
            ax.barh(list(ys), [2 * r.tolerance * o.scale for r in vs_reported],
                    left=[-r.tolerance * o.scale for r in vs_reported], color="#e9ecef", height=0.8)
            ax.barh(list(ys), [r.delta * o.scale for r in vs_reported],  # type: ignore[operator]
                    color=[color.get(r.verdict, "#868e96") for r in vs_reported], height=0.5)
            ax.set_yticks(list(ys), [f"{r.dataset} · {r.recipe} vs {r.reference}" for r in vs_reported])
            ax.invert_yaxis()
            ax.axvline(0, color="black", linewidth=0.6)
            ax.set_title(f"ours − reported (grey: tolerance){' ×' + format(o.scale, 'g') if o.scale != 1 else ''}")
        if vs_base:
            ax = next(ax_iter)
            ys = range(len(vs_base))
            ax.barh(list(ys), [d * o.scale for _, d in vs_base],
                    color=["#1c7ed6" if d > 0 else "#e03131" for _, d in vs_base], height=0.5)
            ax.set_yticks(list(ys), [label for label, _ in vs_base])
            ax.invert_yaxis()
            ax.axvline(0, color="black", linewidth=0.6)
            ax.set_title(f"each system − {t.systems[0]}")
        for ax in axes[:, 0]:  # symmetric around 0, so that gains and losses read alike
            low, high = ax.get_xlim()
            limit = max(abs(low), abs(high)) * 1.1 or 1.0
            ax.set_xlim(-limit, limit)
            ax.xaxis.set_major_locator(MaxNLocator(5))
        fig.tight_layout()
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
        plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg"):]


def html_report(rows: list[Row] | Table, title: str = "") -> str:
    """A static page: the comparison table with its legend and, beside it, the per-dataset deltas (inline SVG)."""
    t = rows if isinstance(rows, Table) else Table.from_rows(rows, title)
    header, *body = comparison(t)
    heading = t.title or t.caption() or "harness results"
    chart = delta_chart_svg(t)
    color = {"ok": "#d7f5dd", "above": "#dde8ff", "below": "#ffd9d9"}
    trs = "\n".join(
        f"<tr style='background:{color.get(r.verdict, '#f3f3f3')}'>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>" for r, line in zip(t.rows, body, strict=True)
    )
    legend = "".join(f"<p class='legend'>{html.escape(line)}</p>" for line in t.legend())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(heading)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:2px 8px;border-bottom:1px solid #ccc;text-align:right}}
.side{{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}}.legend{{font-size:90%;color:#444}}</style>
</head><body><h1>{html.escape(heading)}</h1>
<div class="side"><div>
<table><thead><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in header)}</tr></thead><tbody>
{trs}
</tbody></table>
{legend}</div>
{f'<figure>{chart}</figure>' if chart else ''}
</div>
</body></html>
"""


START, END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(path, text: str) -> None:
    """Replace the README's results section (between the two markers) with `text`."""
    content = path.read_text(encoding="utf-8")
    if START not in content or END not in content:
        raise HarnessError(f"{path} has no {START} ... {END} section to fill.")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text.rstrip()}\n{END}{tail}", encoding="utf-8")
