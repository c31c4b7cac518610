"""Compile candidates in worker processes (concurrent.futures.ProcessPoolExecutor, spawn).

An MLIR assertion aborts the process that hit it, so every compile runs in a pool worker. When
a worker dies, the pool breaks and every compile in flight fails with BrokenProcessPool without
saying which one was the culprit: those few are run again one at a time, each in a pool of its
own, and the one whose pool breaks again is recorded as failed; the run goes on with a new pool.
A compile that hangs is ended by SIGALRM (default action: the process exits), which turns a
hang into a death the same logic handles. Compile errors raised as exceptions (SpecError,
CompileError, anything else) are records, not deaths.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import signal
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

MAX_ERROR_CHARS = 4000  # a compile error may quote IR; keep the journal readable


def compile_task(task: dict) -> dict:
    """Pool worker: compile one candidate and save its kernel bundle in task["out"]."""
    record, art = build(task)
    if art is not None:
        art.save(task["out"])
    return record


def build(task: dict):
    """(record, artifact or None) for task {"id", "spec", "config", "target", "keep_ptx"}."""
    from deepgen.compiler import compile_artifact  # MLIR: only ever in a worker
    from deepgen.spec import GemmSpec

    t0 = time.perf_counter()
    record = {"id": task["id"], "stage": "compile"}
    try:
        art = compile_artifact(GemmSpec.from_dict(task["spec"]), task["config"], task["target"],
                               keep_ir=False)
    except Exception as e:  # SpecError, CompileError, or a bug in a pass: record it, go on
        error = f"{type(e).__name__}: {e}"
        return {**record, "ok": False, "seconds": round(time.perf_counter() - t0, 3),
                "error": error[:MAX_ERROR_CHARS]}, None
    if not task.get("keep_ptx"):
        art.assembly = ""  # PTX is 2x the cubin; bundles must stay small enough to carry
    return {**record, "ok": True, "seconds": round(art.compile_seconds, 3),
            "resources": art.resources, "binary_size": len(art.binary)}, art


def _with_alarm(fn: Callable, task, timeout: float | None):
    if timeout:
        signal.alarm(max(1, math.ceil(timeout)))  # SIGALRM's default action ends the process
    try:
        return fn(task)
    finally:
        if timeout:
            signal.alarm(0)


def compile_pool(tasks: Iterable[dict], workers: int, fn: Callable = compile_task,
                 timeout: float | None = 300.0) -> Iterator[dict]:
    """Yield fn(task) for every task as they finish; a task whose worker died (or ran past
    `timeout`) yields {"id", "stage": "compile", "ok": False, "crashed": True, "error"}."""
    pending = deque(tasks)
    while pending:
        suspects = []
        with _pool(workers) as pool:
            inflight = {}
            while pending or inflight:
                # At most one task per worker in flight: a break then has few suspects.
                while pending and len(inflight) < workers:
                    task = pending.popleft()
                    inflight[pool.submit(_with_alarm, fn, task, timeout)] = task
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    task = inflight.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        suspects.append(task)
                        broken = True
                if broken:
                    suspects += list(inflight.values())
                    break
        for task in suspects:  # alone, so a second death names the culprit
            yield _isolated(fn, task, timeout)


def _isolated(fn: Callable, task: dict, timeout: float | None) -> dict:
    t0 = time.monotonic()
    with _pool(1) as pool:
        try:
            return pool.submit(_with_alarm, fn, task, timeout).result()
        except BrokenProcessPool:
            elapsed = time.monotonic() - t0
            why = (f"timed out after {timeout:g} s" if timeout and elapsed >= timeout
                   else "the compile worker process died (an MLIR assertion or a crash)")
            return {"id": task.get("id"), "stage": "compile", "ok": False, "crashed": True,
                    "error": why, "seconds": round(elapsed, 3)}


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn: MLIR contexts own thread pools, and forking a threaded process is unsafe.
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
