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


# --- reading YAML fast (harness.fast_yaml) and the registry's locks --------------------------------------

def test_fast_yaml_loads_what_the_pure_loader_loads():
    import yaml

    from harness import fast_yaml
    from harness.paths import recipes_dir, registry_file

    for path in [*recipes_dir().glob("*.yaml"), registry_file()]:
        text = path.read_text(encoding="utf-8")
        assert fast_yaml.safe_load(text) == yaml.safe_load(text), path


@pytest.mark.parametrize("text", ["a: [unclosed\n", "a: b: c\n", "name: x\nstages:\n\tretrieve: {}\n", "a: *nope\n",
                                  "a: !!python/object/apply:os.system ['true']\n", "a: 'x\n"])
def test_fast_yaml_errors_are_the_pure_loaders(text):
    import yaml

    from harness import fast_yaml

    with pytest.raises(yaml.YAMLError) as pure:
        yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError) as fast:
        fast_yaml.safe_load(text)
    assert str(fast.value) == str(pure.value)


def test_values_yaml_cannot_build_are_yaml_errors(tmp_path):
    with pytest.raises(HarnessError, match=r"r.yaml: not valid YAML \(cannot construct a value \(month must be"):
        recipes.load(_write(tmp_path, BASE + "description: !!timestamp 2001-13-01\n"))
    with pytest.raises(HarnessError, match=r"--set 'retrieve.k=\[1': '\[1' is not a YAML value"):
        recipes.load("bm25-flat", ["retrieve.k=[1"])


def test_deeply_nested_yaml_is_an_error_not_a_crash(tmp_path):
    """libyaml's own composer recurses in C without a limit (a segfault near 100k levels): not used."""
    import subprocess
    import sys
    import textwrap

    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "r.yaml").write_text(f"stages: {deep}\n")
    (tmp_path / "registry.yaml").write_text(f"entries: {deep}\n")
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from harness import recipes
        from harness.registry import Registry
        for load, path in ((recipes.load, sys.argv[1]), (lambda p: Registry(Path(p).parent, Path(p)), sys.argv[2])):
            try:
                load(path)
            except Exception as exc:
                print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.yaml"), str(tmp_path / "registry.yaml")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "nested too deeply to be a recipe" in out.stdout and "nested too deeply to be a registry" in out.stdout


def test_registry_locks_are_read_again_when_the_file_changes(tmp_path):
    import json
    import os

    from harness.registry import Registry, locks, user_lock

    path = user_lock(tmp_path)

    def write(revision: str, replace: bool) -> None:
        text = json.dumps({"version": 1, "entries": {"org/model": {"revision": revision, "files": {}}}})
        if replace:  # as Registry.write_lock does
            path.with_suffix(".tmp").write_text(text)
            os.replace(path.with_suffix(".tmp"), path)
        else:  # in place, same size, likely within the file system's timestamp granularity
            path.write_text(text)

    for replace in (True, False):
        write("1" * 40, replace)
        assert locks(tmp_path)["org/model"].revision == "1" * 40
        write("2" * 40, replace)
        assert Registry(tmp_path).lock_of("org/model").revision == "2" * 40
    locks(tmp_path).clear()  # callers get a copy: the cached locks are untouched
    assert "org/model" in locks(tmp_path)
    path.write_text("{not json")
    with pytest.raises(HarnessError, match="not a valid lock file"):
        locks(tmp_path)
