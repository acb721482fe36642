"""Stages: plain functions from input artifacts and typed parameters to one output artifact.

Each stage lives in `harness/stages/<name>.py` and defines `STAGE = Stage(...)`. The runner, the tests
and a distributed executor all call the same `Stage.run(inputs, params, out, ctx)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import HarnessError, close_matches

# The order of the pipeline, corpus to score; a recipe configures a subset of them.
STAGE_NAMES = ("corpus", "index", "retrieve", "generate", "filter", "negatives", "train", "rerank", "evaluate")


class StageParams(BaseModel):
    """Base of every stage's parameters: strict (unknown keys are errors), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Parameters that change how, not what: left out of the artifact key (e.g. batch size, threads).
    not_in_key: ClassVar[frozenset[str]] = frozenset()

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


@dataclass(frozen=True)
class Stage:
    name: str
    version: int  # bump when the stage's output for the same inputs changes
    kind: str  # the kind of artifact produced
    params: type[StageParams]
    run: Callable[..., None]  # run(inputs: dict[str, Artifact], params, out: Building, ctx: Context)
    resumable: bool = False


def get_stage(name: str) -> Stage:
    """The stage named `name`, imported on first use (heavy libraries stay unimported until needed)."""
    if name not in STAGE_NAMES:
        raise HarnessError(
            f"Unknown stage {name!r}.{close_matches(name, STAGE_NAMES)} Stages: {', '.join(STAGE_NAMES)}.")
    return import_module(f"harness.stages.{name}").STAGE


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
