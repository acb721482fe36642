"""The runner: turns a recipe and a dataset into the pipeline of stages, and reuses, fetches or builds each artifact.

One generic pipeline, corpus → index → retrieve → generate → filter → negatives → train → rerank →
evaluate; a recipe configures the stages it uses, and the wiring below follows from which are present.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from harness.data.catalog import get_dataset, members
from harness.errors import HarnessError
from harness.recipes import Recipe
from harness.stages import Context, StageParams, get_stage, parse_params
from harness.store import Artifact, CorruptArtifact, Store, artifact_key

log = logging.getLogger(__name__)

Mode = Literal["auto", "fetch", "regenerate"]
# In `auto` mode these stages are fetched when published (hours of GPU time); the cheap ones
# (retrieval, negatives, reranking a run) are rebuilt locally, which needs no network.
FETCH_IN_AUTO = {"generate", "filter", "train"}


@dataclass
class Step:
    """One stage of one dataset's pipeline, with its parameters, inputs and key."""

    stage: str
    params: StageParams
    inputs: dict[str, "Step"]
    dataset: str
    published: str | None = None
    key: str = ""

    def __post_init__(self):
        stage = get_stage(self.stage)
        self.key = artifact_key(
            self.stage, stage.version, self.params.key_params(), {r: s.key for r, s in sorted(self.inputs.items())}
        )


@dataclass
class Outcome:
    """What happened to one step: `reuse`, `fetch` or `regenerate`, and the artifact."""

    step: Step
    mode: str
    artifact: Artifact
    seconds: float


@dataclass
class DatasetResult:
    dataset: str
    metrics: dict[str, float]
    outcomes: list[Outcome] = field(default_factory=list)
    members: dict[str, dict[str, float]] = field(default_factory=dict)
    path: Path | None = None


