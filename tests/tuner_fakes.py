"""Fake worker functions for the tuner tests: they run in spawned processes, so they live in a
module the children can import (spawn passes the parent's sys.path, tests/ included).

A task's "action" says what the fake does: "ok", "die" (os._exit, as an MLIR assertion or a
lost CUDA context would), "hang" (sleep past any timeout), "raise", "wrong", "poison" (a
result asking for a fresh process)."""
from __future__ import annotations

import os
import time


def _act(task: dict) -> dict | None:
    action = task.get("action", "ok")
    if action == "die":
        os._exit(3)
    if action == "hang":
        time.sleep(3600)
    if action == "raise":
        raise RuntimeError(f"fake failure on {task['id']}")
    return None


def compile_fn(task: dict) -> dict:
    _act(task)
    return {"id": task["id"], "stage": "compile", "ok": True, "pid": os.getpid()}


def bench_init(slot) -> dict:  # "visible": the GPUs Ray gave this worker's actor, if any
    return {"slot": slot, "pid": os.getpid(), "count": 0,
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}


def bench_init_fails(slot) -> dict:
    raise RuntimeError("no GPU here")


def bench_fn(task: dict, state: dict) -> dict:
    _act(task)
    state["count"] += 1
    rec = {"ok": True, "pid": state["pid"], "count": state["count"], "gpu": state["slot"],
           "visible": state["visible"]}
    if task.get("action") == "wrong":
        return {**rec, "ok": False, "wrong": True, "error": "wrong result: fake"}
    if task.get("action") == "poison":
        return {**rec, "ok": False, "restart": True, "error": "CUDA error: fake"}
    ms = float(task.get("ms", 1.0))
    return {**rec, "ms": ms, "tflops": 1.0 / ms, "baseline_ms": 2.0, "vs_baseline": 2.0 / ms,
            "rel_err": 1e-7, "device": "Fake GPU"}


def bench_fn_by_config(task: dict, state: dict) -> dict:
    """A fake timing from the candidate's kernel bundle: smaller BK is 'faster'; a config with
    BN=64 'crashes' its worker. Used by the end-to-end run tests."""
    import json

    cfg = json.loads(open(os.path.join(task["dir"], "kernel.json")).read())["config"]
    if cfg["BN"] == 64:
        os._exit(9)
    ms = cfg["BK"] / 8.0 + cfg["BM"] / 1024.0
    return {"ok": True, "ms": ms, "tflops": 1.0 / ms, "baseline_ms": 1.0,
            "vs_baseline": 1.0 / ms, "rel_err": 0.0, "device": "Fake GPU", "gpu": state["slot"]}


def ray_compile_fn(task: dict):
    """(record, artifact) like deepgen.tuner.compiling.build, without the compiler."""
    _act(task)
    return {"id": task["id"], "stage": "compile", "ok": True, "pid": os.getpid()}, None


def bench_fn_range(task: dict, state: dict) -> dict:
    """A range candidate's fake record (tuner/ranges.py summarize): per M of sample_ms, a time
    from the bundle's config (more stages and wider BN 'faster') and torch's 1.0 ms."""
    import json

    from deepgen.dims import Dim
    from deepgen.tuner.ranges import sample_ms, summarize

    with open(os.path.join(task["dir"], "kernel.json")) as f:
        meta = json.load(f)
    cfg, dim = meta["config"], Dim(**task["spec"]["M"])
    points = [{"M": M, "ms": (1.0 + M / 1024) * 64 / cfg["BN"] / cfg["stages"],
               "baseline_ms": 1.0, "rel_err": 1e-3, "tflops": 1.0, "baseline_tflops": 2.0}
              for M in sample_ms(dim)]
    return summarize(points, gpu=state["slot"], device="Fake GPU")
