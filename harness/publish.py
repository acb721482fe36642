"""Publishing an artifact of ours to a Hub repository, recorded (with its commit and sums) in the user registry."""

from __future__ import annotations

from harness import hub
from harness.errors import HarnessError
from harness.registry import Entry, Lock, LockedFile, Registry, now
from harness.store import Store


def registry_kind(stage: str, kind: str) -> str | None:
    """The registry kind an artifact of `stage` publishes as (the stage's `publish_kind`), where it is in that
    stage's own format (`kind`: built by the stage, or fetched from an entry kind that converts to it); else None."""
    from harness.stages import STAGE_NAMES, get_stage

    if stage not in STAGE_NAMES or get_stage(stage).kind != kind:
        return None
    return get_stage(stage).publish_kind


def publishable_kinds() -> list[str]:
    """The artifact kinds some stage publishes, in pipeline order."""
    from harness.stages import STAGE_NAMES, get_stage

    stages = [get_stage(name) for name in STAGE_NAMES]
    return list(dict.fromkeys(s.kind for s in stages if s.publish_kind))


def publish(store: Store, key: str, repo: str, *, repo_type: str = "dataset", entry_id: str | None = None,
            private: bool = False, echo=print) -> Entry:
    """Upload an artifact to a Hub repo and record it (with its commit and sums) in the user registry."""
    from huggingface_hub import HfApi

    artifact = store.get(key)
    if artifact is None:
        raise HarnessError(f"No artifact {key} in the store {store.root} (see `harness list artifacts`).")
    kind = registry_kind(artifact.manifest["stage"], artifact.manifest["kind"])
    if kind is None:
        raise HarnessError(f"Artifact {key} is a {artifact.manifest['kind']!r}; publishable kinds: "
                           f"{', '.join(publishable_kinds())}.")
    files = {p: m for p, m in artifact.manifest["files"].items()}
    # A model is uploaded as a plain checkpoint at the repo root, so from_pretrained(repo) works.
    upload = {(p.removeprefix("model/") if kind == "model" else p): p for p in files}
    api = HfApi()
    hub.call(f"creating {repo}", api.create_repo, repo, repo_type=repo_type, private=private, exist_ok=True)
    from huggingface_hub import CommitOperationAdd

    ops = [CommitOperationAdd(path_in_repo=dst, path_or_fileobj=str(artifact.path / src))
           for dst, src in upload.items()]
    ops.append(CommitOperationAdd(path_in_repo="harness-manifest.json",
                                  path_or_fileobj=str(artifact.path / "manifest.json")))
    info = hub.call(f"uploading {key} to {repo}", api.create_commit, repo, ops, repo_type=repo_type,
                    commit_message=f"harness publish {key}")
    revision = info.oid
    entry = Entry.model_validate({
        "id": entry_id or f"user/{repo.lower().replace('/', '--')}/{kind}", "kind": kind, "repo": repo,
        "repo_type": repo_type, "files": sorted(upload), "provenance": f"published by harness from artifact {key}"})
    registry = Registry(store.root)
    registry.add_entry(entry)
    registry.write_lock(entry.id, Lock(revision=revision, files={
        dst: LockedFile(sha256=files[src]["sha256"], size=files[src]["size"]) for dst, src in upload.items()
    }, locked_at=now()), user=True)
    echo(f"published {key} to {repo}@{revision} as registry entry {entry.id}")
    return entry
