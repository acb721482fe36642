"""The pipeline derived from the stages' declarations gives the steps, keys and errors of the old hand wiring."""

from __future__ import annotations

import pytest

from harness import recipes as recipe_files
from harness.errors import HarnessError
from harness.paths import recipes_dir
from harness.recipes import Recipe
from harness.runner import Runner, Step

DATASETS = ["sample", "scifact", "arguana", "fiqa", "climate-fever", "cqadupstack/gaming", "webis-touche2020"]


def hand_wired_steps(runner: Runner, dataset: str) -> dict[str, Step]:
    """`Runner.steps` as written by hand before the stages declared their inputs (harness 7976a6b), the oracle."""
    from harness import runner as runner_module
    from harness.data.catalog import get_dataset
    from harness.stages import corpus as corpus_stage
    from harness.stages import parse_params

    r, steps = runner.recipe, {}
    published = get_dataset(dataset).kind == "catalog"

    def add(stage: str, inputs: dict[str, Step], extra: dict | None = None) -> Step:
        step = Step(stage, runner._params(stage, dataset, extra), inputs, dataset,
                    r.published_id(stage, dataset) if published else None)
        steps[stage] = step
        return step

    source = corpus_stage.source_of(dataset, runner.source)
    try:
        fingerprint = corpus_stage.fingerprint(dataset, source, runner.data_dir, runner.store)
    except HarnessError:
        fingerprint = "missing"
    judged = get_dataset(dataset).has_qrels
    corpus = Step("corpus", corpus_stage.Params(dataset=dataset, source=source, fingerprint=fingerprint,
                                                location=get_dataset(dataset).location), {}, dataset)
    steps["corpus"] = corpus
    limit = {"limit_queries": runner.limit_queries} if runner.limit_queries else {}
    first = None
    if "retrieve" in r.stages and judged:
        retrieve_params = r.stage_params("retrieve", dataset) or {}
        index_params = {k: retrieve_params[k] for k in ("retriever", "fields") if k in retrieve_params}
        index = Step("index", parse_params("index", {**index_params, **runner._prebuilt()}, "index"),
                     {"corpus": corpus}, dataset)
        steps["index"] = index
        first = add("retrieve", {"corpus": corpus, "index": index}, limit)
    def examples_step(scope: str) -> Step:
        """The few-shot examples drawn with the recipe's generate settings and the run's seed."""
        from harness.refs import pin_registry_refs

        settings = r.stage_params("generate", dataset) or {}
        values = {k: settings[k] for k in ("prompt", "n_examples", "examples_source", "seed") if k in settings}
        if runner.seed is not None:
            values["seed"] = runner.seed
        values = pin_registry_refs({**values, "scope": scope}, runner.store.root, offline_ok=True)
        return Step("examples", parse_params("examples", values, "examples"), {"corpus": corpus}, dataset)

    dynamic = False
    if "generate" in r.stages:
        shown = examples_step("shown")
        dynamic = runner_module._shows_dataset_examples(shown)
        if dynamic:
            steps["examples"] = shown
        generate = add("generate", {"corpus": corpus, **({"examples": shown} if dynamic else {})})
        queries = add("filter", {"corpus": corpus, "queries": generate}) if "filter" in r.stages else generate
        if "negatives" in r.stages:
            neg = r.stage_params("negatives", dataset) or {}
            index_params = {k: neg[k] for k in ("retriever", "fields") if k in neg}
            neg_index = Step("index", parse_params("index", {**index_params, **runner._prebuilt()}, "index"),
                             {"corpus": corpus}, dataset)
            triples = add("negatives", {"corpus": corpus, "queries": queries, "index": neg_index})
            if "train" in r.stages:
                add("train", {"triples": triples})
    run = first
    if not judged:
        if "train" not in steps:
            raise HarnessError(f"Dataset {dataset!r} has no qrels, so it can only train a reranker, and recipe "
                               f"{r.name} has no `train` stage: use a training recipe (e.g. inpars-v2) or add qrels.")
        return steps
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
    if dynamic:  # every query of the examples source for a fetched reranker, whose draw is not known
        fetched = "train" in steps and runner.decide(steps["train"]) == "fetch"
        eval_inputs["examples"] = examples_step("source" if fetched else "shown")
    add("evaluate", eval_inputs, limit)
    return steps


