"""Run tasks in worker processes that may die or hang, one task at a time per worker.

A benchmark candidate can take its process down with it: an illegal address leaves the CUDA
context unusable, a kernel that never ends blocks the process. So each GPU gets a worker
process (multiprocessing "spawn": no CUDA state is inherited), the parent sends it one task at
a time over a pipe and waits on the pipe, the process sentinel and a deadline together:

  - a result comes back: it is yielded; a result with "restart": true (the worker saw an
    error that may have poisoned its context) makes the parent start a fresh process;
  - the process ends without a result: the task is recorded as failed ("worker died") and a
    fresh process takes the slot;
  - the deadline passes: the process is killed, the task recorded as failed ("timed out").

The run goes on either way; a failure record names its "slot" (which GPU's worker). Worker
functions are plain module-level functions, so tests drive this on the CPU with fakes that
call os._exit or sleep. Imports neither torch nor MLIR.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Callable, Iterable, Iterator


class SupervisorError(RuntimeError):
    """No worker could be started (its init failed every time): nothing can run."""


def _worker_main(conn, slot, init: Callable | None, fn: Callable) -> None:
    try:
        state = init(slot) if init else None
    except BaseException as e:
        conn.send(("init_failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            record = fn(task, state)
        except BaseException as e:  # report; a fresh process takes over (state may be bad)
            record = {"ok": False, "error": f"{type(e).__name__}: {e}", "restart": True,
                      "slot": slot, "traceback": traceback.format_exc(limit=8)}
        conn.send(("done", record))
        if record.get("restart"):
            return


@dataclass
class _Worker:
    slot: object
    proc: mp.Process
    conn: object
    started: float
    ready: bool = False
    task: object = None
    deadline: float | None = None


class Supervisor:
    """`run(tasks)` yields (task, record) as tasks finish, in completion order.

    fn(task, state) -> dict runs in the worker; init(slot) -> state runs once per process
    (slot: e.g. the GPU index). A failed task's record is {"ok": False, "error": ...,
    "crashed" or "timeout": True}. After `max_init_failures` init failures in a row on a slot,
    the slot is given up; when every slot is, SupervisorError is raised."""

    def __init__(self, fn: Callable, slots: Iterable, *, init: Callable | None = None,
                 timeout: float | None = 60.0, init_timeout: float = 300.0,
                 max_init_failures: int = 3, context: str = "spawn"):
        self.fn, self.init = fn, init
        self.slots = list(slots)
        self.timeout, self.init_timeout = timeout, init_timeout
        self.max_init_failures = max_init_failures
        self.ctx = mp.get_context(context)
        self.workers: dict[object, _Worker] = {}
        self.init_failures: dict[object, int] = {s: 0 for s in self.slots}
        self.restarts = 0
        self.last_init_error = ""

    # -- processes ----------------------------------------------------------------------------

    def _start(self, slot) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(child, slot, self.init, self.fn),
                                daemon=True, name=f"deepgen-worker-{slot}")
        proc.start()
        child.close()
        self.workers[slot] = _Worker(slot, proc, parent, time.monotonic())

    def _stop(self, w: _Worker, kill: bool = False) -> None:
        if kill and w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=10)
        if w.proc.is_alive():  # ignored SIGTERM-like state: be sure
            w.proc.kill()
            w.proc.join()
        w.conn.close()
        self.workers.pop(w.slot, None)

    def _replace(self, w: _Worker, kill: bool = False) -> None:
        self._stop(w, kill)
        if self.init_failures[w.slot] < self.max_init_failures:
            self.restarts += 1
            self._start(w.slot)

    def close(self) -> None:
        for w in list(self.workers.values()):
            try:
                w.conn.send(None)
            except OSError:
                pass
            self._stop(w, kill=w.task is not None)

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the loop -----------------------------------------------------------------------------

    def run(self, tasks: Iterable) -> Iterator[tuple[object, dict]]:
        pending = deque(tasks)
        for slot in self.slots:
            if slot not in self.workers and self.init_failures[slot] < self.max_init_failures:
                self._start(slot)
        while pending or any(w.task is not None for w in self.workers.values()):
            if not self.workers:
                raise SupervisorError(f"no worker could start ({self.last_init_error}); "
                                      f"{len(pending)} tasks not run")
            for w in self.workers.values():
                if w.ready and w.task is None and pending:
                    w.task = pending.popleft()
                    w.conn.send(w.task)
                    w.deadline = time.monotonic() + self.timeout if self.timeout else None
            yield from self._wait_once()

    def _wait_once(self) -> Iterator[tuple[object, dict]]:
        now = time.monotonic()
        deadlines = [w.deadline if w.ready else w.started + self.init_timeout
                     for w in self.workers.values() if not w.ready or w.task is not None]
        deadlines = [d for d in deadlines if d is not None]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        by_handle = {}
        for w in self.workers.values():
            by_handle[w.conn] = w
            by_handle[w.proc.sentinel] = w
        ready = wait(list(by_handle), timeout)
        handled = set()
        for handle in ready:
            w = by_handle[handle]
            if w.slot in handled or self.workers.get(w.slot) is not w:
                continue
            handled.add(w.slot)
            yield from self._service(w)
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.slot in handled:
                continue
            if not w.ready and now > w.started + self.init_timeout:
                self._init_failed(w, f"worker start timed out after {self.init_timeout:.0f} s")
            elif w.task is not None and w.deadline is not None and now > w.deadline:
                task, w.task = w.task, None
                self._replace(w, kill=True)
                yield task, {"ok": False, "timeout": True, "slot": w.slot,
                             "error": f"timed out after {self.timeout:g} s (worker killed)"}

    def _service(self, w: _Worker) -> Iterator[tuple[object, dict]]:
        """Read what the worker sent; notice when it is gone."""
        while w.conn.poll():
            try:
                kind, payload = w.conn.recv()
            except (EOFError, OSError):
                break
            if kind == "ready":
                w.ready = True
                self.init_failures[w.slot] = 0
            elif kind == "init_failed":
                self._init_failed(w, payload)
                return
            elif kind == "done":
                task, w.task = w.task, None
                yield task, payload
                if payload.get("restart"):
                    self._replace(w)
                    return
        if not w.proc.is_alive() or w.proc.exitcode is not None:
            w.proc.join(timeout=1)
            code = w.proc.exitcode
            if w.task is not None:
                task, w.task = w.task, None
                self._replace(w)
                yield task, {"ok": False, "crashed": True, "slot": w.slot,
                             "error": f"worker process died (exit code {code}) on this task"}
            elif not w.ready:
                self._init_failed(w, f"worker process died while starting (exit code {code})")
            else:
                self._replace(w)

    def _init_failed(self, w: _Worker, error: str) -> None:
        self.init_failures[w.slot] += 1
        self.last_init_error = f"slot {w.slot}: {error}"
        self._replace(w, kill=True)
