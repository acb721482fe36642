"""The papers' reported tables (`results/reported/*.csv`): read as printed, labels mapped to dataset ids here only."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache

from harness.errors import HarnessError, close_matches
from harness.paths import reported_dir

AVERAGE = "average"

# Printed dataset labels (normalised: lower case, bracketed and parenthesised parts dropped, only
# letters and digits) → harness dataset ids. The one place where the papers' names meet ours.
_ALIASES = {
    "trec-covid": ["treccovid"],
    "nfcorpus": ["nfcorpus", "nfc"],
    "nq": ["nq", "naturalquestions"],
    "hotpotqa": ["hotpotqa", "hotpot"],
    "fiqa": ["fiqa", "fiqa2018"],
    "arguana": ["arguana", "arg"],
    "webis-touche2020": ["webistouche2020", "touche", "touche2020", "touché", "touché2020"],
    "cqadupstack": ["cqadupstack"],
    "quora": ["quora"],
    "dbpedia-entity": ["dbpediaentity", "dbpedia", "dbp"],
    "scidocs": ["scidocs"],
    "fever": ["fever"],
    "climate-fever": ["climatefever", "climate"],
    "scifact": ["scifact"],
    "bioasq": ["bioasq"],
    "signal1m": ["signal1m", "signal"],
    "trec-news": ["trecnews"],
    "robust04": ["robust04", "robust"],
    "msmarco": ["msmarcodev", "msmarco"],
    "trec-dl-2020": ["trecdl2020"],
    AVERAGE: ["avg", "average", "averageofthe11"],
    "average-promptagator": ["avgprgator"],
}
_LOOKUP = {alias: ds for ds, aliases in _ALIASES.items() for alias in aliases}
_MISSING = re.compile(r"^(MISSING|NA)\b")
_MARKED = re.compile(r"^\(([\d.]+)\*\)$")


@dataclass(frozen=True)
class Reported:
    table: str
    dataset: str  # harness id (cqadupstack/android for a forum), or `average`
    label: str  # as printed
    system: str
    metric: str  # x100 tables are scaled to 0-1 and the suffix dropped
    value: float | None  # None: the paper prints no number
    source: str
    note: str = ""


def _dataset_id(label: str) -> str:
    text = label.lower()
    forum = re.match(r"cqadupstack-(\w+)", text)
    if forum:
        return f"cqadupstack/{forum.group(1)}"
    text = re.sub(r"\[.*?\]|\(.*?\)", "", text)
    key = re.sub(r"[^a-z0-9é]", "", text)
    if key not in _LOOKUP:
        raise HarnessError(f"Reported dataset label {label!r} has no harness id: add it to _ALIASES in {__file__}.")
    return _LOOKUP[key]


def _value(text: str, scale: float) -> tuple[float | None, str]:
    text = text.strip()
    if _MISSING.match(text):
        return None, text
    marked = _MARKED.match(text)
    if marked:  # printed in parentheses with a star: a footnoted setting, kept with its note
        return round(float(marked.group(1)) * scale, 6), f"printed {text}"
    return round(float(text) * scale, 6), ""


def tables() -> list[str]:
    return sorted(p.stem for p in reported_dir().glob("*.csv"))


@cache
def load(table: str) -> tuple[Reported, ...]:
    """Every row of one reported table, values on a 0-1 scale, printed dashes as None."""
    path = reported_dir() / f"{table}.csv"
    if not path.is_file():
        raise HarnessError(f"No reported table {table!r} in {reported_dir()}.{close_matches(table, tables())}")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            metric, scale = row["metric"], 1.0
            if metric.endswith("(x100)"):
                metric, scale = metric.replace("(x100)", "").strip(), 0.01
            value, note = _value(row["value"], scale)
            if "hidden in compiled PDF" in row["dataset"]:  # not printed in the paper as published
                value, note = None, "column hidden in the compiled PDF: not printed"
            rows.append(Reported(table, _dataset_id(row["dataset"]), row["dataset"], row["system"], metric, value,
                                 row["source"], note))
    return tuple(rows)


def lookup(table: str, system: str, metric: str) -> dict[str, Reported]:
    """dataset id → reported row, for one system and metric of a table; an error if the system is unknown."""
    rows = [r for r in load(table) if r.system == system and r.metric == metric]
    if not rows:
        systems = sorted({r.system for r in load(table)})
        raise HarnessError(f"Reported table {table!r} has no system {system!r} with metric {metric!r}."
                           f"{close_matches(system, systems)} Systems: {'; '.join(systems)}.")
    return {r.dataset: r for r in rows}
