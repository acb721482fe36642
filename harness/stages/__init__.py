"""Stages: plain functions from input artifacts and typed parameters to one output artifact.

Each stage lives in `harness/stages/<name>.py` and defines `STAGE = Stage(...)`. The runner, the tests
and a distributed executor all call the same `Stage.run(inputs, params, out, ctx)`. A stage declares
its inputs, how it is published and what it costs; the pipeline (`STAGE_NAMES`, the runner's steps,
what auto mode fetches, what a registry entry can stand in for, the plan's costs) is derived from
those declarations, so a new stage is one module here plus its recipe keys.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import HarnessError, close_matches

# The stages in pipeline order, corpus to score, each after its inputs; a recipe configures a subset of them.
# Found on first use (see `stage_names`): every module of this package that defines `STAGE`.
STAGE_NAMES: tuple[str, ...]


class StageParams(BaseModel):
    """Base of every stage's parameters: strict (unknown keys are errors), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Parameters that change how, not what: left out of the artifact key (e.g. batch size, threads).
    not_in_key: ClassVar[frozenset[str]] = frozenset()

    def on_device(self, device: str) -> StageParams:
        """These parameters for a run on `device` (`cpu`, `cuda:1`): a stage whose output depends on the device
        type records it in a parameter, and so in the artifact key (see `generate`)."""
        return self

    def key_params(self) -> dict:
        """The parameters that identify the output: all but `not_in_key`, with tiny model ids tagged
        with their build version (a changed tiny builder changes every key that uses it)."""
        params = self.model_dump(mode="json", exclude=set(self.not_in_key))
        for name, value in params.items():
            if isinstance(value, str) and value.startswith("tiny:"):
                from harness.models.tiny import BUILD_VERSION

                params[name] = f"{value}#build{BUILD_VERSION}"
        return params


def _local_executor():
    from harness.executors import LocalExecutor

    return LocalExecutor()


@dataclass
class Context:
    """What a stage may need beyond its inputs: the store, the dataset, the device, progress, and the
    executor that runs a long stage's shards (in this process, or on Ray: see `harness.executors`)."""

    store: Any
    dataset: str
    device: str = "cpu"
    data_dir: Path | None = None
    progress: bool = True  # False: no progress bars (`--quiet`)
    executor: Any = field(default_factory=_local_executor)

    def bar(self, total: int | None, desc: str):
        """A progress bar (items, rate, time left) on stderr; silent where progress is off."""
        from tqdm import tqdm

        return tqdm(total=total, desc=f"{self.dataset} {desc}", unit="it", disable=not self.progress,
                    leave=False, dynamic_ncols=True)


def per_query(params: dict, documents: int, queries: int) -> int:
    """The default work of a stage for `harness plan`: one unit per evaluation query."""
    return queries


@dataclass(frozen=True)
class Stage:
    name: str
    version: int  # bump when the stage's output for the same inputs changes
    kind: str  # the kind of artifact produced
    params: type[StageParams]
    run: Callable[..., None]  # run(inputs: dict[str, Artifact], params, out: Building, ctx: Context)
    resumable: bool = False
    # --- its place in the pipeline (the runner's `steps` builds it from these) ---
    # role → the stage whose artifact `run` receives under that role; a tuple names alternatives, the first one
    # the pipeline has serves (evaluate scores the reranked run when there is one, else the first-stage run).
    inputs: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    optional: tuple[str, ...] = ()  # roles the stage runs without
    # role → keys of this stage's own recipe parameters that configure a step of the input's stage built for
    # this stage alone (retrieval and negative mining each search an index with their own retriever and fields).
    own_inputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Built as an own input, the recipe section its keys are read from (None: the consumer's own section); the
    # stage is then left out where the recipe has no such section (the few-shot examples: generate's settings).
    settings_in: str | None = None
    # When the stage is in a pipeline: `recipe`: the recipe has a section for it; `always`; `input`: only as
    # another stage's own input.
    include: Literal["recipe", "always", "input"] = "recipe"
    # A required input missing: None leaves the stage out of the pipeline; a sentence is the recipe's error.
    missing: str | None = None
    # Needs the dataset's relevance judgments (qrels): left out for a corpus without them, whose pipeline then
    # ends with the trained reranker.
    judged: bool = False
    # --- published artifacts ---
    published_kinds: tuple[str, ...] = ()  # registry entry kinds that can stand in for its artifact (`published:`)
    fetch_in_auto: bool = False  # in auto mode, fetched when published (hours of GPU time) rather than rebuilt
    publish_kind: str | None = None  # the registry kind of its artifact for `harness publish` (None: not publishable)
    # --- its cost, for `harness plan` ---
    units: Callable[[dict, int, int], int] = per_query  # work units from (parameters, documents, queries)
    per_gpu_hour: int = 0  # units per GPU hour (0: CPU work, not counted in GPU hours); a recipe's `cost:` overrides

    def producers(self, role: str) -> tuple[str, ...]:
        """The stages that can give the input `role`, first choice first."""
        names = self.inputs[role]
        return (names,) if isinstance(names, str) else tuple(names)


def get_stage(name: str) -> Stage:
    """The stage named `name`, imported on first use (heavy libraries stay unimported until needed)."""
    if name not in stage_names():
        raise HarnessError(f"Unknown stage {name!r}.{close_matches(name, stage_names())} "
                           f"Stages: {', '.join(stage_names())}.")
    return import_module(f"harness.stages.{name}").STAGE


@cache
def stage_names() -> tuple[str, ...]:
    """Every stage of this package (each module here that defines `STAGE`), in pipeline order.

    Stage modules import their heavy libraries inside `run`: finding them all imports none of those.
    """
    declared = []
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        stage = getattr(import_module(f"{__name__}.{module.name}"), "STAGE", None)
        if isinstance(stage, Stage):
            if stage.name != module.name:
                raise RuntimeError(f"harness/stages/{module.name}.py declares stage {stage.name!r}: name them alike.")
            declared.append(stage)
    return pipeline_order(declared)


def pipeline_order(stages: list[Stage]) -> tuple[str, ...]:
    """The stages' names, each after the stages it takes inputs from.

    A depth-first walk from the sinks (the stages no other takes as input), visiting the inputs in
    their declared order, alternatives first choice first: corpus, index, retrieve, examples, generate, filter,
    negatives, train, rerank, evaluate.
    """
    declared = {s.name: s for s in stages}
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting or name not in declared:
            path = " → ".join([*visiting, name])
            raise RuntimeError(f"Stage inputs form a cycle or name an unknown stage: {path}.")
        visiting.append(name)
        for role in declared[name].inputs:
            for producer in declared[name].producers(role):
                visit(producer)
        visiting.pop()
        order.append(name)

    consumed = {p for s in declared.values() for role in s.inputs for p in s.producers(role)}
    for name in sorted(set(declared) - consumed):
        visit(name)
    for name in sorted(declared):  # stages in a cycle are no sinks: reported here
        visit(name)
    return tuple(order)


def __getattr__(name: str) -> Any:
    if name == "STAGE_NAMES":  # computed on first use: finding the stages imports their modules
        return stage_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_params(stage: str, values: dict, where: str) -> StageParams:
    """Validate a stage's parameters; one sentence naming `where` (file and key) on error."""
    model = get_stage(stage).params
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise HarnessError(f"{where}: {_explain(exc, model)}") from None


def _explain(exc: ValidationError, model: type[BaseModel]) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            hint = close_matches(str(err["loc"][-1]), model.model_fields)
            parts.append(f"unknown key {loc!r}{hint} Allowed: {allowed}.")
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r}).")
    return " ".join(parts)
