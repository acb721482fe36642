"""One stage build in its own process, through `Store.get_or_build` as the runner does: the kill tests' victim.

    python -m tests.reliability._child SPEC.json

SPEC holds the store root, the stage name, its parameters, the input artifact keys and the dataset.
Prints `{"key": ..., "built": ...}` on success.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(spec_path: str) -> int:
    from harness.stages import Context, parse_params
    from harness.store import Store, artifact_key

    spec = json.loads(Path(spec_path).read_text())
    store = Store(Path(spec["store"]))
    stage = load_stage(spec["stage"])
    params = stage.params.model_validate(spec["params"]) if ":" in spec["stage"] else parse_params(
        spec["stage"], spec["params"], f"kill test spec {spec_path}")
    inputs = {role: store.get(key) for role, key in spec["inputs"].items()}
    key = artifact_key(stage.name, stage.version, params.key_params(), dict(sorted(spec["inputs"].items())))
    ctx = Context(store, spec.get("dataset", "sample"), progress=False)
    _, built = store.get_or_build(
        key, lambda out: stage.run(inputs, params, out, ctx), kind=stage.kind, stage=stage.name,
        params=params.key_params(), inputs=dict(spec["inputs"]), resumable=stage.resumable,
    )
    print(json.dumps({"key": key, "built": built}), flush=True)
    return 0


def load_stage(name: str):
    """A harness stage by name, or `module:STAGE` for a test stand-in such as `tests.reliability.toy_stage`."""
    from importlib import import_module

    from harness.stages import get_stage

    if ":" in name:
        module, attr = name.split(":")
        return getattr(import_module(module), attr)
    return get_stage(name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