def described(step: Step) -> dict:
    """Everything about a step that the run depends on: stage, key, published id, key parameters, inputs in order."""
    return {"stage": step.stage, "key": step.key, "published": step.published, "dataset": step.dataset,
            "params": step.params.model_dump(mode="json", exclude={"threads"}),  # not only the key's
            "inputs": [(role, described(s)) for role, s in step.inputs.items()]}


def pipeline(build, runner: Runner, dataset: str):
    try:
        steps = build(runner, dataset)
    except HarnessError as exc:
        return f"error: {exc}"
    return [(name, described(step)) for name, step in steps.items()]


def recipe(stages: dict, **extra) -> Recipe:
    return Recipe.model_validate({"name": "t", "version": 1, "changelog": {1: "t"}, "paper": "t", "stages": stages,
                                  "source": "t.yaml", **extra})


EDGE_CASES = {
    "rerank without retrieve": {"rerank": {}, "generate": {}},
    "nothing to evaluate": {"generate": {}, "filter": {}},
    "filter, negatives, train without generate": {"retrieve": {}, "filter": {}, "negatives": {}, "train": {},
                                                  "rerank": {}},
    "train without negatives": {"retrieve": {}, "generate": {}, "train": {}, "rerank": {}},
    "negatives without filter, own index": {"retrieve": {"retriever": "bm25s"}, "generate": {},
                                            "negatives": {"retriever": "pyserini", "fields": "multifield"},
                                            "train": {}, "rerank": {}},
    "train without rerank": {"retrieve": {}, "generate": {}, "negatives": {}, "train": {}},
    "index configured (ignored)": {"index": {"retriever": "bm25s"}, "retrieve": {}},
    "dataset examples": {"retrieve": {}, "generate": {"prompt": "promptagator-scifact"}, "rerank": {}},
    "evaluate only": {"evaluate": {}},
}


def own_corpus(tmp_path, name: str) -> str:
    """A corpus of the user's without judgments (a file given by path), by the name the catalog gives it (one
    name per test: the catalog remembers, for the process, which file a name stands for)."""
    from harness.data.catalog import expand

    (tmp_path / f"{name}.tsv").write_text("d1\tfirst text\nd2\tsecond text\n")
    return expand([str(tmp_path / f"{name}.tsv")])[0]


def runners(store, tmp_path):
    """A runner per recipe file and edge case, with and without --limit-queries, one with seeds; each mode."""
    data_dir = tmp_path / "no-data"  # every catalog dataset but the bundled sample gets the placeholder fingerprint
    data_dir.mkdir()
    cases = [(path.stem, recipe_files.load(path.stem)) for path in sorted(recipes_dir().glob("*.yaml"))]
    cases += [(name, recipe(stages)) for name, stages in EDGE_CASES.items()]
    cases.append(("seeds", recipe_files.load("inpars-v2").model_copy(update={"seeds": [3, 4]})))
    cases.append(("seeds, dataset examples", recipe_files.load("promptagator").model_copy(update={"seeds": [3, 4]})))
    for name, r in cases:
        for limit, mode in ((None, "auto"), (7, "fetch"), (None, "regenerate")):
            runner = Runner(r, store, mode=mode, data_dir=data_dir, limit_queries=limit, echo=lambda _: None,
                            progress=False)
            runner.seed = r.seeds[0] if r.seeds else None
            yield f"{name} q{limit} {mode}", runner


