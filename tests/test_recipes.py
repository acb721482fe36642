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


# --- extends: what a variant clears, and every recipe's resolved form ----------------------------------

def test_empty_mapping_and_null_clear_what_extends_brought_in(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE.replace("stages: {retrieve: {k: 10}, evaluate: {}}",
                                                     "stages: {retrieve: {k: 10}, evaluate: {}}\n"
                                                     "published: {retrieve: 'bm25/{name}/flat-run'}"))
    (tmp_path / "empty.yaml").write_text("name: empty\nversion: 1\nchangelog: {1: x}\nextends: "
                                         f"{tmp_path / 'base.yaml'}\npublished: {{}}\n")
    (tmp_path / "null.yaml").write_text("name: cleared\nversion: 1\nchangelog: {1: x}\nextends: "
                                        f"{tmp_path / 'base.yaml'}\npublished: {{retrieve: null}}\n")
    for name in ("empty", "null"):
        recipe = recipes.load(str(tmp_path / f"{name}.yaml"))
        assert recipe.published_id("retrieve", "scifact") is None, name
        assert recipe.stages["retrieve"] == {"k": 10}


def test_bm25_multifield_fetches_no_flat_run():
    """Issue 17: `harness show bm25-multifield` printed `retrieve: bm25/{name}/flat-run`, so --mode fetch scored
    the flat run against the multifield references; its `published: {}` must clear bm25-flat's."""
    multi = recipes.load("bm25-multifield")
    assert multi.published == {} and multi.published_id("retrieve", "scifact") is None
    assert recipes.load("bm25-flat").published_id("retrieve", "scifact") == "bm25/scifact/flat-run"


def test_no_resolved_recipe_fetches_a_run_of_other_fields_or_a_reranker_of_other_training():
    """Every recipe's resolved form: a published BM25 run only where the recipe retrieves flat (the runs in
    unicamp-dl/beir-runs are flat), a published reranker only where the recipe trains as its authors did."""
    for name in recipes.available():
        recipe = recipes.load(name)
        retrieve = recipe.stages.get("retrieve", {})
        if recipe.published.get("retrieve"):
            assert retrieve.get("fields", "flat") == "flat", name
        train = recipe.published.get("train") or ""
        if "inpars-v2/" in train:  # the zeta-alpha v2 rerankers: the TPU recipe (legacy/inpars-v2/train_inpars.sh)
            assert recipe.stages["train"]["optimizer"] == "adafactor", name
        assert None not in recipe.published.values() or recipe.extends is None, name  # nulls were applied


# --- seeds ------------------------------------------------------------------------------------------------

def test_seeds_are_validated(tmp_path):
    assert recipes.load(_write(tmp_path, BASE + "seeds: [1, 2, 3]\n")).seeds == [1, 2, 3]
    for bad in ("[1]", "[1, 1]", "[-1, 2]", "three"):
        with pytest.raises(HarnessError, match="seeds"):
            recipes.load(_write(tmp_path, BASE + f"seeds: {bad}\n"))


# --- the paper recipes, fact by fact (each test cites its source) -------------------------------------------

def test_inpars_v2_trains_as_the_authors_tpu_script():
    """legacy/inpars-v2/train_inpars.sh (zetaalphavector/InPars 9865521): line 15 the T5 3B operative config
    (Adafactor), line 20 `learning_rate_schedules/constant_0_001.gin`, line 21 `run.train_steps = 1010156` from
    the checkpoint at 1010000 (156 steps), line 23 `tokens_per_batch 65536`, line 25 inputs 512 / targets 2."""
    train = recipes.load("inpars-v2").stage_params("train", "scifact")
    assert train["optimizer"] == "adafactor"
    assert train["learning_rate"] == 1e-3 and train["lr_schedule"] == "constant"
    assert train["steps"] == 156
    assert train["batch_size"] * train["max_length"] == 65_536 and train["max_length"] == 512
    assert train["model"].endswith("monot5-3b-msmarco-10k")


