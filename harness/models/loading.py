"""Resolving model references (tiny stand-ins, local folders, Hub repos at pinned revisions) and loading them safely.

Every model the harness loads goes through here: no remote code (`trust_remote_code=False`),
safetensors first, pickled `.bin` weights only through torch's weights-only unpickler (which refuses
anything that would execute code), and Hub downloads only at a pinned 40-hex commit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

_SHA = re.compile(r"^[0-9a-f]{40}$")
# Files a checkpoint needs; never `*.py` (remote code) nor other frameworks' weights.
WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*", "spiece.model", "*.tiktoken"]


def resolve(ref: str, store_root: Path, revision: str | None = None) -> Path:
    """A local folder for a model reference.

    `tiny:<kind>[-size][@seed]` (built offline), `registry:<id>[@<commit>]` (a registry entry fetched at
    its locked commit, every file checked), a folder path, or a Hub repo id with a pinned `revision`.
    """
    from harness.models.tiny import is_tiny_id, materialize
    from harness.refs import REGISTRY_PREFIX

    if ref.startswith(REGISTRY_PREFIX):
        from harness.refs import registry_files
        from harness.store import Store

        return registry_files(ref, Store(store_root))
    if is_tiny_id(ref):
        return materialize(ref, store_root / "models")
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise HarnessError(f"Model folder {path} has no config.json: is it a transformers checkpoint?")
        return path
    if ref.startswith((".", "/", "~")):
        raise HarnessError(f"Model folder {ref} does not exist.")
    return download(ref, revision)


def download(repo_id: str, revision: str | None) -> Path:
    """A Hub model snapshot at a pinned commit (weights and tokenizer only), via the Hub cache."""
    from huggingface_hub import snapshot_download

    from harness.hub import call  # the one place that turns Hub failures into sentences, with retries

    if not revision or not _SHA.match(revision):
        raise HarnessError(
            f"Model {repo_id!r} needs a pinned revision (a 40-hex commit), got {revision!r}: "
            f"set `model_revision` in the recipe (or run `harness lock`), never a branch name."
        )
    what = f"model {repo_id}@{revision[:12]}"
    path = Path(call(what, snapshot_download, repo_id, revision=revision, allow_patterns=WEIGHT_PATTERNS))
    if not any(path.glob("*.safetensors")):  # only pickled weights published: fetch them for safe loading
        path = Path(call(what, snapshot_download, repo_id, revision=revision,
                         allow_patterns=[*WEIGHT_PATTERNS, "*.bin"]))
    return path


def _safe_kwargs(path: Path) -> dict[str, Any]:
    has_safetensors = any(path.glob("*.safetensors"))
    return {"trust_remote_code": False, "use_safetensors": True if has_safetensors else None}


def _load(cls_name: str, path: Path, **kw):
    import transformers

    transformers.utils.logging.disable_progress_bar()  # its per-tensor "Loading weights" bar is noise here

    cls = getattr(transformers, cls_name)
    try:
        return cls.from_pretrained(path, **_safe_kwargs(path), **kw)
    except OSError as exc:
        raise HarnessError(f"Cannot load {cls_name} from {path}: {exc}") from None
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise _remote_code(path) from None
        raise
    except Exception as exc:  # noqa: BLE001 - the unpickler's refusals come in several types
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise HarnessError(
                f"Refused to load {path}: its pickled weights would run code (torch weights-only loading "
                "rejected them). Use a safetensors checkpoint."
            ) from None
        raise


def _remote_code(path: Path) -> HarnessError:
    return HarnessError(f"Refused to load {path}: it needs its own Python code (auto_map), and the harness never "
                        "runs code from a model repository; use a checkpoint of a built-in transformers architecture.")


def load_tokenizer(path: Path, padding_side: str = "right"):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False, padding_side=padding_side)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"Cannot load the tokenizer of {path}: {exc}") from None


def load_model(kind: str, path: Path, device: str = "cpu", dtype: str = "float32", **from_pretrained):
    """A model of `kind` (`causal`, `seq2seq`, `classifier`) in eval mode on `device` with `dtype`.

    Extra keyword arguments go to `from_pretrained` (e.g. `device_map="auto"` to spread a large model
    over the GPUs, `quantization_config` for 8-bit); with a `device_map` the model is not moved.
    """
    import torch

    cls = {"causal": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM",
           "classifier": "AutoModelForSequenceClassification"}[kind]
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = _load(cls, path, dtype=torch_dtype, **from_pretrained)
    if "device_map" not in from_pretrained:
        model = model.to(device)
    return model.eval()


def config_kind(path: Path) -> str:
    """`seq2seq`, `causal` or `classifier`, from the checkpoint's config (without loading weights)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise _remote_code(path) from None
        raise
    if config.is_encoder_decoder:
        return "seq2seq"
    archs = " ".join(config.architectures or [])
    return "classifier" if "SequenceClassification" in archs else "causal"