class Runner:
    def __init__(
        self,
        recipe: Recipe,
        store: Store | None = None,
        *,
        mode: Mode = "auto",
        device: str = "cpu",
        data_dir: Path | None = None,
        source: str = "folder",
        limit_queries: int | None = None,
        results_dir: Path | None = None,
        echo: Callable[[str], None] = print,
        progress: bool = True,
        executor=None,
    ):
        from harness.executors import LocalExecutor

        self.recipe, self.store, self.mode = recipe, store or Store(), mode
        self.executor = executor or LocalExecutor()  # runs the shards of generate, filter and rerank
        self.device, self.data_dir, self.source = device, data_dir, source
        self.limit_queries = limit_queries
        self.results_dir = results_dir
        self.echo, self.progress = echo, progress

    # --- the graph ------------------------------------------------------------------------------
    def _params(self, stage: str, dataset: str, extra: dict | None = None) -> StageParams:
        from harness.models.loading import pin_registry_refs

        values = {**(self.recipe.stage_params(stage, dataset) or {}), **(extra or {})}
        # Planning only: refs already locked are pinned; the others are pinned when the step is built.
        values = pin_registry_refs(values, self.store.root, offline_ok=True)
        return parse_params(stage, values, f"{self.recipe.source}: stages.{stage} for {dataset}").on_device(self.device)

    def steps(self, dataset: str, missing_data_ok: bool = False) -> dict[str, Step]:
        """The pipeline of one scored dataset (a CQADupStack forum counts as one), sink last.

        With `missing_data_ok` (for `harness plan`), a dataset not on disk gets a placeholder
        fingerprint: its keys are then not in the store, which is all a plan needs to know.
        """
        from harness.stages import corpus as corpus_stage

        r, steps = self.recipe, {}

        def add(stage: str, inputs: dict[str, Step], extra: dict | None = None) -> Step:
            step = Step(stage, self._params(stage, dataset, extra), inputs, dataset, r.published_id(stage, dataset))
            steps[stage] = step
            return step

        source = "builtin" if dataset == "sample" else self.source
        try:
            fingerprint = corpus_stage.fingerprint(dataset, source, self.data_dir, self.store)
        except HarnessError:
            if not missing_data_ok:
                raise
            fingerprint = "missing"
        corpus = Step("corpus", corpus_stage.Params(dataset=dataset, source=source, fingerprint=fingerprint), {}, dataset)
        steps["corpus"] = corpus
        limit = {"limit_queries": self.limit_queries} if self.limit_queries else {}
        first = None
        if "retrieve" in r.stages:
            retrieve_params = r.stage_params("retrieve", dataset) or {}
            index_params = {k: retrieve_params[k] for k in ("retriever", "fields") if k in retrieve_params}
            index = Step("index", parse_params("index", index_params, "index"), {"corpus": corpus}, dataset)
            steps["index"] = index
            first = add("retrieve", {"corpus": corpus, "index": index}, limit)
        examples = None
        if "generate" in r.stages:
            generate = add("generate", {"corpus": corpus})
            if _shows_dataset_examples(generate):
                examples = generate  # its few-shot queries are excluded from evaluation
            queries = add("filter", {"corpus": corpus, "queries": generate}) if "filter" in r.stages else generate
            if "negatives" in r.stages:
                neg = r.stage_params("negatives", dataset) or {}
                index_params = {k: neg[k] for k in ("retriever", "fields") if k in neg}
                neg_index = Step("index", parse_params("index", index_params, "index"), {"corpus": corpus}, dataset)
                triples = add("negatives", {"corpus": corpus, "queries": queries, "index": neg_index})
                if "train" in r.stages:
                    add("train", {"triples": triples})
        run = first
        if "rerank" in r.stages:
            if first is None:
                raise HarnessError(f"{r.source}: stage `rerank` needs a `retrieve` stage (the run to rerank).")
            inputs = {"corpus": corpus, "run": first}
            if "train" in steps:
                inputs["model"] = steps["train"]
            run = add("rerank", inputs, limit)
        if run is None:
            raise HarnessError(f"{r.source}: the recipe has nothing to evaluate (add `retrieve`, optionally `rerank`).")
        eval_inputs = {"corpus": corpus, "run": run}
        if examples is not None:
            eval_inputs["examples"] = examples
        add("evaluate", eval_inputs, limit)
        return steps

    # --- deciding and building ---------------------------------------------------------------
    def decide(self, step: Step) -> str:
        """What will happen to a step: `reuse`, `fetch` or `regenerate` (no network is used)."""
        if self._fetches(step):
            return "fetch"  # or reuse of the fetched copy: known only from the lock, at run time
        return "reuse" if self._in_store(step.key) else "regenerate"

    def _fetches(self, step: Step) -> bool:
        """fetch mode: every published stage is fetched; auto: expensive ones not already built here."""
        if not step.published:
            return False
        if self.mode == "fetch":
            return True
        return self.mode == "auto" and step.stage in FETCH_IN_AUTO and not self._in_store(step.key)

    def _in_store(self, key: str) -> bool:
        return (self.store.path(key) / "manifest.json").is_file()

    def ensure(self, step: Step, done: dict[int, Outcome]) -> Artifact:
        """The artifact of `step`: reused from the store, fetched, or built (inputs first).

        The key is made final here, from the artifacts actually used as inputs (a fetched model has
        its own key) and with registry model references pinned to their locked commit; so a new
        published revision, or a rebuilt input, changes the key of everything downstream.
        """
        if id(step) in done:
            return done[id(step)].artifact
        started = time.time()
        if self._fetches(step):
            fetched = self._fetch(step)
            if fetched is not None:
                artifact, fetched_now = fetched
                return self._record(done, step, "fetch" if fetched_now else "reuse", artifact, started)
        inputs = {role: self.ensure(s, done) for role, s in step.inputs.items()}
        started = time.time()
        stage = get_stage(step.stage)
        step.params = self._pinned(step)
        step.key = artifact_key(step.stage, stage.version, step.params.key_params(),
                                {r: a.key for r, a in sorted(inputs.items())})
        same = next((o for o in done.values() if o.artifact.key == step.key), None)
        if same is not None:  # the same artifact serves two steps (one index for retrieval and negatives)
            done[id(step)] = same
            return same.artifact
        ctx = Context(self.store, step.dataset, self.device, self.data_dir, progress=self.progress,
                      executor=self.executor)

        def build(out):
            stage.run(inputs, step.params, out, ctx)

        def corrupt(exc: CorruptArtifact):
            self.echo(f"  {step.dataset:<22} {step.stage:<9} {exc} Rebuilding it.")

        artifact, built = self.store.get_or_build(
            step.key, build, kind=stage.kind, stage=step.stage, params=step.params.key_params(),
            inputs={r: a.key for r, a in inputs.items()}, resumable=stage.resumable, on_corrupt=corrupt,
        )
        return self._record(done, step, "regenerate" if built else "reuse", artifact, started)

    def _pinned(self, step: Step) -> StageParams:
        """The step's parameters with `registry:` model references pinned (locking them now if needed)."""
        from harness.models.loading import pin_registry_refs

        values = step.params.model_dump()
        pinned = pin_registry_refs(values, self.store.root)
        return step.params if pinned == values else type(step.params).model_validate(pinned)

    def _fetch(self, step: Step) -> tuple[Artifact, bool] | None:
        from harness.fetch import NetworkUnavailable, fetch_for_stage

        try:
            return fetch_for_stage(step.published, step.stage, self.store, echo=self.echo)
        except NetworkUnavailable as exc:
            if self.mode == "fetch":
                raise
            self.echo(f"  {step.dataset:<22} {step.stage:<9} cannot fetch {step.published} ({exc}); regenerating")
            return None

    def _record(self, done, step, mode, artifact, started) -> Artifact:
        outcome = Outcome(step, mode, artifact, time.time() - started)
        done[id(step)] = outcome
        self.echo(f"  {step.dataset:<22} {step.stage:<9} {mode:<10} {artifact.key}  {outcome.seconds:.1f}s")
        return artifact

    # --- datasets -----------------------------------------------------------------------------
    def run_dataset(self, dataset: str) -> DatasetResult:
        """Run one dataset (a group such as CQADupStack: each member, then the mean)."""
        from harness.evaluate import mean_of

        parts = {}
        outcomes: list[Outcome] = []
        for member in members(dataset):
            done: dict[int, Outcome] = {}
            steps = self.steps(member)
            scores = self.ensure(steps["evaluate"], done)
            parts[member] = scores.summary["metrics"]
            outcomes.extend({id(o): o for o in done.values()}.values())  # a shared artifact counts once
        metrics = parts[dataset] if list(parts) == [dataset] else mean_of(list(parts.values()))
        result = DatasetResult(dataset, metrics, outcomes, parts if len(parts) > 1 else {})
        if self.results_dir is not None:
            result.path = self.write_result(result)
        return result

    def write_result(self, result: DatasetResult) -> Path:
        """`results/<recipe>/v<version>[+variant]/<dataset>.json`: scores, keys, modes, environment."""
        from harness.store import environment

        r = self.recipe
        variant = r.variant + (f"q{self.limit_queries}" if self.limit_queries else "")
        folder = self.results_dir / r.name / (f"v{r.version}" + (f"+{variant}" if variant else ""))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{result.dataset.replace('/', '--')}.json"
        payload = {
            "recipe": r.name,
            "version": r.version,
            "dataset": result.dataset,
            "metrics": result.metrics,
            "members": result.members,
            "modified": r.modified,
            "limit_queries": self.limit_queries,
            "stages": [
                {"dataset": o.step.dataset, "stage": o.step.stage, "key": o.artifact.key, "mode": o.mode,
                 "seconds": round(o.seconds, 3)}
                for o in result.outcomes
            ],
            "environment": environment(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # concurrent runs may share a results folder
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
        tmp.replace(path)
        return path


def available_locally(dataset: str, data_dir: Path | None, source: str) -> str | None:
    """None when the dataset can run; else the sentence saying how to get it (restricted, missing)."""
    from harness.data.beir import locate

    ds = get_dataset(dataset)
    if dataset == "sample" or source == "hub" and ds.public:
        return None
    missing = [m for m in members(dataset) if locate(m, data_dir) is None]
    if not missing:
        return None
    return ds.download_hint() if not ds.public else f"not found locally: {ds.download_hint()}"


def _shows_dataset_examples(generate: Step) -> bool:
    """Whether the prompt shows the dataset's own queries as examples (Promptagator's templates do)."""
    from harness.prompts import load_template

    return load_template(generate.params.prompt).dynamic
