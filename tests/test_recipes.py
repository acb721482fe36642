"""Recipes: strict schema, versions with changelogs, extends, --set."""

from __future__ import annotations

import pytest

from harness import recipes
from harness.errors import HarnessError


def test_every_bundled_recipe_loads_and_is_versioned():
    names = recipes.available()
    assert {"bm25-flat", "bm25-multifield"} <= set(names)
    for name in names:
        recipe = recipes.load(name)
        assert recipe.name == name and recipe.version in recipe.changelog


def test_extends_changes_only_what_it_says():
    flat, multi = recipes.load("bm25-flat"), recipes.load("bm25-multifield")
    assert multi.stages["retrieve"]["fields"] == "multifield"
    assert multi.stages["retrieve"]["k"] == flat.stages["retrieve"]["k"] == 1000
    assert multi.stage_params("evaluate", "scifact") == flat.stage_params("evaluate", "scifact")


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


BASE = "name: r\nversion: 1\nchangelog: {1: first}\npaper: p\nstages: {retrieve: {k: 10}, evaluate: {}}\n"


def test_unknown_top_level_key_names_file_key_and_allowed_keys(tmp_path):
    with pytest.raises(HarnessError) as err:
        recipes.load(_write(tmp_path, BASE + "stagez: {}\n"))
    text = str(err.value)
    assert "r.yaml" in text and "unknown key 'stagez'" in text and "Allowed:" in text and "stages" in text


def test_unknown_stage_parameter_is_an_error(tmp_path):
    with pytest.raises(HarnessError, match=r"stages.retrieve: unknown key 'kk'.*Allowed: retriever"):
        recipes.load(_write(tmp_path, BASE.replace("k: 10", "kk: 10")))


def test_wrong_type_and_missing_changelog(tmp_path):
    with pytest.raises(HarnessError, match="stages.retrieve: k"):
        recipes.load(_write(tmp_path, BASE.replace("k: 10", "k: many")))
    with pytest.raises(HarnessError, match="version 2 has no changelog line"):
        recipes.load(_write(tmp_path, BASE.replace("version: 1", "version: 2")))


def test_malformed_yaml_names_the_line(tmp_path):
    with pytest.raises(HarnessError, match=r"r.yaml line \d+: not valid YAML"):
        recipes.load(_write(tmp_path, BASE + "notes: [unclosed\n"))


def test_unknown_recipe_suggests_close_names():
    with pytest.raises(HarnessError, match="Did you mean 'bm25-flat'"):
        recipes.load("bm25-flatt")


def test_set_changes_one_value_and_marks_the_recipe_modified():
    recipe = recipes.load("bm25-flat", ["retrieve.k=100"])
    assert recipe.stages["retrieve"]["k"] == 100 and recipe.modified == {"retrieve.k": 100}
    assert recipe.variant and not recipes.load("bm25-flat").variant
    with pytest.raises(HarnessError, match="expected STAGE.PARAM=VALUE"):
        recipes.load("bm25-flat", ["k=100"])
    with pytest.raises(HarnessError, match="unknown key 'depth'"):
        recipes.load("bm25-flat", ["retrieve.depth=100"])


def test_dataset_placeholders_in_published_ids():
    recipe = recipes.load("bm25-flat")
    assert recipe.published_id("retrieve", "scifact") == "bm25/scifact/flat-run"