def test_derived_pipeline_matches_the_hand_wiring(store, tmp_path):
    compared = errors = 0
    datasets = [*DATASETS, own_corpus(tmp_path, "mine")]
    for name, runner in runners(store, tmp_path):
        for dataset in datasets:
            expected = pipeline(hand_wired_steps, runner, dataset)
            actual = pipeline(lambda r, d: r.steps(d, missing_data_ok=True), runner, dataset)
            assert actual == expected, (name, dataset)
            compared += 1
            errors += isinstance(expected, str)
    assert errors and compared - errors > 100  # both the errors and the pipelines were compared


def test_pipeline_order_follows_the_inputs():
    from harness.stages import STAGE_NAMES, get_stage

    assert STAGE_NAMES == ("corpus", "index", "retrieve", "examples", "generate", "filter", "negatives", "train",
                           "rerank", "evaluate")
    for position, name in enumerate(STAGE_NAMES):
        stage = get_stage(name)
        for role in stage.inputs:
            assert all(STAGE_NAMES.index(s) < position for s in stage.producers(role)), (name, role)


def test_tables_derived_from_the_declarations():
    """The tables that were written by hand in four modules, now read from the stages."""
    from harness import fetch
    from harness.runner import FETCH_IN_AUTO

    assert FETCH_IN_AUTO == {"generate", "filter", "train"}
    assert fetch.stage_kinds() == {"retrieve": ("run",), "generate": ("queries",),
                                   "filter": ("queries-filtered", "queries"), "negatives": ("triples",),
                                   "train": ("model",)}
    from harness.plan import DEFAULT_THROUGHPUT

    assert DEFAULT_THROUGHPUT == {"corpus": 0, "index": 0, "retrieve": 0, "examples": 0, "negatives": 0, "evaluate": 0,
                                  "generate": 20_000, "filter": 400_000, "train": 2_000, "rerank": 400_000}


def publish_kind_by_hand(stage: str, kind: str) -> str | None:
    """`harness publish`'s kind map as written by hand before the stages declared it (harness 9a85cfd), the oracle."""
    return {"run": "run", "queries": "queries-filtered" if stage == "filter" else "queries",
            "triples": "triples", "model": "model"}.get(kind)


def test_publish_kinds_match_the_hand_written_map():
    """Every artifact a stage builds or a fetch converts (kind = the entry's kind, stage = the one it stands in for)."""
    from harness import fetch, publish
    from harness.stages import STAGE_NAMES, get_stage

    artifacts = {(name, get_stage(name).kind) for name in STAGE_NAMES}
    artifacts |= {(stage, kind) for stage, kinds in fetch.stage_kinds().items() for kind in kinds}
    artifacts |= {("fetch", f"download:{kind}") for _, kinds in fetch.stage_kinds().items() for kind in kinds}
    for stage, kind in sorted(artifacts):
        assert publish.registry_kind(stage, kind) == publish_kind_by_hand(stage, kind), (stage, kind)
    assert publish.publishable_kinds() == ["run", "queries", "triples", "model"]


def hand_written_units(stage: str, params: dict, dataset: str) -> int:
    """`plan.units` as written by hand before the stages declared their cost (harness 9a85cfd), the oracle."""
    from harness.data.catalog import get_dataset

    ds = get_dataset(dataset)
    docs = ds.corpus_size or 400
    queries = ds.queries or 60
    if stage in ("corpus", "index"):
        return docs
    if stage == "retrieve":
        return queries
    if stage in ("generate", "filter"):
        return min(params.get("n_docs", 100_000), docs)
    if stage == "negatives":
        return params.get("top_k", 10_000)
    if stage == "train":
        return (params.get("steps") or 0) * (params.get("batch_size") or 128) or 2 * params.get("top_k", 10_000)
    if stage == "rerank":
        return queries * params.get("depth", 1000)
    return queries


