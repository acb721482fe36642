"""Item 5 (fuzz): no input makes the recipe, registry, stage-parameter or data loaders crash with a traceback.

The property for each loader: it returns a result or raises `HarnessError` with a one-line message; any
other exception is a bug. Inputs are random text and bytes, and random structures near the valid ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError

FUZZ = settings(max_examples=int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
RECIPE_KEYS = ["name", "version", "changelog", "paper", "datasets", "stages", "overrides", "published", "reference",
               "regression", "notes", "extends", "cost", "description", "bogus"]
STAGE_NAMES = ["corpus", "index", "retrieve", "generate", "filter", "negatives", "train", "rerank", "evaluate"]
stage_params = st.dictionaries(st.sampled_from(["retriever", "k", "fields", "model", "n_docs", "metrics", "prompt",
                                                "steps", "depth", "seed", "threads", "x"]), values, max_size=4)
recipes = st.fixed_dictionaries(
    {"name": st.just("fuzz"), "version": st.one_of(st.integers(-2, 3), values), "changelog": values, "paper": values},
    optional={k: values for k in RECIPE_KEYS if k not in ("name", "version", "changelog", "paper", "stages")}
    | {"stages": st.dictionaries(st.sampled_from(STAGE_NAMES + ["nope"]), stage_params, max_size=3)},
)


def holds(reliability, what, call):
    """Run `call`: a result or a one-line HarnessError holds; anything else is recorded as broken and raised."""
    try:
        call()
    except HarnessError as exc:
        if "\n" in str(exc) or not str(exc).strip():
            reliability.record("fuzz", what, held=False)
            raise AssertionError(f"not one line: {exc!r}") from None
    except Exception:
        reliability.record("fuzz", what, held=False)
        raise
    reliability.record("fuzz", what, held=True)


def _write(tmp_path_factory, data: bytes, name: str) -> Path:
    """`data` as the file `name` in a new folder under pytest's session temp folder (the session-scoped
    factory, because hypothesis runs one test function many times and `tmp_path` is made once per function)."""
    path = tmp_path_factory.mktemp("fuzz") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _recipe_load(tmp_path_factory, data: bytes):
    from harness import recipes

    return lambda: recipes.load(str(_write(tmp_path_factory, data, "fuzz.yaml")))


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_recipe_loader_on_random_text(reliability, tmp_path_factory, data):
    holds(reliability, "recipe loader: random text", _recipe_load(tmp_path_factory, data))


@FUZZ
@given(recipes)
def test_recipe_loader_on_random_structures(reliability, tmp_path_factory, recipe):
    holds(reliability, "recipe loader: random structures",
          _recipe_load(tmp_path_factory, yaml.safe_dump(recipe).encode()))


@FUZZ
@given(st.sampled_from(STAGE_NAMES + ["nope"]), stage_params)
def test_stage_parameters(reliability, stage, params):
    from harness.stages import parse_params

    holds(reliability, "stage parameters", lambda: parse_params(stage, params, "fuzz"))


entries = st.lists(st.one_of(values, st.fixed_dictionaries(
    {"id": st.one_of(st.just("user/a/run"), st.text(max_size=12)), "kind": st.sampled_from(["run", "model", "x"]),
     "repo": st.text(max_size=10), "files": st.one_of(st.lists(st.text(max_size=12), max_size=3), values),
     "provenance": st.text(max_size=5)},
    optional={"repo_type": values, "access": values, "superseded_by": values})), max_size=3)


@FUZZ
@given(st.one_of(st.binary(max_size=300), entries.map(lambda e: yaml.safe_dump({"entries": e}).encode())))
def test_registry_loader(reliability, tmp_path_factory, data):
    from harness.registry import Registry

    def load():
        path = _write(tmp_path_factory, data, "registry.yaml")
        registry = Registry(path.parent, path)
        for entry_id in list(registry.entries)[:2]:
            registry.get(entry_id)

    holds(reliability, "registry loader", load)


json_rows = st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["_id", "text", "title", "x"]), values, max_size=4),
    values,
).map(lambda v: json.dumps(v, allow_nan=True)), max_size=6).map(lambda rows: "\n".join(rows).encode())
lines_of_bytes = st.one_of(st.binary(max_size=300), json_rows,
                           st.lists(st.lists(st.sampled_from(["q1", "Q0", "d1", "1", "0", "-3", "2.5", "x", "query-id",
                                                              "nan", "inf", "1e999", "\t", "é"]), max_size=7),
                                    max_size=6).map(lambda ls: "\n".join(" ".join(w) for w in ls).encode()))


@FUZZ
@given(lines_of_bytes, st.booleans())
def test_data_readers(reliability, tmp_path_factory, data, gz):
    import gzip

    from harness.data import beir, trec

    name = "f.jsonl.gz" if gz else "f.jsonl"
    path = _write(tmp_path_factory, gzip.compress(data) if gz and data[:1] != b"x" else data, name)
    holds(reliability, "corpus reader", lambda: list(beir.iter_corpus(path)))
    holds(reliability, "queries reader", lambda: beir.read_queries(path))
    holds(reliability, "qrels reader", lambda: beir.read_qrels(path))
    plain = _write(tmp_path_factory, data, "run.trec")
    holds(reliability, "TREC run reader", lambda: trec.read_run(plain))
