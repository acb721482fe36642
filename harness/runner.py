"""The runner: turns a recipe and a dataset into the pipeline of stages, and reuses, fetches or builds each artifact.

One generic pipeline, corpus → index → retrieve → examples → generate → filter → negatives → train → rerank →
evaluate; a recipe configures the stages it uses, and the wiring follows from the stages' declarations
(their inputs, in `harness/stages/<name>.py`) and from which stages are present.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.atomic import write_text_atomic
from harness.data.catalog import get_dataset, members
from harness.errors import HarnessError
from harness.recipes import Recipe
from harness.stages import STAGE_NAMES, Context, Stage, StageParams, get_stage, parse_params
from harness.store import Artifact, CorruptArtifact, Store, artifact_key

log = logging.getLogger(__name__)

Mode = Literal["auto", "fetch", "regenerate"]
# Optional inputs that a stage takes only where their producer applies: generate takes the few-shot `examples` (and
# evaluate leaves their queries out) only when the prompt shows the dataset's own queries as examples (Promptagator's
# templates do). Decided as soon as the producer's step is made (so an unknown prompt is an error at once, whether or
# not the pipeline evaluates).
INPUT_CONDITIONS: dict[tuple[str, str], Callable[[Step], bool]] = {
    ("generate", "examples"): lambda examples: _shows_dataset_examples(examples),
    ("evaluate", "examples"): lambda examples: _shows_dataset_examples(examples),
}
# Parameters of an own input that the pipeline decides, from the runner and the steps made so far.
OWN_INPUT_PARAMS: dict[tuple[str, str], Callable[[Runner, dict[str, Step]], dict]] = {
    # The queries evaluation leaves out: the ones the harness's prompts showed, or, for a fetched reranker, every
    # query of the examples source. The toolkit draws the examples from the whole published file (InPars 9865521,
    # inpars/inpars.py line 20: `random.sample(df, n_fewshot_examples)`; inpars/prompt.py line 74,
    # `DynamicPrompt.build`, draws again from those for each document), and which of them the published
    # reranker's generation showed is not published with it, so any query of the file may have been shown.
    ("evaluate", "examples"): lambda runner, steps: {
        "scope": "source" if "train" in steps and runner.decide(steps["train"]) == "fetch" else "shown"},
}
# In `auto` mode these stages are fetched when published (hours of GPU time); the cheap ones
# (retrieval, negatives, reranking a run) are rebuilt locally, which needs no network.
FETCH_IN_AUTO = frozenset(name for name in STAGE_NAMES if get_stage(name).fetch_in_auto)


def _first_to_take(producer: str) -> str:
    """The first stage, in pipeline order, that declares an input from `producer`."""
    return next(name for name in STAGE_NAMES if any(producer in get_stage(name).producers(role)
                                                    for role in get_stage(name).inputs))


@dataclass
class Step:
    """One stage of one dataset's pipeline, with its parameters, inputs and key."""

    stage: str
    params: StageParams
    inputs: dict[str, Step]
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
    metrics: dict[str, float]  # with seeds: the mean over the seeds
    outcomes: list[Outcome] = field(default_factory=list)
    members: dict[str, dict[str, float]] = field(default_factory=dict)
    path: Path | None = None
    excluded_example_queries: int = 0  # few-shot example queries left out of evaluation (all members)
    std: dict[str, float] = field(default_factory=dict)  # sample standard deviation over the seeds
    per_seed: dict[int, dict[str, float]] = field(default_factory=dict)
    seeds: dict[int, int | None] = field(default_factory=dict)  # id(outcome) → the seed it was built for

    skipped: str = ""  # why evaluation was skipped (a corpus without judgments), else ""

