"""Recipes: one YAML file per paper configuration, strictly validated, versioned, with `extends:`."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness import fast_yaml
from harness.errors import HarnessError, close_matches
from harness.paths import recipes_dir
from harness.stages import STAGE_NAMES, parse_params
from harness.store import canonical_json


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reference(Strict):
    """A reported table row to compare with: `results/reported/<table>.csv`, rows of `system`."""

    table: str
    system: str
    metric: str = "nDCG@10"
    # The papers print values truncated or rounded to 3 decimals (a printed 0.774 may stand for 0.7749, and a
    # truncated one is up to 0.001 below the true value): a tolerance below 0.001 cannot tell them apart.
    tolerance: float = Field(0.01, ge=0)
    label: str = ""  # short name in tables, e.g. "InPars-v2 Table 1"
    # Another system shown for information (e.g. Promptagator++): compared without a pass/fail verdict.
    informational: bool = False
    # dataset → why the reported number cannot be compared with ours (e.g. another metric or passage setting):
    # the row is shown with the verdict `not-comparable` and this reason, never left out.
    not_comparable: dict[str, str] = {}
    # dataset → the system (row of the same table) to compare with instead, with the reason in `notes`
    # (e.g. Climate-FEVER run with FEVER's prompt: the footnoted row).
    system_for: dict[str, str] = {}
    # An average row of the table that is not over every dataset it prints → the datasets it averages (e.g.
    # InPars-v2 Table 1's "Avg PrGator": "the average of datasets reported by Promptagator").
    averages: dict[str, list[str]] = {}


class Regression(Strict):
    """Our own pinned results (`results/pinned/<recipe>.json`), compared with a tight tolerance."""

    tolerance: float = Field(1e-4, ge=0)


class Recipe(Strict):
    name: str
    version: int = Field(ge=1)
    changelog: dict[int, str]
    paper: str
    description: str = ""
    extends: str | None = None
    datasets: list[str] = ["beir"]
    # Several runs with different seeds: every stage parameter named `seed` takes each value in turn; results
    # hold the mean, the sample standard deviation and each seed's scores. None: one run, as the stages say.
    seeds: list[int] | None = None
    stages: dict[str, dict[str, Any]]
    # dataset → stage → parameters that differ for that dataset (e.g. the Promptagator template).
    overrides: dict[str, dict[str, dict[str, Any]]] = {}
    # stage → registry id of the published artifact that fetch mode uses instead; `{dataset}` is the
    # dataset (cqadupstack), `{name}` the scored one (cqadupstack/android). null drops an inherited entry.
    published: dict[str, str | None] = {}
    reference: list[Reference] = []
    regression: Regression = Regression(tolerance=1e-4)
    notes: list[str] = []
    # stage → cost model overrides for `harness plan` (see harness/plan.py).
    cost: dict[str, dict[str, float]] = {}
    source: str = ""  # the file it came from (filled in by the loader)
    modified: dict[str, Any] = {}  # --set values of this run (filled in by the loader)

    @field_validator("stages", "published", "cost")
    @classmethod
    def _known_stages(cls, value: dict) -> dict:
        for stage in value:
            if stage not in STAGE_NAMES:
                raise ValueError(f"unknown stage {stage!r}.{close_matches(stage, STAGE_NAMES)} "
                                 f"Stages: {', '.join(STAGE_NAMES)}")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (len(value) < 2 or len(set(value)) != len(value) or min(value) < 0):
            raise ValueError("`seeds` lists two or more distinct non-negative integers (for one run, set the "
                             "stages' `seed` instead)")
        return value

    @field_validator("changelog")
    @classmethod
    def _changelog(cls, value: dict) -> dict:
        if not value:
            raise ValueError("a recipe needs a changelog line per version")
        return value

    def model_post_init(self, _context: Any) -> None:
        if self.version not in self.changelog:
            raise ValueError(f"version {self.version} has no changelog line")

    # --- per dataset -------------------------------------------------------------------------
    def stage_params(self, stage: str, dataset: str) -> dict[str, Any] | None:
        """The parameters of `stage` for `dataset` (None when the recipe has no such stage)."""
        if stage not in self.stages:
            return None
        base = dataset.split("/")[0]
        params = {**self.stages[stage], **self.overrides.get(base, {}).get(stage, {}),
                  **self.overrides.get(dataset, {}).get(stage, {})}
        return _substitute(params, {"dataset": base, "subset": dataset.split("/")[-1]})

    def published_id(self, stage: str, dataset: str) -> str | None:
        template = self.published.get(stage)
        if not template:
            return None
        return template.format(dataset=dataset.split("/")[0], subset=dataset.split("/")[-1], name=dataset)

    @property
    def variant(self) -> str:
        """'' for the recipe as written; a short hash of the --set values otherwise."""
        return hashlib.sha256(canonical_json(self.modified).encode()).hexdigest()[:8] if self.modified else ""


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str) and "{" in value:
        try:
            return value.format(**names)
        except (KeyError, IndexError, ValueError):
            return value  # not a placeholder of ours (e.g. a prompt template's {document})
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    return value


def available() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = fast_yaml.safe_load(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise HarnessError(f"{path}: nested too deeply to be a recipe.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise HarnessError(f"{path}{where}: not valid YAML ({problem}).") from None
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: not UTF-8 text.") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: a recipe is a YAML mapping of keys (name, version, stages, ...).")
    return data


def _merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, mapping by mapping. An empty mapping (`published: {}`) replaces what `base`
    had, and a null (`train: null`) removes the inherited key: a variant can clear what it does not want."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _raw(name_or_path: str, seen: tuple[str, ...] = ()) -> tuple[dict, Path]:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = recipes_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise HarnessError(
                f"Unknown recipe {name_or_path!r}.{close_matches(name_or_path, available())} "
                f"Recipes in {recipes_dir()}: {', '.join(available())}."
            )
    data = _read_yaml(path)
    parent = data.get("extends")
    if parent:
        if not isinstance(parent, str):
            raise HarnessError(f"{path}: `extends` must be the name of a recipe, got {parent!r}.")
        if parent in seen:
            raise HarnessError(f"{path}: `extends: {parent}` makes a cycle ({' → '.join((*seen, parent))}).")
        try:
            base, _ = _raw(parent, (*seen, parent))
        except HarnessError as exc:
            raise HarnessError(f"{path}: extends: {exc}") from None
        # A variant inherits what it does not say, except its identity and history.
        base = {k: v for k, v in base.items() if k not in ("name", "version", "changelog", "extends", "description")}
        data = _merge(base, data)
    return data, path


def load(name_or_path: str, sets: list[str] | tuple[str, ...] = ()) -> Recipe:
    """The resolved recipe, with `--set stage.param=value` applied; every stage's parameters validated."""
    data, path = _raw(name_or_path)
    modified: dict[str, Any] = {}
    for item in sets:
        key, eq, text = item.partition("=")
        parts = key.split(".")
        if not eq or len(parts) != 2 or parts[0] not in STAGE_NAMES:
            raise HarnessError(f"--set {item!r}: expected STAGE.PARAM=VALUE with a stage of {', '.join(STAGE_NAMES)}.")
        try:
            value = fast_yaml.safe_load(text) if text else ""
        except (yaml.YAMLError, RecursionError):
            raise HarnessError(f"--set {item!r}: {text!r} is not a YAML value.") from None
        data.setdefault("stages", {}).setdefault(parts[0], {})[parts[1]] = value
        modified[key] = value
    data["source"] = str(path)
    data["modified"] = modified
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise HarnessError(f"{path}: {_explain(exc)}") from None
    if recipe.name != path.stem and path.parent == recipes_dir():
        raise HarnessError(f"{path}: `name: {recipe.name}` differs from the file name {path.stem!r}.")
    for stage, params in recipe.stages.items():
        parse_params(stage, params, f"{path}: stages.{stage}")
    for dataset, stages in recipe.overrides.items():
        for stage, params in stages.items():
            if stage not in recipe.stages:
                raise HarnessError(f"{path}: overrides.{dataset}.{stage}: the recipe has no stage {stage!r}.")
            parse_params(stage, {**recipe.stages[stage], **params}, f"{path}: overrides.{dataset}.{stage}")
    return recipe


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            model = Recipe if len(err["loc"]) == 1 else Reference
            parts.append(f"unknown key {loc!r}.{close_matches(key, model.model_fields)} "
                         f"Allowed: {', '.join(k for k in model.model_fields if k not in ('source', 'modified'))}.")
        elif err["type"] == "missing":
            parts.append(f"missing key {loc!r}.")
        else:
            parts.append(f"{loc or 'recipe'}: {err['msg']} (got {str(err.get('input'))[:80]!r}).")
    return " ".join(" ".join(parts).split())  # one line, even when a key holds a newline
