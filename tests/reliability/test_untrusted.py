"""Item 6: untrusted artifacts. No remote code, weights-only unpickling, no file names or symlinks that leave
the store, YAML loaded safely. (Tokens kept out of errors, logs and manifests: see test_network.py.)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError

PACKAGE = Path(__file__).resolve().parents[2] / "harness"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from harness.models.tiny import materialize

    root = tmp_path_factory.mktemp("untrusted-models")
    return {"gpt2": materialize("tiny:gpt2", root), "t5": materialize("tiny:t5", root)}


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


EVIL_CODE = """
from pathlib import Path
Path({marker!r}).write_text("remote code ran")
from transformers import GPT2Config as EvilConfig, GPT2LMHeadModel as EvilModel
"""


@pytest.mark.parametrize("model_type", ["gpt2", "evil"], ids=["known type", "unknown type"])
def test_remote_code_is_never_run(tiny_models, tmp_path, reliability, model_type):
    from harness.models.loading import config_kind, load_model

    folder = _copy(tiny_models["gpt2"], tmp_path / "model")
    marker = tmp_path / "marker"
    (folder / "evil.py").write_text(EVIL_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig",
                                                   "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    with reliability.trial("security", f"model with remote code ({model_type} model type): code not run"):
        for call in (lambda: load_model("causal", folder), lambda: config_kind(folder)):
            try:
                call()  # a known type loads as itself, ignoring auto_map
            except HarnessError as exc:
                assert "\n" not in str(exc)
        assert not marker.exists(), "the repository's code was executed"


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # runs on unpickling: creates the marker file


def test_pickled_weights_that_run_code_are_refused(tiny_models, tmp_path, reliability):
    import torch

    from harness.models.loading import load_model

    folder = _copy(tiny_models["t5"], tmp_path / "model")
    state = {}
    for weights in folder.glob("*.safetensors"):
        from safetensors.torch import load_file

        state.update(load_file(weights))
        weights.unlink()
    marker = tmp_path / "marker"
    state["evil"] = _Evil(str(marker))
    torch.save(state, folder / "pytorch_model.bin")
    with reliability.trial("security", "pickled .bin that would run code: refused"):
        with pytest.raises(HarnessError, match="Refused to load") as exc:
            load_model("seq2seq", folder)
        assert "\n" not in str(exc.value)
        assert not marker.exists(), "the pickle's code was executed"


def test_plain_pickled_weights_still_load(tiny_models, tmp_path, reliability):
    """The control: a `.bin` holding only tensors loads (weights-only refuses code, not pickles)."""
    import torch
    from safetensors.torch import load_file

    from harness.models.loading import load_model

    folder = _copy(tiny_models["t5"], tmp_path / "model")
    state = {}
    for weights in folder.glob("*.safetensors"):
        state.update(load_file(weights))
        weights.unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with reliability.trial("security", "plain pickled .bin (tensors only): loads"):
        assert load_model("seq2seq", folder) is not None


BAD_NAMES = ["../escape.trec", "a/../../escape.trec", "/etc/passwd", "~/x", "a\\..\\b", "a\x00b", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_registry_file_names_that_leave_the_store(reliability, name):
    from pydantic import ValidationError

    from harness.registry import Entry, Lock

    with reliability.trial("security", "registry/lock file name leaving the store: refused"):
        with pytest.raises((HarnessError, ValidationError)):
            Entry(id="user/a/run", kind="run", repo="a/b", files=[name], provenance="t")
        with pytest.raises((HarnessError, ValidationError)):
            Lock(revision="0" * 40, files={name: {"sha256": "0" * 64, "size": 1}})


@pytest.mark.parametrize("name", ["../escape.trec", "sub/../../escape.trec"])
def test_hub_listing_with_a_file_name_that_leaves_the_store(local_hub, store, tmp_path, monkeypatch, reliability,
                                                             name):
    from harness.lock import lock
    from harness.registry import Entry, Registry

    monkeypatch.setattr("harness.registry.project_lock", lambda: tmp_path / "registry.lock")
    local_hub.add_repo("bad/repo", "dataset", {"runs/ok.trec": "q1 Q0 d1 1 1.0 t\n", name: "evil"})
    registry = Registry(store.root)
    registry.add_entry(Entry(id="user/bad/run", kind="run", repo="bad/repo", files=["*.trec", "runs/*"],
                             provenance="t"))
    with reliability.trial("security", "Hub file name leaving the store: refused"):
        with pytest.raises(HarnessError, match="leave the store"):
            lock(registry, "user/bad/run", store, echo=lambda _: None)
        assert store.keys() == [] and not (store.root.parent / "escape.trec").exists()
        assert not any(p.name == "escape.trec" for p in tmp_path.rglob("escape.trec"))


def test_symlink_in_a_build_is_refused(store, tmp_path, reliability):
    outside = tmp_path / "secret.txt"
    outside.write_text("not the store's")

    def build(out):
        (out.path / "data.txt").write_text("fine")
        (out.path / "link.txt").symlink_to(outside)

    with reliability.trial("security", "symlink inside a built artifact: refused"):
        with pytest.raises(HarnessError, match="symlink"):
            store.get_or_build("bad-symlink", build, kind="x", stage="x", params={}, inputs={})
        assert store.keys() == []


def test_symlink_swapped_into_an_artifact_is_corruption(store, tmp_path, reliability):
    def build(out):
        (out.path / "data.txt").write_text("fine")

    artifact, _ = store.get_or_build("good", build, kind="x", stage="x", params={}, inputs={})
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("fine")  # same bytes: only the link itself is wrong
    (artifact.path / "data.txt").unlink()
    (artifact.path / "data.txt").symlink_to(outside)
    with reliability.trial("security", "file replaced by a symlink after the build: found as corrupt"):
        assert any("symlink" in p for p in store.check("good", full=True))


def test_yaml_is_loaded_safely(tmp_path, store, reliability, monkeypatch):
    from harness import recipes
    from harness.registry import Registry

    marker = tmp_path / "marker"
    payload = f"!!python/object/apply:builtins.open [{str(marker)!r}, 'w']"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"name: evil\nversion: 1\nchangelog: {{1: x}}\npaper: {payload}\nstages: {{}}\n")
    with reliability.trial("security", "YAML with a Python object tag: refused, nothing run"):
        with pytest.raises(HarnessError):
            recipes.load(str(recipe))
        registry = tmp_path / "registry.yaml"
        registry.write_text(f"version: 1\nentries: [{payload}]\n")
        with pytest.raises(HarnessError):
            Registry(store.root, registry)
        from harness.prompts import load_template

        prompt = tmp_path / "prompt.yaml"
        prompt.write_text(f"template: {payload}\n")
        with pytest.raises(Exception):  # noqa: B017 - prompts.py raises yaml's own error here (reported)
            load_template(str(prompt))
        assert not marker.exists(), "YAML constructed a Python object"


UNSAFE = {
    r"yaml\.load\((?![^)]*SafeLoader)": "yaml.load without SafeLoader",
    r"yaml\.(unsafe_load|full_load|FullLoader|UnsafeLoader)": "an unsafe YAML loader",
    r"pickle\.loads?\(": "pickle.load",
    r"trust_remote_code\s*=\s*True": "trust_remote_code=True",
    r"torch\.load\((?![^)]*weights_only\s*=\s*True)": "torch.load without weights_only=True",
    r"(?<![.\w])(eval|exec)\(": "eval/exec",
}


def test_package_source_has_no_unsafe_loading(reliability):
    """A scan of harness/ for calls that would load untrusted data unsafely."""
    for pattern, what in UNSAFE.items():
        with reliability.trial("security", f"source scan: no {what}"):
            hits = [f"{path.relative_to(PACKAGE.parent)}:{n}" for path in sorted(PACKAGE.rglob("*.py"))
                    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                    if re.search(pattern, line) and not line.lstrip().startswith("#")]
            assert not hits, f"{what} at {hits}"