@dataclass(frozen=True)
class Gap:
    """A published stage the registry cannot serve (no entry, or an unusable one): it must be regenerated."""

    dataset: str
    stage: str
    entry_id: str
    why: str


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
        self.seed: int | None = None  # the seed of the run being built (a recipe's `seeds`), None: the stages' own
        self._registry = None
        self._told: set[tuple[str, str]] = set()

    # --- the graph ------------------------------------------------------------------------------
    def _params(self, stage: str, dataset: str, extra: dict | None = None) -> StageParams:
        from harness.refs import pin_registry_refs

        values = {**(self.recipe.stage_params(stage, dataset) or {}), **(extra or {})}
        if self.seed is not None and "seed" in get_stage(stage).params.model_fields:
            values["seed"] = self.seed  # every stage parameter named `seed` takes the run's seed
        # Planning only: refs already locked are pinned; the others are pinned when the step is built.
        values = pin_registry_refs(values, self.store.root, offline_ok=True)
        return parse_params(stage, values, f"{self.recipe.source}: stages.{stage} for {dataset}").on_device(self.device)

    def steps(self, dataset: str, missing_data_ok: bool = False) -> dict[str, Step]:
        """The pipeline of one scored dataset (a CQADupStack forum counts as one), sink last.

        Built from the stages' declarations, in pipeline order: a stage is in the pipeline when the recipe
        configures it (`corpus` and `evaluate` always are) and every required input is; an input is the
        step of the first stage its declaration names that the pipeline has (see `_inputs`). For a corpus
        without judgments the stages that need them are left out: the pipeline ends with `train`.

        With `missing_data_ok` (for `harness plan`), a dataset not on disk gets a placeholder
        fingerprint: its keys are then not in the store, which is all a plan needs to know.
        """
        r, steps = self.recipe, {}
        applies: dict[tuple[str, str, str], bool] = {}  # (stage, role, producer) → INPUT_CONDITIONS' verdict
        judged = get_dataset(dataset).has_qrels
        published = get_dataset(dataset).kind == "catalog"  # the authors published for catalog datasets only
        for name in STAGE_NAMES:
            stage = get_stage(name)
            if stage.include == "input" or (stage.include == "recipe" and name not in r.stages):
                continue
            if stage.judged and not judged:  # left out with what needs it (a run to rerank, scores)
                continue
            if name == "corpus":  # the dataset itself: its parameters come from the run, not from the recipe
                steps[name] = self._corpus(dataset, missing_data_ok)
                continue
            inputs = self._inputs(stage, steps, dataset, applies)
            if inputs is None:
                continue
            # Like `seed` (see `_params`): every stage parameter named `limit_queries` takes --limit-queries.
            limit = self.limit_queries if "limit_queries" in stage.params.model_fields else None
            steps[name] = Step(name, self._params(name, dataset, {"limit_queries": limit} if limit else None),
                               inputs, dataset, r.published_id(name, dataset) if published else None)
            for (consumer, role), condition in INPUT_CONDITIONS.items():
                if name in get_stage(consumer).producers(role):
                    applies[(consumer, role, name)] = condition(steps[name])
        if not judged and "train" not in steps:  # no judgments: the pipeline ends with the trained reranker
            raise HarnessError(f"Dataset {dataset!r} has no qrels, so it can only train a reranker, and recipe "
                               f"{r.name} has no `train` stage: use a training recipe (e.g. inpars-v2) or add qrels.")
        return steps

    def _corpus(self, dataset: str, missing_data_ok: bool) -> Step:
        from harness.stages import corpus as corpus_stage

        source = corpus_stage.source_of(dataset, self.source)
        try:
            fingerprint = corpus_stage.fingerprint(dataset, source, self.data_dir, self.store)
        except HarnessError:
            if not missing_data_ok:
                raise
            fingerprint = "missing"
        return Step("corpus", corpus_stage.Params(dataset=dataset, source=source, fingerprint=fingerprint,
                                                  location=get_dataset(dataset).location), {}, dataset)

    def _inputs(self, stage: Stage, steps: dict[str, Step], dataset: str,
                applies: dict[tuple[str, str, str], bool]) -> dict[str, Step] | None:
        """The input steps of `stage` by role, in its declared order; None when a required one is missing
        (the stage is then left out of the pipeline, or, where it declares `missing`, the recipe is wrong).

        The wiring that is not data lives here: an own input (`Stage.own_inputs`) is a step built for this
        stage alone from some of its own recipe parameters, not a recipe stage (retrieve and negatives each
        search their own index); the one of the first stage in pipeline order that declares such an input
        (retrieve's index) is also the pipeline's step of that name, the one the plan shows. And
        `INPUT_CONDITIONS` drops an optional input where its producer does not apply.
        """
        inputs: dict[str, Step] = {}
        own: list[Step] = []
        for role in stage.inputs:
            if role in stage.own_inputs:
                step = self._own_input(stage, role, steps, dataset, applies)
                condition = INPUT_CONDITIONS.get((stage.name, role))
                if step is not None and condition is not None:  # decided as soon as the step is made
                    applies[(stage.name, role, step.stage)] = condition(step)
            else:
                step = next((steps[name] for name in stage.producers(role) if name in steps), None)
            if step is not None and not applies.get((stage.name, role, step.stage), True):
                step = None
            if step is not None:
                inputs[role] = step
                if role in stage.own_inputs:
                    own.append(step)
            elif role not in stage.optional:
                if stage.missing:
                    raise HarnessError(f"{self.recipe.source}: {stage.missing}")
                return None
        for step in own:
            if _first_to_take(step.stage) == stage.name:
                steps[step.stage] = step
        return inputs

    def _own_input(self, stage: Stage, role: str, steps: dict[str, Step], dataset: str,
                   applies: dict[tuple[str, str, str], bool]) -> Step | None:
        """The step of `stage`'s own input `role`: its stage, with the keys `own_inputs` names taken from the
        recipe's parameters of `stage` (or of the stage its `settings_in` names: None when the recipe has no such
        section), the run's seed as `_params` gives it, registry references pinned where locked, the
        parameters `OWN_INPUT_PARAMS` decides, and no published id."""
        from harness.refs import pin_registry_refs

        of = get_stage(stage.producers(role)[0])
        if of.settings_in is not None and of.settings_in not in self.recipe.stages:
            return None
        inputs = self._inputs(of, steps, dataset, applies)
        if inputs is None:
            return None
        values = self.recipe.stage_params(of.settings_in or stage.name, dataset) or {}
        params = {k: values[k] for k in stage.own_inputs[role] if k in values}
        if self.seed is not None and "seed" in stage.own_inputs[role]:
            params["seed"] = self.seed
        if "prebuilt" in of.params.model_fields:  # the index: pyserini's prebuilt one as --mode says
            params.update(self._prebuilt())
        decided = OWN_INPUT_PARAMS.get((stage.name, role))
        if decided is not None:
            params.update(decided(self, steps))
        params = pin_registry_refs(params, self.store.root, offline_ok=True)
        return Step(of.name, parse_params(of.name, params, of.name), inputs, dataset)

    def _prebuilt(self) -> dict:
        """The index stage's `prebuilt` for this mode: pyserini's prebuilt indexes in fetch and auto modes."""
        return {"prebuilt": "never" if self.mode == "regenerate" else self.mode}

    # --- deciding and building ---------------------------------------------------------------
    def decide(self, step: Step) -> str:
        """What will happen to a step: `reuse`, `fetch` or `regenerate` (no network is used)."""
        if self._fetches(step):
            return "fetch"  # or reuse of the fetched copy: known only from the lock, at run time
        return "reuse" if self._in_store(step.key) else "regenerate"

    def _fetches(self, step: Step) -> bool:
        """fetch mode: every published stage is fetched; auto: expensive ones not already built here, and
        only where the registry can serve them (a gap is regenerated, see `gap`)."""
        if not step.published:
            return False
        if self.mode == "fetch":
            return True
        return (self.mode == "auto" and step.stage in FETCH_IN_AUTO and not self._in_store(step.key)
                and self.gap(step) is None)

    # --- gaps: published ids the registry cannot serve -------------------------------------------
    def registry(self):
        if self._registry is None:
            from harness.registry import Registry

            self._registry = Registry(self.store.root)
        return self._registry

    def entry(self, entry_id: str):
        """The registry entry of an id, or None (no exception: a missing entry is a gap, not an error)."""
        registry = self.registry()
        find = getattr(registry, "find", None)
        return find(entry_id) if find is not None else registry.entries.get(entry_id)

    def gap(self, step: Step) -> Gap | None:
        """Why the published id of `step` cannot be fetched (no entry, unusable, superseded), or None."""
        if not step.published:
            return None
        entry = self.entry(step.published)
        if entry is None:
            why = "not in the registry: nothing is published under that id"
        elif entry.superseded_by:
            why = f"superseded by {entry.superseded_by}"
        elif not entry.usable:
            why = entry.known_gap or "the published artifact cannot serve"
        else:
            return None
        return Gap(step.dataset, step.stage, step.published, why)

    def needed(self, steps: dict[str, Step]) -> dict[str, str]:
        """stage → what will happen to it (`reuse`, `fetch`, `regenerate`), for the steps the run will touch:
        walking from the sink, the inputs of a fetched step are not needed and are left out."""
        out: dict[str, str] = {}

        def visit(step: Step) -> None:
            if step.stage in out:
                return
            decided = self.decide(step)
            out[step.stage] = decided
            if decided != "fetch":
                for s in step.inputs.values():
                    visit(s)

        visit(list(steps.values())[-1])  # the sink: evaluate, or train for a corpus without judgments
        return {name: out[name] for name in steps if name in out}  # pipeline order

    def gaps(self, datasets: list[str]) -> list[Gap]:
        """The gaps this run would meet: in fetch mode every published stage, in auto the fetched-in-auto ones."""
        if self.mode == "regenerate":
            return []
        found = []
        for dataset in datasets:
            for member in members(dataset):
                try:
                    steps = self.steps(member)
                except HarnessError:
                    steps = self.steps(member, missing_data_ok=True)
                for name in self.needed(steps):  # nothing upstream of a fetched stage counts
                    step = steps[name]
                    if self.mode == "auto" and step.stage not in FETCH_IN_AUTO:
                        continue
                    gap = self.gap(step)
                    if gap is not None:
                        found.append(gap)
        return found

    def check_gaps(self, datasets: list[str]) -> None:
        """In fetch mode, stop before any work when a published stage cannot be fetched, listing every gap."""
        if self.mode != "fetch":
            return
        found = self.gaps(datasets)
        if found:
            listed = "; ".join(f"{g.dataset} {g.stage}: {g.entry_id} ({g.why})" for g in found)
            raise HarnessError(f"{self.recipe.source}: --mode fetch cannot fetch {len(found)} published stage(s): "
                               f"{listed}. Run with --mode auto (regenerates these, fetches the rest) or "
                               "--mode regenerate (builds everything).")

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
        if (self.mode == "auto" and step.published and step.stage in FETCH_IN_AUTO
                and (step.dataset, step.stage) not in self._told and not self._in_store(step.key)):
            gap = self.gap(step)
            if gap is not None:
                self._told.add((step.dataset, step.stage))
                self.echo(f"  {step.dataset:<22} {step.stage:<9} not published ({gap.entry_id}: {gap.why}); "
                          "regenerating")
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
        from harness.refs import pin_registry_refs

        values = step.params.model_dump()
        pinned = pin_registry_refs(values, self.store.root)
        return step.params if pinned == values else type(step.params).model_validate(pinned)

    def _fetch(self, step: Step) -> tuple[Artifact, bool] | None:
        from harness.fetch import fetch_for_stage
        from harness.hub import NetworkUnavailable

        if not step.published:  # nothing published to fetch (`_fetches` sends only published steps)
            return None
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
        """Run one dataset (a group such as CQADupStack: each member, then the mean), once per seed of the
        recipe's `seeds` (then the mean over the seeds, with the sample standard deviation)."""
        from statistics import stdev

        from harness.evaluate import mean_of

        seeds: list[int | None] = list(self.recipe.seeds) if self.recipe.seeds else [None]
        runs = []
        try:
            for seed in seeds:
                self.seed = seed
                runs.append(self._run_once(dataset))
        finally:
            self.seed = None
        if seeds == [None] or runs[0].skipped:  # one seed, or no judgments: nothing to average
            result = runs[0]
            for r in runs[1:]:
                result.outcomes.extend(r.outcomes)
        else:
            result = DatasetResult(dataset, mean_of([r.metrics for r in runs]))
            result.std = {m: stdev(r.metrics[m] for r in runs) for m in result.metrics}
            result.per_seed = {seed: r.metrics for seed, r in zip(seeds, runs, strict=True) if seed is not None}
            if runs[0].members:
                result.members = {m: mean_of([r.members[m] for r in runs]) for m in runs[0].members}
            for seed, r in zip(seeds, runs, strict=True):
                result.outcomes.extend(r.outcomes)
                result.seeds.update({id(o): seed for o in r.outcomes})
            # The seeds may show different few-shot examples: the largest count is the one to warn about.
            result.excluded_example_queries = max(r.excluded_example_queries for r in runs)
        if self.results_dir is not None and not result.skipped:
            result.path = self.write_result(result)
        return result

    def _run_once(self, dataset: str) -> DatasetResult:
        from harness.evaluate import mean_of

        parts = {}
        outcomes: list[Outcome] = []
        excluded = 0
        for member in members(dataset):
            if self.source == "folder" and get_dataset(member).kind == "catalog" and member != "sample":
                from harness.data.download import ensure as fetch_if_missing

                fetch_if_missing(member, self.data_dir, self.store.root, progress=self.progress)  # on first use
            done: dict[int, Outcome] = {}
            steps = self.steps(member)
            if "evaluate" not in steps:
                model = self.ensure(steps["train"], done)
                why = (f"evaluation skipped: {dataset} has no qrels (relevance judgments); the finetuned reranker "
                       f"is artifact {model.key} (`harness publish {model.key} --repo OWNER/NAME` uploads it)")
                self.echo(f"  {dataset:<22} {why}")
                return DatasetResult(dataset, {}, list({id(o): o for o in done.values()}.values()), skipped=why)
            scores = self.ensure(steps["evaluate"], done)
            parts[member] = scores.summary["metrics"]
            excluded += scores.summary.get("excluded_example_queries", 0)
            outcomes.extend({id(o): o for o in done.values()}.values())  # a shared artifact counts once
        metrics = parts[dataset] if list(parts) == [dataset] else mean_of(list(parts.values()))
        result = DatasetResult(dataset, metrics, outcomes, parts if len(parts) > 1 else {})
        result.excluded_example_queries = excluded
        return result

    def write_result(self, result: DatasetResult) -> Path:
        """`results/<recipe>/v<version>[+variant]/<dataset>.json`: scores, keys, modes, environment."""
        from harness.store import environment

        if self.results_dir is None:
            raise ValueError("write_result needs a runner made with a results_dir.")
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
            **({"std": result.std, "seeds": list(r.seeds),
                "per_seed": {str(seed): scores for seed, scores in result.per_seed.items()}} if r.seeds else {}),
            "members": result.members,
            # Few-shot example queries left out of evaluation (the leak fix); the papers' numbers include them.
            "excluded_example_queries": result.excluded_example_queries,
            "modified": r.modified,
            "limit_queries": self.limit_queries,
            "stages": [
                {"dataset": o.step.dataset, "stage": o.step.stage, "key": o.artifact.key, "mode": o.mode,
                 "seconds": round(o.seconds, 3), **({"seed": result.seeds.get(id(o))} if r.seeds else {})}
                for o in result.outcomes
            ],
            "environment": environment(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return write_text_atomic(path, json.dumps(payload, indent=1) + "\n")  # concurrent runs may share a folder


def available_locally(dataset: str, data_dir: Path | None, source: str) -> str | None:
    """None when the dataset can run; else the sentence saying how to get it (restricted, missing)."""
    from harness.data.beir import locate
    from harness.data.beir_md5 import PUBLISHED

    ds = get_dataset(dataset)
    if dataset == "sample" or source == "hub" and ds.public or ds.kind != "catalog":
        return None
    if source == "folder" and ds.name.split("/")[0] in PUBLISHED:
        return None  # fetched on first use
    missing = [m for m in members(dataset) if locate(m, data_dir) is None]
    if not missing:
        return None
    return ds.download_hint() if not ds.public else f"not found locally: {ds.download_hint()}"


def _shows_dataset_examples(step: Step) -> bool:
    """Whether the prompt of `step` (generate's, or the few-shot examples') shows the dataset's own queries as examples
    (Promptagator's templates do)."""
    from harness.prompts import load_template
    from harness.stages import examples as examples_stage
    from harness.stages import generate as generate_stage

    params = step.params
    if not isinstance(params, generate_stage.Params | examples_stage.Params):  # the two stages that have a prompt
        raise TypeError(f"the `examples` condition applies to generate and examples steps, not {step.stage!r}.")
    return load_template(params.prompt).dynamic
