"""The `harness` command line: argument parsing only; the work is done by the modules it calls.

Heavy libraries (torch, transformers, pyserini) are imported by the stages that use them, never here,
so that `harness --help` and `harness plan` answer at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import __version__
from harness.errors import HarnessError


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe name (see `harness list recipes`) or a path to a recipe YAML file")
    p.add_argument("--dataset", "-d", action="append", default=None,
                   help="dataset name (fetched on first use), `beir` (all 18) or `beir-public` (14), an ir_datasets id "
                        "as irds:<id>, or the path of your own corpus (a BEIR-layout folder, or a .tsv/.jsonl "
                        "file); repeatable; default: the recipe's")
    p.add_argument("--mode", choices=("auto", "fetch", "regenerate"), default="auto",
                   help="auto: reuse the store, fetch published expensive stages, build the rest; "
                        "fetch: fetch every published stage; regenerate: build everything (default: auto)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="STAGE.PARAM=VALUE",
                   help="change one recipe parameter for this run (the result is marked as modified)")
    p.add_argument("--limit-queries", type=int, default=None, metavar="N",
                   help="evaluate a deterministic subset of N queries per dataset (for quick checks and CI)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding BEIR dataset folders, where datasets named are fetched on first use "
                        "(default: $HARNESS_BEIR_DIR, else <home>/beir); HARNESS_BEIR_URL sets a mirror")
    p.add_argument("--source", choices=("folder", "hub"), default="folder",
                   help="where corpora come from: a local BEIR folder, or the BeIR/<name> copies on the Hub")
    p.add_argument("--retriever", choices=("pyserini", "bm25s"), default=None,
                   help="BM25 backend (shorthand for --set retrieve.retriever=...)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the shards of generate, filter and rerank run: in this process, or on Ray workers "
                        "(pip install 'harness[ray]'); the artifacts are the same (default: local)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running Ray cluster (e.g. auto, or HEAD:6379); default: a private one on this machine")
    p.add_argument("--ray-workers", type=int, default=None, metavar="N",
                   help="at most N model replicas per stage (default: as many as the cluster's CPUs/GPUs hold)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Reproduce synthetic-data IR (InPars-v1, InPars-v2, Promptagator) on BEIR, fetched or regenerated.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("--home", type=Path, default=None,
                        help="the artifact store (default: $HARNESS_HOME or ~/.cache/harness)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list recipes, datasets, artifacts or reported tables")
    p.add_argument("what", choices=("recipes", "datasets", "artifacts", "tables"))

    p = sub.add_parser("show", help="print the resolved recipe")
    p.add_argument("recipe")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="STAGE.PARAM=VALUE")

    p = sub.add_parser("plan", help="what would be reused, fetched or regenerated, and what it costs")
    _add_run_options(p)

    p = sub.add_parser("reproduce", help="run a recipe over datasets, then compare with the papers")
    _add_run_options(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--results-dir", type=Path, default=Path("results"),
                   help="where results files go (default: ./results)")

    for name, help_ in (("compare", "compare results with the reported tables (or our pinned results)"),
                        ("table", "render results and references as a table for papers")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("recipes", nargs="+")
        p.add_argument("--dataset", "-d", action="append", default=None)
        p.add_argument("--results-dir", type=Path, default=Path("results"))
        p.add_argument("--pinned", action="store_true", help="compare with our own pinned results (tight tolerance)")
        if name == "compare":
            p.add_argument("--strict", action="store_true", help="exit non-zero when any score is below its reference")
            p.add_argument("--pin", action="store_true", help="record the current results as the pinned reference")
        else:
            p.add_argument("--format", choices=("markdown", "latex", "csv", "html"), default="markdown")
            p.add_argument("--output", "-o", type=Path, default=None)
            p.add_argument("--readme", type=Path, default=None, metavar="README.md",
                           help="write the (markdown) table into the README's results section")
            p.add_argument("--significance", choices=("t-test", "randomization"), default=None,
                           help="test each recipe against the first on the per-query scores of the headline metric "
                                "(read from the store): paired t-test or Fisher's randomization test")
            p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
            p.add_argument("--correction", choices=("none", "holm"), default="none",
                           help="multiple-testing correction over the table's tests (default: none)")
            p.add_argument("--resamples", type=int, default=10_000, metavar="N",
                           help="randomization test: random relabellings (default: 10000)")
            p.add_argument("--seed", type=int, default=0, help="randomization test: random seed (default: 0)")
            p.add_argument("--reference", action="append", default=None, metavar="LABEL",
                           help="keep only the reported numbers of this reference label (e.g. 'InPars-v2 Table 1'); "
                                "repeatable")
            p.add_argument("--scale", type=float, default=1.0, choices=(1.0, 100.0),
                           help="print scores x1 (0.6789) or x100 (67.89) as IR papers do; CSV keeps 0-1 values")
            p.add_argument("--digits", type=int, default=None, help="decimals (default: 4, or 2 with --scale 100)")
            p.add_argument("--highlight", choices=("best+second", "best", "none"), default="best+second",
                           help="LaTeX: best of each row in bold, second best underlined (default: best+second)")
    p = sub.add_parser("diff", help="per-query analysis of one recipe against another on a dataset")
    p.add_argument("a", metavar="A", help="the recipe compared against")
    p.add_argument("b", metavar="B", help="the recipe whose gains and losses are listed")
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--metric", default="nDCG@10", help="per-query metric (default: nDCG@10)")
    p.add_argument("--top", type=int, default=10, help="how many gains and losses to list (default: 10)")
    p.add_argument("--output", "-o", type=Path, default=None, metavar="PLOTBASE",
                   help="write the sorted per-query differences to PLOTBASE.png and PLOTBASE.svg "
                        "(default: diff-A-B-DATASET in the current folder)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p = sub.add_parser("lock", help="pin registry entries: resolve to a commit and record every file's sha256")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", dest="all_used", action="store_true",
                   help="lock every entry a recipe uses in registry.lock (the maintainer's command before a release)")
    p.add_argument("--every-entry", action="store_true", help="with --all: every registry entry, used or not")
    p.add_argument("--user", action="store_true", help="record in the store's user lock instead of registry.lock")

    p = sub.add_parser("fetch", help="download registry entries at their locked revision into the store, verified")
    p.add_argument("ids", nargs="+", metavar="ID")

    p = sub.add_parser("verify", help="re-hash the store against the manifests")
    p.add_argument("keys", nargs="*", metavar="KEY")
    p.add_argument("--evict", action="store_true",
                   help="remove corrupt artifacts (they are rebuilt or re-fetched next run)")

    p = sub.add_parser("publish", help="upload an artifact to a Hub repo and record it in the user registry")
    p.add_argument("key", help="artifact key (see `harness list artifacts`)")
    p.add_argument("--repo", required=True, help="owner/name of the Hub repo (created if needed)")
    p.add_argument("--repo-type", choices=("dataset", "model"), default=None,
                   help="default: model for trained rerankers, dataset otherwise")
    p.add_argument("--id", dest="entry_id", default=None, help="registry id for the new entry")
    p.add_argument("--private", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    import logging  # not before: `harness --help` and argument errors answer without it

    # The handler filters by level too: some libraries set their own logger to DEBUG (bm25s does), and their
    # records reach the root handler whatever the root logger's level.
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", handlers=[handler])
    try:
        return _COMMANDS[args.command](args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished artifacts are kept; run the same command again to resume", file=sys.stderr)
        return 130


def _store(args):
    from harness.store import Store

    return Store(args.home)


def _recipe(args):
    from harness import recipes

    sets = list(args.sets)
    if getattr(args, "retriever", None):
        sets.append(f"retrieve.retriever={args.retriever}")
    return recipes.load(args.recipe, sets)


def _datasets(args, recipe) -> list[str]:
    from harness.data.catalog import expand

    return expand(args.dataset or recipe.datasets)


def cmd_list(args) -> int:
    if args.what == "recipes":
        from harness import recipes

        for name in recipes.available():
            r = recipes.load(name)
            print(f"{name:<26} v{r.version:<3} {r.description or r.paper}")
    elif args.what == "datasets":
        from harness.data.catalog import DATASETS, GROUPS

        for d in DATASETS.values():
            access = "public" if d.public else "restricted"
            size = f"{d.corpus_size:,}" if d.corpus_size else "-"
            extra = f"  {len(d.subsets)} subforums, averaged" if d.subsets else ""
            extra += "  drops the query's own id" if d.remove_query else ""
            print(f"{d.name:<18} {d.title:<18} {d.split:<5} docs {size:>11}  {access}{extra}")
        for g, names in GROUPS.items():
            print(f"{g:<18} group of {len(names)}")
        print("also: irds:<id> (any ir_datasets collection), "
              "or the path of your own corpus (BEIR folder, .tsv, .jsonl)")
    elif args.what == "tables":
        from harness import reported

        for t in reported.tables():
            print(t)
    else:
        store = _store(args)
        for key in store.keys():
            art = store.get(key, verify=False)
            size = sum(f["size"] for f in art.manifest["files"].values())
            print(f"{key:<40} {art.manifest['kind']:<10} {size / 1e6:10.2f} MB  {art.manifest['created']}")
    return 0


def cmd_show(args) -> int:
    import yaml

    recipe = _recipe(args)
    data = recipe.model_dump(mode="json", exclude={"modified"} if not recipe.modified else set())
    print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110), end="")
    return 0


def cmd_plan(args) -> int:
    from harness.plan import plan

    recipe = _recipe(args)
    print(plan(recipe, _datasets(args, recipe), _store(args), mode=args.mode, data_dir=args.data_dir,
               source=args.source, limit_queries=args.limit_queries), end="")
    return 0


def cmd_reproduce(args) -> int:
    from harness.runner import Runner

    recipe = _recipe(args)
    datasets = _datasets(args, recipe)
    executor = _executor(args)
    runner = Runner(recipe, _store(args), mode=args.mode, device=args.device, data_dir=args.data_dir,
                    source=args.source, limit_queries=args.limit_queries, results_dir=args.results_dir,
                    progress=not args.quiet, executor=executor)
    try:
        return _reproduce(args, recipe, datasets, runner)
    finally:
        executor.close()


def _executor(args):
    from harness.executors import get_executor

    if args.executor == "local":
        if args.ray_address or args.ray_workers:
            raise HarnessError("--ray-address and --ray-workers go with --executor ray.")
        return get_executor("local")
    return get_executor("ray", address=args.ray_address, num_workers=args.ray_workers)


def _reproduce(args, recipe, datasets, runner) -> int:
    import time

    from harness.compare import compare
    from harness.evaluate import MEASURES
    from harness.runner import available_locally
    from harness.tables import markdown

    modified = f" (modified: {recipe.modified})" if recipe.modified else ""
    print(f"harness reproduce {recipe.name} v{recipe.version}{modified}"
          + f", mode {args.mode}, {len(datasets)} dataset(s)" + (", executor ray" if args.executor == "ray" else ""))
    runner.check_gaps(datasets)  # fetch mode: stop before any work when a published stage cannot be fetched
    done, skipped = [], []
    started = time.time()
    for dataset in datasets:
        why = available_locally(dataset, args.data_dir, args.source)
        if why:
            skipped.append((dataset, why))
            print(f"  {dataset:<22} skipped: {why}")
            continue
        from harness.data.download import DownloadError

        try:
            result = runner.run_dataset(dataset)
        except DownloadError as exc:  # the other datasets still run
            skipped.append((dataset, str(exc)))
            print(f"  {dataset:<22} skipped: {exc}")
            continue
        if result.skipped:  # trained, not scored: nothing to compare
            continue
        modes = [o.mode for o in result.outcomes]
        print(f"  {dataset:<22} " + "  ".join(f"{m} {result.metrics[m]:.4f}" for m in MEASURES if m in result.metrics)
              + f"   ({modes.count('reuse')} reused, {modes.count('fetch')} fetched, "
              f"{modes.count('regenerate')} built)")
        done.append(dataset)
    print(f"done in {time.time() - started:.1f}s; results in {args.results_dir / recipe.name}")
    if done and not recipe.modified and not args.limit_queries:
        from harness.compare import pinned_path

        rows = compare(recipe, args.results_dir, done) if recipe.reference else []
        if pinned_path(recipe).is_file():
            rows += compare(recipe, args.results_dir, done, pinned=True)
        if rows:
            print()
            print(markdown(rows), end="")
    return 0 if done or not skipped else 1


def _rows(args):
    from harness import recipes
    from harness.compare import compare

    rows = []
    for name in args.recipes:
        recipe = recipes.load(name)
        rows += compare(recipe, args.results_dir, args.dataset, pinned=args.pinned)
    return rows


def cmd_compare(args) -> int:
    from harness.tables import markdown

    if args.pin:
        from harness import recipes
        from harness.compare import pin

        for name in args.recipes:
            print(f"pinned {pin(recipes.load(name), args.results_dir)}")
        return 0
    rows = _rows(args)
    print(markdown(rows), end="")
    from harness.compare import VERDICTS

    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    print(", ".join(f"{n} {v}" for v, n in counts.items() if n))
    if args.strict and (counts["below"] or (args.pinned and (counts["above"] or counts["no-result"]))):
        return 1
    return 0


def cmd_table(args) -> int:
    from harness.tables import Options, build, render

    options = Options(significance=args.significance, alpha=args.alpha, correction=args.correction,
                      resamples=args.resamples, seed=args.seed, references=tuple(args.reference or ()),
                      scale=args.scale, digits=args.digits, highlight=args.highlight)
    table = build(args.recipes, args.results_dir, args.dataset, _store(args) if args.significance else None, options,
                  pinned=args.pinned)
    text = render(table, args.format)
    if args.readme:
        from harness.tables import update_readme

        update_readme(args.readme, text)
        print(f"updated the results section of {args.readme}")
    elif args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def cmd_diff(args) -> int:
    from harness import diff

    d = diff.load(args.a, args.b, args.dataset, args.metric, args.results_dir, _store(args))
    print(diff.report(d, args.top), end="")
    base = args.output or Path(f"diff-{args.a}-{args.b}-{args.dataset.replace('/', '--')}")
    if d.changes:
        print("wrote " + ", ".join(map(str, diff.plot(d, base))))
    return 0


def cmd_lock(args) -> int:
    from harness.lock import lock, lock_all
    from harness.registry import Registry

    store = _store(args)
    registry = Registry(store.root)
    if args.all_used == bool(args.ids) or (args.every_entry and not args.all_used):
        raise HarnessError("`harness lock` takes registry ids, or --all (with --every-entry for unused entries too).")
    if args.all_used:
        if args.user:
            raise HarnessError("`harness lock --all` fills the project's registry.lock; drop --user.")
        locked = lock_all(registry, store, every_entry=args.every_entry)
        print(f"locked {len(locked)} entr{'y' if len(locked) == 1 else 'ies'} in registry.lock")
    for entry_id in args.ids:
        lock(registry, entry_id, store, user=args.user)
    return 0


def cmd_fetch(args) -> int:
    from harness.fetch import fetch

    store = _store(args)
    for entry_id in args.ids:
        artifact, fetched = fetch(entry_id, store)
        print(f"{'fetched' if fetched else 'in store'} {entry_id} → {artifact.path}")
    return 0


def cmd_verify(args) -> int:
    from harness.verify import verify

    return 1 if verify(_store(args), args.keys or None, evict=args.evict) else 0


def cmd_publish(args) -> int:
    from harness.publish import publish

    store = _store(args)
    art = store.get(args.key)
    repo_type = args.repo_type or ("model" if art and art.manifest["kind"] == "model" else "dataset")
    publish(store, args.key, args.repo, repo_type=repo_type, entry_id=args.entry_id, private=args.private)
    return 0


_COMMANDS = {
    "lock": cmd_lock,
    "fetch": cmd_fetch,
    "verify": cmd_verify,
    "publish": cmd_publish,
    "list": cmd_list,
    "show": cmd_show,
    "plan": cmd_plan,
    "reproduce": cmd_reproduce,
    "compare": cmd_compare,
    "table": cmd_table,
    "diff": cmd_diff,
}

if __name__ == "__main__":
    sys.exit(main())
