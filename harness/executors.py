"""Executors: run a stage's shards in this process (`local`) or as Ray actors on a cluster (`ray`).

A long stage describes its work as a `ShardedWork`; an executor runs the shards that are not done yet
and reports each as it finishes; the stage merges the shard files on the driver, in shard order. The
harness schedules nothing itself: Ray places the workers, restarts a lost one and retries its shard.
Because a shard's files are written atomically and a shard computed twice writes the same bytes, a
retried shard is never duplicated, and the artifact is byte-identical whichever executor built it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from harness.errors import HarnessError, close_matches

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
OnDone = Callable[[int, dict], Any]


class ShardedWork:
    """The shards of one stage build, picklable (plain data and paths) so that Ray can ship it to workers.

    - `setup()` runs once per worker process (load the model); what it keeps goes in attributes named
      with a leading underscore, which are never pickled.
    - `run_shard(i, progress)` computes shard `i` and writes its files atomically (a temporary name,
      then `os.replace`) into the shard folder; computing a shard twice writes the same bytes. It
      returns a small dict (counts, timings) for the stage's summary, with `items`: how many items
      (documents, queries, pairs) the shard held. `progress(n)`, when given, is told about items as
      they finish inside the shard (the local executor passes the map's `progress`; the Ray executor
      reports a shard's `items` when it returns).
    - `done(i)`: shard `i`'s files are already there (an earlier, killed run finished it).
    """

    def setup(self) -> None:
        pass

    def run_shard(self, i: int, progress: Callable[[int], Any] | None = None) -> dict:
        raise NotImplementedError

    def done(self, i: int) -> bool:
        return False

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class LocalExecutor:
    """Shards in order, in this process; `setup()` once, and only when a shard is left to do."""

    name = "local"

    def map(self, work: ShardedWork, shard_ids: Iterable[int], on_done: OnDone | None = None, *,
            resources: dict | None = None, progress: Callable[[int], Any] | None = None) -> dict[int, dict]:
        """Run the shards of `shard_ids` not done yet; `on_done(i, result)` after each; {i: result}.
        `resources` (a replica's Ray resources) mean nothing here."""
        todo = [i for i in shard_ids if not work.done(i)]
        results: dict[int, dict] = {}
        if todo:
            work.setup()
        for i in todo:
            results[i] = work.run_shard(i, progress)
            if on_done:
                on_done(i, results[i])
        return results

    def close(self) -> None:
        pass


class _Worker:
    """A Ray actor holding one set-up copy of the work (one model replica)."""

    def __init__(self, work: ShardedWork, threads: int | None):
        if threads:  # the driver's arithmetic: see `_torch_threads`
            import torch

            torch.set_num_threads(threads)
        self.work = work
        work.setup()

    def run(self, i: int) -> tuple[int, dict]:
        return i, self.work.run_shard(i)


class RayExecutor:
    """Shards as tasks on a pool of Ray actors, each holding one model replica with `resources` of its own.

    `address` joins a running cluster (`ray start --head` ...; "auto" finds the local one); None starts a
    private one-machine cluster (and stops it in `close()`). `num_workers` caps the replicas (default:
    as many as the cluster's resources hold). A worker lost mid-shard (a crashed process, a lost node)
    is restarted by Ray, which runs its shard again: up to `max_retries` times per worker.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_workers: int | None = None,
                 resources_per_worker: dict | None = None, max_retries: int = 3):
        if num_workers is not None and num_workers < 1:
            raise HarnessError(f"--ray-workers must be at least 1 (got {num_workers}).")
        self.address, self.num_workers, self.max_retries = address, num_workers, max_retries
        self.resources_per_worker = {"num_cpus": 1, "num_gpus": 0, **(resources_per_worker or {})}
        self._started = False

    def _ray(self):
        ray = import_ray()
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, logging_level=logging.WARNING)
            else:  # a private cluster on this machine, with all its CPUs (and GPUs)
                ray.init(include_dashboard=False, logging_level=logging.WARNING)
            self._started = True
        return ray

    def replicas(self, n_shards: int, resources: dict) -> int:
        """How many workers to start: what the cluster holds now, at most `num_workers`, at most one per shard."""
        total = self._ray().cluster_resources()
        fits = [int(total.get(name, 0) // amount)
                for name, amount in (("CPU", resources["num_cpus"]), ("GPU", resources["num_gpus"])) if amount]
        n = min(fits) if fits else n_shards
        if n < 1:
            raise HarnessError(
                f"The Ray cluster ({dict(total)}) cannot hold one worker with {resources}: add nodes, or "
                "lower the stage's `cpus_per_replica`/`gpus_per_replica`.")
        # More workers than the cluster holds would wait forever for resources, each with a shard.
        return min(n, n_shards, self.num_workers or n)

    def map(self, work: ShardedWork, shard_ids: Iterable[int], on_done: OnDone | None = None, *,
            resources: dict | None = None, progress: Callable[[int], Any] | None = None) -> dict[int, dict]:
        """Run the shards not done yet on Ray actors, in any order; `on_done(i, result)` as each finishes."""
        todo = [i for i in shard_ids if not work.done(i)]
        results: dict[int, dict] = {}
        if not todo:
            return results
        ray = self._ray()
        from ray.exceptions import RayActorError
        from ray.util import ActorPool

        resources = {**self.resources_per_worker, **{k: v for k, v in (resources or {}).items() if v is not None}}
        n = self.replicas(len(todo), resources)
        worker = ray.remote(_Worker).options(
            num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"],
            max_restarts=self.max_retries, max_task_retries=self.max_retries)
        # Put once (shipped once per node, not per worker); kept referenced here until the end, so that
        # a restarted worker finds it again (Ray warns about exactly that case at actor creation).
        shared = ray.put(work)
        actors = [worker.remote(shared, _torch_threads()) for _ in range(n)]
        log.info("ray: %d shard(s) on %d worker(s) with %s", len(todo), n, resources)
        try:
            for i, result in ActorPool(actors).map_unordered(lambda actor, i: actor.run.remote(i), todo):
                results[i] = result
                if progress:
                    progress(result.get("items", 0))
                if on_done:
                    on_done(i, result)
        except RayActorError as exc:
            raise HarnessError(
                f"A Ray worker died more than {self.max_retries} times ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); finished shards are kept: run the same "
                "command again to resume.") from None
        finally:
            for actor in actors:
                ray.kill(actor)
        return results

    def close(self) -> None:
        """Stop the private cluster this executor started (a joined cluster keeps running)."""
        if self._started:
            import_ray().shutdown()
            self._started = False


def _torch_threads() -> int | None:
    """The driver's torch intra-op thread count, for the workers to use too.

    On CPU, torch splits reductions (the log-softmax over a vocabulary, a sum) across its threads, so
    the last bits of a float depend on the thread count; Ray starts a worker with as many threads as
    CPUs it reserved. With the driver's count, a worker computes exactly what the local run computes.
    (`OMP_NUM_THREADS=1` for the driver too gives single-threaded workers and the same equality.)
    """
    import sys

    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            return None
    return sys.modules["torch"].get_num_threads()


def import_ray():
    """The `ray` module, or one sentence saying how to install it."""
    try:
        import ray
    except ImportError:
        raise HarnessError("`--executor ray` needs Ray: pip install 'harness[ray]'.") from None
    return ray


def get_executor(name: str = "local", **options) -> LocalExecutor | RayExecutor:
    """The executor named `name` (`local` or `ray`); `options` go to its constructor."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(**options)
    raise HarnessError(f"Unknown executor {name!r}.{close_matches(name, EXECUTORS)} Executors: {', '.join(EXECUTORS)}.")


def replica_resources(device: str, cpus: float | None, gpus: float | None) -> dict:
    """A model replica's Ray resources from a stage's `cpus_per_replica`/`gpus_per_replica` (None: defaults:
    1 CPU, and 1 GPU when the run is on CUDA)."""
    return {"num_cpus": 1 if cpus is None else cpus,
            "num_gpus": (1 if str(device).startswith("cuda") else 0) if gpus is None else gpus}
