"""A resumable stand-in stage that needs no model: deterministic shards written slowly, for testing the kill machinery.

It follows the contract of the real long stages: each shard is written to a temporary name then renamed
into `out.scratch/shards/`, finished shards are skipped on resume, and the output is assembled from the
shards only once all of them exist.
"""

from __future__ import annotations

import hashlib
import os
import time

from pydantic import Field

from harness.stages import Stage, StageParams


class Params(StageParams):
    n_shards: int = Field(8, ge=1)
    rows_per_shard: int = Field(50, ge=1)
    shard_seconds: float = Field(0.05, ge=0)
    atomic: bool = True  # False: shards written in place, the bug the kill tests must catch (negative control)


def run(inputs, params: Params, out, ctx) -> None:
    shards = out.scratch / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    for s in range(params.n_shards):
        final = shards / f"{s:05d}.txt"
        if final.exists():
            continue
        tmp = final.with_name(final.name + ".tmp") if params.atomic else final
        with open(tmp, "w") as fh:
            for r in range(params.rows_per_shard):
                row = s * params.rows_per_shard + r
                fh.write(f"{row}\t{hashlib.sha256(str(row).encode()).hexdigest()}\n")
                if r == params.rows_per_shard // 2:
                    fh.flush()
                    time.sleep(params.shard_seconds)  # a window in which a kill leaves a half-written shard
            fh.flush()
            os.fsync(fh.fileno())
        if params.atomic:
            os.replace(tmp, final)
    with open(out.path / "rows.tsv", "w") as fh:
        for s in range(params.n_shards):
            fh.write((shards / f"{s:05d}.txt").read_text())
    out.summary["rows"] = params.n_shards * params.rows_per_shard


STAGE = Stage(name="toy", version=1, kind="rows", params=Params, run=run, resumable=True)
