"""GPU side of tuning: check and time every compiled candidate, with the runtime alone.

One worker process per GPU (see supervisor.py) runs, per candidate:
  1. correctness: random data (fp8 / int8: and scales), C poisoned with NaN, relative
     Frobenius error against a float64 torch reference of the dequantized inputs
     (deepgen.runtime.measure: 1e-5 f32, 1e-3 f16 out, 4e-3 bf16 out); a wrong result is
     recorded ("wrong": true) and never ranked;
  2. timing: CUDA events, warm-up, median of repeats, inputs rotated through sets larger than
     L2 (measure.time_ms); the torch.matmul baseline (cuBLAS; no TF32 for f32; fp8 / int8:
     the bf16 matmul of the same shape) is timed in the same process on the same inputs
     (their bf16 copies), once per shape.
A range candidate (M a range) is checked and timed at a few M of its range, ranked by the
geometric mean (tuner/ranges.py bench_range).
Any exception there restarts the worker (an illegal address leaves the CUDA context unusable).
Imports neither MLIR nor the compiler: this runs on GPU hosts that have neither.
"""
from __future__ import annotations

import os


def bench_init(slot: int) -> dict:
    """Worker start-up on GPU `slot`."""
    import torch

    torch.cuda.set_device(slot)
    torch.cuda.init()
    torch.manual_seed(20261124 + slot)
    # the GPU's own name: under Ray (or CUDA_VISIBLE_DEVICES) every worker's slot may be 0
    uuid = getattr(torch.cuda.get_device_properties(slot), "uuid", None)
    return {"gpu": slot, "gpu_uuid": str(uuid) if uuid else None,
            "device": torch.cuda.get_device_name(slot), "shape": None}


def bench_task(task: dict, state: dict) -> dict:
    """task: {"id", "dir" (kernel bundle), "spec"} -> the bench record (without id/stage)."""
    import torch

    from deepgen.runtime import load, measure
    from deepgen.spec import GemmSpec

    spec = GemmSpec.from_dict(task["spec"])
    if spec.dynamic_m:  # a range kernel: timed at a few M of its range (tuner/ranges.py)
        from .ranges import bench_range

        return bench_range(task, state)
    shape = (spec.M, spec.N, spec.K, spec.batch, spec.dtype, spec.out_dtype, spec.layout,
             spec.allow_tf32, spec.scale)
    if state["shape"] != shape:  # new shape: new inputs, new baseline (old ones freed first)
        state.update(shape=None, sets=None, scales=None, baseline_ms=None)
        torch.cuda.empty_cache()
        state["sets"] = measure.input_sets(spec)
        state["scales"] = measure.scale_operands(spec)  # fp8 / int8: fixed while timing
        state["baseline_ms"] = measure.time_ms(measure.torch_baseline(spec),
                                               measure.baseline_sets(spec, state["sets"]))
        state["shape"] = shape
    base_ms = state["baseline_ms"]
    record = {"gpu": state["gpu"], "gpu_uuid": state.get("gpu_uuid"), "device": state["device"],
              "baseline_ms": base_ms, "baseline_tflops": measure.tflops(spec, base_ms)}
    kernel = load(task["dir"])
    err = measure.check(kernel, spec)
    tol = measure.tolerance(spec)
    record["rel_err"] = err
    if not err <= tol:  # NaN/inf compare false too
        return {**record, "ok": False, "wrong": True,
                "error": f"wrong result: relative error {err:.3g} exceeds {tol:g}"}
    out = measure.operand(spec, "C")  # C preallocated: the timing has no allocation in it
    scales = state["scales"]
    ms = measure.time_ms(lambda a, b: kernel(a, b, out, **scales), state["sets"])
    return {**record, "ok": True, "ms": ms, "tflops": measure.tflops(spec, ms),
            "vs_baseline": base_ms / ms}


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def bench_local(tasks: list[dict], gpus: int, timeout: float, fn=bench_task, init=bench_init):
    """Yield (task, record) for every task, one supervised worker process per GPU."""
    from .supervisor import Supervisor

    with Supervisor(fn, range(gpus), init=init, timeout=timeout) as sup:
        yield from sup.run(tasks)


def bench_tasks(bundle: str | os.PathLike, candidates, done: set[str]) -> list[dict]:
    """Tasks for the compiled candidates not yet benchmarked, grouped by shape (so a worker
    keeps its inputs and baseline across candidates)."""
    tasks = [{"id": c.id, "shape": c.shape, "spec": c.spec.to_dict(),
              "dir": os.path.abspath(os.path.join(bundle, c.dir))}
             for c in candidates if c.compile.get("ok") and c.id not in done]
    order = {s: i for i, s in enumerate(dict.fromkeys(t["shape"] for t in tasks))}
    return sorted(tasks, key=lambda t: order[t["shape"]])
