"""`harness plan`: per dataset and stage, whether it will be reused, fetched or regenerated, and its cost.

The cost model is deliberately simple and overridable: each stage does some work units (documents,
queries, pairs, training examples) at a throughput per GPU hour, both declared with the stage
(`Stage.units`, `Stage.per_gpu_hour`); a recipe's `cost:` section replaces the throughput. The defaults
are order-of-magnitude estimates for one A100-class GPU with the recipe's default models, to be
corrected with measured timings (the manifests record every stage's wall time).
"""

from __future__ import annotations

from pathlib import Path

from harness.data.catalog import get_dataset, members
from harness.errors import HarnessError
from harness.recipes import Recipe
from harness.runner import FETCH_IN_AUTO, Mode, Runner, available_locally
from harness.stages import STAGE_NAMES, get_stage
from harness.store import Store

# stage → units processed per GPU hour (0: CPU work, not counted in GPU hours), as the stages declare them.
DEFAULT_THROUGHPUT = {name: get_stage(name).per_gpu_hour for name in STAGE_NAMES}


def units(stage: str, params: dict, dataset: str) -> int:
    """How much work a stage does on a dataset, from the catalog sizes and the stage's parameters."""
    ds = get_dataset(dataset)
    return get_stage(stage).units(params, ds.corpus_size or 400, ds.queries or 60)


def plan(
    recipe: Recipe, datasets: list[str], store: Store, *, mode: Mode = "auto", data_dir: Path | None = None,
    source: str = "folder", limit_queries: int | None = None,
) -> str:
    """The plan as text: one block per dataset (CQADupStack's forums inside one row), and the totals."""
    from tabulate import tabulate

    runner = Runner(recipe, store, mode=mode, data_dir=data_dir, source=source, limit_queries=limit_queries,
                    echo=lambda _: None, progress=False)
    rows, notes, total_gpu = [], [], 0.0
    gap_lines, unverified_lines = [], []
    # With `seeds`, the first seed's pipeline stands for all: the stages that take a seed are built once per seed.
    runner.seed = recipe.seeds[0] if recipe.seeds else None
    runs = len(recipe.seeds) if recipe.seeds else 1
    for dataset in datasets:
        why = available_locally(dataset, data_dir, source)
        subsets = members(dataset)
        per_stage: dict[str, list[str]] = {}
        gpu = 0.0
        for member in subsets:
            try:
                steps = runner.steps(member)
            except HarnessError:
                steps = runner.steps(member, missing_data_ok=True)
            for name, decided in runner.needed(steps).items():  # what the run will touch, nothing upstream of a fetch
                step = steps[name]
                gap = runner.gap(step) if mode == "fetch" or name in FETCH_IN_AUTO else None
                if gap is not None and (mode == "fetch" or decided == "regenerate"):
                    gap_lines.append(f"  {member} {name}: {gap.entry_id} ({gap.why})")
                    if mode == "fetch":
                        decided = "gap"
                entry = runner.entry(step.published) if decided == "fetch" and step.published else None
                if entry is not None and getattr(entry, "unverified", None):
                    unverified_lines.append(f"  {member} {name}: {step.published} (unverified: {entry.unverified})")
                per_stage.setdefault(name, []).append(decided)
                if decided == "regenerate":
                    throughput = recipe.cost.get(name, {}).get("per_gpu_hour", DEFAULT_THROUGHPUT.get(name, 0))
                    if throughput:
                        work = units(name, step.params.model_dump(), member) / max(1, len(subsets))
                        gpu += work / throughput * (runs if "seed" in step.params.model_fields else 1)
        modes = []
        for name, each in sorted(per_stage.items(), key=lambda item: STAGE_NAMES.index(item[0])):
            text = each[0] if len(set(each)) == 1 else "/".join(sorted(set(each)))
            modes.append(f"{name}:{text}")
        total_gpu += gpu
        label = f"{dataset} ({len(subsets)} forums)" if len(subsets) > 1 else dataset
        rows.append([label, "  ".join(modes), f"{gpu:.1f}", _data_state(dataset, why, data_dir, source, store)])
        if why:
            notes.append(f"  {dataset}: {why}")
    header = ["dataset", "stages (reuse / fetch / regenerate" + (" / gap" if mode == "fetch" else "") + ")", "GPU h",
              "data"]
    text = f"plan for {recipe.name} v{recipe.version}, mode {mode}\n"
    if recipe.seeds:
        text += (f"seeds {', '.join(map(str, recipe.seeds))}: the stages with a `seed` are built once per seed "
                 "(shown: the first seed; GPU hours count every seed); results are the mean and standard deviation\n")
    text += tabulate(rows, headers=header, tablefmt="simple") + "\n"
    if notes:
        text += "datasets to obtain first:\n" + "\n".join(notes) + "\n"
    if gap_lines and mode == "fetch":
        text += (f"--mode fetch stops before any work: {len(gap_lines)} published stage(s) cannot be fetched "
                 "(run with --mode auto to regenerate them, or --mode regenerate):\n" + "\n".join(gap_lines) + "\n")
    elif gap_lines:
        text += "not published, regenerated instead:\n" + "\n".join(gap_lines) + "\n"
    if unverified_lines:
        text += "fetched from repositories whose names are not confirmed:\n" + "\n".join(unverified_lines) + "\n"
    text += (f"total estimated GPU hours: {total_gpu:.1f} (cost model: the stages' `units` and `per_gpu_hour`; "
             "override in the recipe's `cost:`)\n")
    return text


def _data_state(dataset: str, why: str | None, data_dir: Path | None, source: str, store: Store) -> str:
    from harness.data.beir import locate

    if not why:
        ds = get_dataset(dataset)
        if source == "folder" and ds.kind == "catalog" and dataset != "sample" and any(
            locate(m, data_dir, store.root) is None for m in members(dataset)
        ):
            return "download"  # fetched on first use
        return "ready"
    return "missing" if get_dataset(dataset).public else "restricted"