@pytest.mark.parametrize("recipe_name", ["inpars-v1", "inpars-v2", "promptagator", "monot5-msmarco", "smoke"])
def test_cost_units_match_the_hand_written_ones(recipe_name, store, tmp_path):
    from harness import plan

    runner = Runner(recipe_files.load(recipe_name), store, data_dir=tmp_path, echo=lambda _: None, progress=False)
    compared = set()
    for dataset in ("scifact", "fiqa", "arguana", "msmarco", "cqadupstack/gaming", "sample"):  # msmarco: > n_docs
        try:
            steps = runner.steps(dataset, missing_data_ok=True)
        except HarnessError:  # no Promptagator template for msmarco, cqadupstack, sample
            continue
        for name, step in steps.items():
            params = step.params.model_dump()
            assert plan.units(name, params, dataset) == hand_written_units(name, params, dataset), (name, dataset)
            compared.add(dataset)
    assert len(compared) >= 3


def test_a_new_stage_is_one_declaration(store, tmp_path, monkeypatch):
    """A stage that dedupes the generated queries, declared once, and filter naming it as its first choice:
    the pipeline takes it where the recipe configures it and is unchanged where it does not."""
    import dataclasses
    import sys
    import types

    import harness.recipes
    import harness.runner
    import harness.stages
    from harness.stages import STAGE_NAMES, Stage, get_stage, pipeline_order
    from harness.stages import filter as filter_module

    dedupe = types.ModuleType("harness.stages.dedupe")
    declared = Stage(name="dedupe", version=1, kind="queries", params=get_stage("evaluate").params,
                     run=lambda inputs, params, out, ctx: None, inputs={"queries": "generate"})
    dedupe.STAGE = declared  # type: ignore[attr-defined]
    stages = [get_stage(n) for n in STAGE_NAMES if n != "filter"] + [declared]
    stages.append(dataclasses.replace(filter_module.STAGE, inputs={"corpus": "corpus",
                                                                   "queries": ("dedupe", "generate")}))
    names = pipeline_order(stages)
    assert names.index("generate") < names.index("dedupe") < names.index("filter")

    before = {}
    r = recipe({"retrieve": {}, "generate": {}, "filter": {}, "negatives": {}})
    for name, step in Runner(r, store, data_dir=tmp_path).steps("sample").items():
        before[name] = step.key
    monkeypatch.setitem(sys.modules, "harness.stages.dedupe", dedupe)
    monkeypatch.setattr(filter_module, "STAGE", stages[-1])
    for module in (harness.runner, harness.recipes):  # the modules that read the names at import
        monkeypatch.setattr(module, "STAGE_NAMES", names)
    monkeypatch.setattr(harness.stages, "stage_names", lambda: names)

    unchanged = Runner(r, store, data_dir=tmp_path).steps("sample")
    assert {name: step.key for name, step in unchanged.items()} == before
    with_dedupe = recipe({**r.stages, "dedupe": {}})
    steps = Runner(with_dedupe, store, data_dir=tmp_path).steps("sample")
    assert steps["filter"].inputs["queries"] is steps["dedupe"]
    assert steps["dedupe"].inputs["queries"] is steps["generate"]
    assert steps["negatives"].key != before["negatives"] and steps["retrieve"].key == before["retrieve"]


def test_the_plan_of_a_corpus_without_judgments_ends_with_training(store, tmp_path):
    """Its pipeline's sink is `train` (no evaluate): the plan and fetch mode's gap check walk from it."""
    from harness import plan

    name = own_corpus(tmp_path, "unjudged")
    r = recipe_files.load("inpars-v2")
    text = plan.plan(r, [name], store, mode="fetch")
    assert "train:regenerate" in text and "evaluate" not in text
    runner = Runner(r, store, mode="fetch", echo=lambda _: None, progress=False)
    assert list(runner.needed(runner.steps(name))) == ["corpus", "generate", "filter", "negatives", "train"]
    assert runner.gaps([name]) == []  # nothing is published for a user's corpus
