"""Ray backend (optional extra `ray`): compile tasks on CPU workers, benchmarks on GPU actors.

Compile: one Ray task per candidate (num_cpus=1, no retries: a crash is deterministic). It
returns the artifact, and the driver saves it, so workers on other machines need no shared
disk. A worker killed by an MLIR assertion surfaces as a RayError: that candidate failed.

Bench: one actor per GPU (num_gpus=1). Each actor runs a Supervisor with one worker process
(the same one `deepgen bench` uses), so a candidate that kills its CUDA context costs a process
restart, not the actor. Kernel bundles travel as bytes with the task.

Results stream back in completion order into the same journal and results files as the local
backends. `address` is "local" (a private instance: ray.init(num_cpus=workers)) or a cluster
address ("auto", "ray://host:10001").
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

INFLIGHT_PER_WORKER = 2


def _ray(address: str, num_cpus: int):
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'deepgen-mlir[ray]' "
                           "(or pip install ray)") from None
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    return ray


def _compile_remote(task: dict):
    from .compiling import build

    return build(task)


def compile_ray(tasks: list[dict], address: str, workers: int = 2,
                timeout: float | None = 300.0, fn=None) -> Iterator[dict]:
    """Yield a compile record per task; artifacts are saved into task["out"] here.
    (fn: task -> (record, artifact) replaces the compiler; tests use fakes.)"""
    ray = _ray(address, workers)
    remote = ray.remote(num_cpus=1, max_retries=0)(fn or _compile_remote)
    limit = max(1, int(ray.cluster_resources().get("CPU", workers))) * INFLIGHT_PER_WORKER
    yield from _stream(ray, tasks, lambda t: remote.remote(t), limit, timeout,
                       _save_compiled, _compile_failed)


def _save_compiled(task: dict, value) -> dict:
    record, art = value
    if art is not None:
        art.save(task["out"])
    return record


def _compile_failed(task: dict, error: str, **flags) -> dict:
    return {"id": task["id"], "stage": "compile", "ok": False, "error": error, **flags}


def _stream(ray, tasks, submit, limit: int, timeout, on_value, on_error) -> Iterator:
    """Submit with at most `limit` in flight; yield on_value/on_error results as they end."""
    pending, inflight = list(reversed(tasks)), {}
    while pending or inflight:
        while pending and len(inflight) < limit:
            task = pending.pop()
            inflight[submit(task)] = (task, time.monotonic())
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
            task, _ = inflight.pop(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as e:  # worker died, task error, actor lost
                yield on_error(task, f"{type(e).__name__}: {str(e).splitlines()[0][:500]}",
                               crashed=True)
                continue
            yield on_value(task, value)
        if timeout:
            now = time.monotonic()
            for ref, (task, started) in list(inflight.items()):
                if now - started > timeout:
                    ray.cancel(ref, force=True)
                    del inflight[ref]
                    yield on_error(task, f"timed out after {timeout:g} s", timeout=True)


# -- benchmarking on GPU actors -----------------------------------------------------------------

class BenchActor:
    """Holds one supervised bench worker on the GPU Ray gave this actor (device 0 inside)."""

    def __init__(self, fn=None, init=None, timeout: float = 120.0):
        from .benching import bench_init, bench_task
        from .supervisor import Supervisor

        self.dir = tempfile.mkdtemp(prefix="deepgen-bench-")
        self.sup = Supervisor(fn or bench_task, [0], init=init or bench_init, timeout=timeout)

    def bench(self, task: dict, files: dict[str, bytes]) -> dict:
        d = Path(self.dir) / task["id"]
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / name).write_bytes(data)
        ((_, record),) = list(self.sup.run([{**task, "dir": str(d)}]))
        return record


def _bundle_files(directory: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}


def bench_ray(tasks: list[dict], address: str, timeout: float = 120.0, *, fn=None, init=None,
              num_gpus: float = 1, actors: int | None = None) -> Iterator[tuple[dict, dict]]:
    """Yield (task, record) per task, one actor per GPU of the cluster (fn/init/num_gpus/actors
    are for tests: a fake worker on CPU actors)."""
    ray = _ray(address, os.cpu_count() or 2)
    if actors is None:
        actors = int(ray.cluster_resources().get("GPU", 0))
        if actors < 1:
            raise RuntimeError("the Ray cluster has no GPU: nothing can be benchmarked")
    cls = ray.remote(num_gpus=num_gpus, num_cpus=0)(BenchActor)
    pool = [cls.remote(fn, init, timeout) for _ in range(actors)]
    turn = iter(range(10**12))

    def submit(task):
        actor = pool[next(turn) % len(pool)]
        return actor.bench.remote(task, _bundle_files(task["dir"]))

    # The actor enforces the per-candidate timeout; this one only catches a lost actor.
    yield from _stream(ray, tasks, submit, len(pool) * INFLIGHT_PER_WORKER,
                       timeout * (INFLIGHT_PER_WORKER + 1) + 300,
                       lambda task, rec: (task, rec),
                       lambda task, error, **flags: (task, {"ok": False, "error": error, **flags}))
    for actor in pool:
        ray.kill(actor)
