"""Compile time of DeepGen kernels on this (CPU) machine: compile_artifact per representative
spec (SIMT and tensor-core kernels), N runs each after one discarded warm-up compile; min,
median and max wall time, and the median time per stage (module build, each DeepGen pass,
upstream lowering, PTX, ptxas).

    python benchmarks/compile_time.py [--runs 7] [--out benchmarks/results/compile_time-<host>-<date>.json]

Stages are timed by wrapping the compiler's own functions (gemm_module, run_pipeline, the
DeepGen passes, to_ptx, assemble) for the duration of the measurement, so the numbers are those
of the real compile_artifact.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

from deepgen.spec import GemmSpec

RESULTS = Path(__file__).resolve().parent / "results"

# (label, spec, config overrides): the suite's kinds of kernels, default configs (f16/bf16 take
# tensor cores by default on sm_90a; "simt" = the f32 twin's SIMT tiles for the same shape).
SPECS = [
    ("f32 4096^3 NN", dict(M=4096, N=4096, K=4096, dtype="f32"), None),
    ("f32 8x(2048^3) batched", dict(M=2048, N=2048, K=2048, batch=8, dtype="f32"), None),
    ("f32 4097x33x1000 narrow", dict(M=4097, N=33, K=1000, dtype="f32"), None),
    ("f32 4096^3 reg-prefetch", dict(M=4096, N=4096, K=4096, dtype="f32"),
     {"register_prefetch": True}),
    ("bf16 2048^3 NN simt", dict(M=2048, N=2048, K=2048, dtype="bf16"), "simt"),
    ("f16 1x4096x14336 simt (split-K)", dict(M=1, N=4096, K=14336, dtype="f16"), "simt"),
    ("bf16 2048^3 NN", dict(M=2048, N=2048, K=2048, dtype="bf16"), None),
    ("f16 1000x1234x777 TN", dict(M=1000, N=1234, K=777, dtype="f16", layout="TN"), None),
    ("bf16 1x4096x14336 (split-K)", dict(M=1, N=4096, K=14336, dtype="bf16"), None),
]


@contextlib.contextmanager
def stage_timer():
    """Accumulate seconds per stage of compile_artifact while the context is open: module
    build, each DeepGen pass, upstream lowering (the pipelines' time less DeepGen's passes),
    PTX, and PTX -> cubin (labelled "ptxas" whichever assembler ran)."""
    import dataclasses as dc

    from deepgen.compiler import backend_nvidia, driver
    from deepgen.compiler.passes import REGISTRY

    times: dict[str, float] = {}
    pipeline = {"s": 0.0}

    def add(label, seconds):
        times[label] = times.get(label, 0.0) + seconds

    def timed(label, fn, sink=add):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sink(label, time.perf_counter() - t)
        return wrapper

    def to_pipeline(_label, seconds):
        pipeline["s"] += seconds

    patches = [(driver, "gemm_module", "build module", add),
               (driver, "run_pipeline", "pipeline", to_pipeline),
               (backend_nvidia, "run_pipeline", "pipeline", to_pipeline),
               (backend_nvidia, "to_ptx", "to PTX (gpu-module-to-binary)", add),
               (backend_nvidia, "assemble", "ptxas", add)]
    originals = [(mod, name, getattr(mod, name)) for mod, name, _, _ in patches]
    passes = dict(REGISTRY)
    for mod, name, label, sink in patches:
        setattr(mod, name, timed(label, getattr(mod, name), sink))
    for name, info in passes.items():
        REGISTRY[name] = dc.replace(info, run=timed(name, info.run))
    try:
        yield times
    finally:
        for mod, name, fn in originals:
            setattr(mod, name, fn)
        REGISTRY.update(passes)
        deepgen = sum(v for k, v in times.items() if k in passes)
        times["upstream lowering"] = max(0.0, pipeline["s"] - deepgen)


def time_spec(spec: GemmSpec, overrides: dict | None = None, runs: int = 5,
              target: str = "sm_90a") -> dict:
    """min/median/max seconds of compile_artifact(spec) over `runs`, and the median per stage."""
    from deepgen.compiler import compile_artifact, default_config

    if overrides == "simt":  # the SIMT tiles the f32 twin of this spec gets by default
        cfg = default_config(dataclasses.replace(spec, dtype="f32", out_dtype="f32"), target)
    else:
        cfg = default_config(spec, target)
        if overrides:
            cfg = cfg.replace(**overrides)
    walls, per_stage = [], []
    art = None
    for _ in range(runs):
        with stage_timer() as stages:
            t = time.perf_counter()
            art = compile_artifact(spec, cfg, target, keep_ir=False)
            walls.append(time.perf_counter() - t)
        per_stage.append(dict(stages))
    labels = list(per_stage[0])
    stage_median = {k: statistics.median(s.get(k, 0.0) for s in per_stage) for k in labels}
    return {"runs": runs, "min_s": min(walls), "median_s": statistics.median(walls),
            "max_s": max(walls), "walls_s": walls, "stages_median_s": stage_median,
            "config": cfg.to_dict(), "launches": len(art.launches),
            "engine": "tensor cores" if re.search(r"\b(?:mma\.sync|wgmma)", art.assembly) else "SIMT",
            "binary_bytes": len(art.binary)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    from deepgen.compiler import compile_artifact, toolchain_versions

    load_before = os.getloadavg()  # the CPU may be shared: say how busy it was
    # The first compile of a process pays for loading dialects and passes: report it apart.
    t = time.perf_counter()
    compile_artifact(GemmSpec(M=256, N=256, K=256), None, keep_ir=False)
    first = time.perf_counter() - t
    rows = []
    for label, fields, overrides in SPECS:
        r = time_spec(GemmSpec(**fields), overrides, a.runs)
        rows.append({"label": label, "spec": GemmSpec(**fields).to_dict(),
                     "overrides": overrides, **r})
        print(f"{label:32s} median {r['median_s'] * 1e3:6.0f} ms", flush=True)
    when = _dt.datetime.now()
    host = re.sub(r"[^A-Za-z0-9]+", "-", platform.node()).strip("-") or "host"
    out = a.out or RESULTS / f"compile_time-{host}-{when:%Y-%m-%d}.json"
    doc = {"format": "deepgen-compile-time/1", "date": when.isoformat(timespec="seconds"),
           "host": platform.node(), "cpu": _cpu_name(), "python": platform.python_version(),
           "toolchain": toolchain_versions(), "first_compile_in_process_s": first,
           "load_average_before": load_before, "load_average_after": os.getloadavg(),
           "method": f"compile_artifact(keep_ir=False), {a.runs} runs after a warm-up compile; "
                     "stages timed by wrapping gemm_module, run_pipeline, the DeepGen passes, to_ptx and assemble",
           "results": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    passes = list(dict.fromkeys(s for r in rows for s in r["stages_median_s"]
                                if s.startswith("deepgen-")))
    stages = ["build module", *passes, "upstream lowering", "to PTX (gpu-module-to-binary)",
              "ptxas"]
    print(f"\nwrote {out}\n")
    print(f"compile_artifact wall time, ms ({a.runs} runs; {doc['cpu']}; first compile in a "
          f"process {first * 1e3:.0f} ms)")
    short = {s: s.replace("deepgen-", "").replace("to PTX (gpu-module-to-binary)", "to-ptx")
             .replace("upstream lowering", "lowering").replace("build module", "build")[:8]
             for s in stages}
    print(f"{'spec':32s} {'engine':6s} {'min':>5s} {'median':>6s} {'max':>5s} | "
          + " ".join(f"{short[s]:>8s}" for s in stages))
    for r in rows:
        print(f"{r['label']:32s} {'tc' if r['engine'] != 'SIMT' else 'simt':6s} {r['min_s'] * 1e3:5.0f} {r['median_s'] * 1e3:6.0f} "
              f"{r['max_s'] * 1e3:5.0f} | "
              + " ".join(f"{r['stages_median_s'].get(s, 0) * 1e3:8.1f}" for s in stages))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