def test_the_toolkits_gpu_reproduction_is_its_own_recipe_with_its_own_reference():
    """Toolkit README: `python -m inpars.train --triples ... --base_model castorini/monot5-3b-msmarco-10k
    --output_dir ./reranker/ --max_steps 156`; inpars/train.py parses Seq2SeqTrainingArguments, so the rest is the
    Trainer's defaults (AdamW, linear decay, no warmup, batch 8 per device, clipping at 1.0, seed 42) and its own
    `max_doc_length` default of 300; the lr is 3e-4 by the authors' word in the toolkit's issue #21."""
    gpu = recipes.load("inpars-v2-toolkit-gpu")
    train = gpu.stage_params("train", "scifact")
    assert (train["optimizer"], train["learning_rate"], train["lr_schedule"], train["warmup_steps"]) == (
        "adamw", 3e-4, "linear", 0)
    assert (train["batch_size"], train["steps"], train["max_grad_norm"], train["seed"]) == (8, 156, 1.0, 42)
    assert train["max_length"] == 300 and train["dtype"] == "float32"
    assert [(r.table, r.system) for r in gpu.reference] == [
        ("inpars-toolkit-table2", "InPars-v2 monoT5-3B trained on GPU with toolkit (GPU column)")]
    assert gpu.published_id("train", "scifact") is None  # the published rerankers are the TPU ones
    assert "GPU column" not in " ".join(r.system for r in recipes.load("inpars-v2").reference)
    assert "inpars-v2-lr3e-4" not in recipes.available()


def test_inpars_v1_uses_gbq_in_domain_and_keeps_vanilla_as_a_variant():
    """InPars-v1 Table 2 (paper TeX, ../shared/reference/sources/inpars_v1_main_tex_tables.tex):
    `(2) & monoT5-220M & In-domain & GBQ` and `(4) & monoT5-3B & In-domain & GBQ`; the vanilla rows (1), (3)
    use MS MARCO documents."""
    for name in ("inpars-v1", "inpars-v1-220m", "inpars-v1-3b-from-scratch"):
        assert recipes.load(name).stage_params("generate", "trec-covid")["prompt"] == "inpars-gbq", name
    vanilla = recipes.load("inpars-v1-vanilla")
    assert vanilla.stage_params("generate", "trec-covid")["prompt"] == "inpars" and vanilla.reference == []
    scratch = recipes.load("inpars-v1-3b-from-scratch")
    assert scratch.published_id("train", "nq") == "inpars-v1/nq/reranker-from-scratch"
    assert any("same experiment" in n and "Curie" in n for n in scratch.notes)


def test_inpars_v1_trains_as_the_paper_not_the_later_gpu_script():
    """../shared/reference/inpars-method.md (corrected 2026-12-04): the paper finetuned monoT5 with T5's TPU recipe,
    constant lr 1e-3, one epoch of the 10k pairs with one negative each (steps of 128); 'lr 3e-4, AdamW, 8 x 16
    accumulation' is legacy/inpars-v1/train_t5.py (lines 201-209), not the paper."""
    for name in ("inpars-v1", "inpars-v1-220m", "inpars-v1-3b-from-scratch"):
        train = recipes.load(name).stage_params("train", "nq")
        assert (train["optimizer"], train["learning_rate"], train["lr_schedule"]) == ("adafactor", 1e-3, "constant")
        assert train["batch_size"] == 128 and train["epochs"] == 1 and train.get("steps") is None
    notes = " ".join(recipes.load("inpars-v1").notes)
    assert "as the paper" in notes and "train_t5.py" in notes


def test_promptagator_references():
    """Promptagator Table 2 footnote: Climate-FEVER with FEVER's few-shot prompt prints '(24.1*)' beside
    Promptagator++'s 20.3; Promptagator++ (FLAN 137B, round-trip filtering) is another system: information only."""
    recipe = recipes.load("promptagator")
    assert recipe.stage_params("generate", "climate-fever")["prompt"] == "promptagator-fever"
    plus = next(r for r in recipe.reference if r.table == "promptagator-table2")
    assert plus.informational and "(24.1*)" in plus.system_for["climate-fever"]
    assert not next(r for r in recipe.reference if r.table == "inpars-toolkit-table1").informational


def test_notes_no_longer_copy_the_corrected_errors():
    """../shared/reference/inpars-method.md's three corrections (2026-12-04): GBQ in-domain for InPars-v1, the
    paper's training (constant 1e-3; Adafactor for InPars-v2), and BioASQ's synthetic data published (886abbc);
    and BEIR drops self-hits for every dataset, not two."""
    text = " ".join(n for name in recipes.available() for n in recipes.load(name).notes)
    assert "no synthetic data was published" not in text
    assert "AdamW, as the paper" not in text
    assert "applies to ArguAna and Quora" not in text
    assert "886abbc" in text
