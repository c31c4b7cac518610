"""Tuning range kernels (issue 17): a problem whose M is a range (deepgen.dims.Dim).

A tuning config's shape may give M as a range object, {"M": {"min": 257, "max": 2048},
"N": 4096, "K": 4096} (optionally "multiple_of"): the problem is the range spec that
deepgen.gemm(dynamic_m=True) runs for every M of it (deepgen/range_table.py looks the tuned
database up by exactly that spec: the ranges of deepgen.dims.M_RANGES, the last one up to
DEEPGEN_MAX_M, default 16384).

Candidates are the configs the range path builds (compiler/ranges.py): wgmma configs
planned at M = max, without swap_ab and split-K. The space must name `"strategy":
["wgmma"]`; swap_ab and split_k take False and 1 unless listed (listed otherwise, every
point is pruned with compiler/ranges.py's reason); each point is walked and validated as
StrategySpace does for the planning spec (M = max), then checked by ranges.resolve. The
always-measured default is the range default (ranges.resolve with no config).

Benchmarking (`bench_range`, on the GPU host with the runtime alone) times the one binary
at a few M of the range (`sample_ms`: min, the geometric middle, max), each against
float64 first and then timed with torch's GEMM at the same M in the same worker; the
candidate's "ms" and "baseline_ms" are the geometric means over those M, and its
"points" [{M, ms, baseline_ms, rel_err, tflops}] are kept: `deepgen tune install` writes
them into the database entry, where deepgen.routing reads them (every point must beat
torch for the range to route).
"""
from __future__ import annotations

import math

from deepgen.dims import Dim
from deepgen.spec import GemmSpec, SpecError


def sample_ms(dim: Dim) -> list[int]:
    """The M at which a range candidate is timed: min, the geometric middle, max (each a
    multiple of the range's multiple_of and inside the range; without repeats)."""
    step = dim.multiple_of
    lo = -(-dim.min // step) * step
    hi = dim.max // step * step
    mid = round(math.sqrt(lo * hi) / step) * step
    return sorted({m for m in (lo, mid, hi) if dim.contains(m)})


def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def default_config(spec: GemmSpec, target: str) -> dict:
    """The range default (what deepgen.gemm compiles for the range without a tuned entry)."""
    from deepgen.compiler import ranges
    from deepgen.compiler.target import get_target

    return ranges.resolve(None, spec, get_target(target)).to_dict()


class RangeSpace:
    """The pruned candidates of a range spec: a wgmma StrategySpace over the planning spec
    (M = max) with swap_ab False and split_k 1 where not listed, each point then checked by
    compiler/ranges.py (pruned with its reason). `report` is keyed by the range spec."""

    def __init__(self, spec: GemmSpec, space: dict[str, list], target: str = "sm_90a",
                 base: str = "heuristic"):
        from .manifest import shape_key
        from .space import StrategySpace, own_strategy  # the compiler's validators

        if not spec.dynamic_m:
            raise SpecError(f"M: {spec.M} is not a range")
        if own_strategy(space) != "wgmma":
            raise SpecError(f"M: a range M ({spec.M}) is tuned over wgmma configs (the "
                            f"range path's, compiler/ranges.py): the space must name "
                            f"\"strategy\": [\"wgmma\"]")
        listed = {k: list(v) for k, v in space.items()}
        listed.setdefault("swap_ab", [False])
        listed.setdefault("split_k", [1])
        self.spec = spec
        self.inner = StrategySpace(spec.planning(), listed, target, base)
        self.target = self.inner.target
        self.report = self.inner.report
        self.report.shape = shape_key(spec)

    def __iter__(self):
        from deepgen.compiler import ranges

        for cfg in self.inner:
            try:
                ranges.resolve(cfg.to_dict(), self.spec, self.target)
            except SpecError as e:
                self.report.kept -= 1
                self.report.prune(str(e))
                continue
            yield cfg


def bench_range(task: dict, state: dict) -> dict:
    """The GPU worker's record for a range candidate (see the module docstring): checked
    and timed at each M of sample_ms, geometric means; a wrong result at any M is wrong."""
    import torch

    from deepgen.runtime import load, measure

    spec = GemmSpec.from_dict(task["spec"])
    key = ("range", str(spec.M), spec.N, spec.K, spec.dtype,
           spec.out_dtype, spec.layout, spec.allow_tf32)
    if state.get("shape") != key:  # new problem: new inputs and baselines per M
        state.update(shape=None, sets=None, baseline_ms=None)
        torch.cuda.empty_cache()
        sets, base = {}, {}
        for M in sample_ms(spec.M):
            at = spec.at(M)
            sets[M] = measure.input_sets(at)
            base[M] = measure.time_ms(measure.torch_baseline(at), sets[M])
        state.update(shape=key, sets=sets, baseline_ms=base)
    kernel = load(task["dir"])
    points = []
    for M, sets in state["sets"].items():
        at = spec.at(M)
        bound = kernel.for_m(M)
        err = measure.check(bound, at)
        tol = measure.tolerance(at)
        if not err <= tol:  # NaN/inf compare false too
            return {"gpu": state["gpu"], "device": state["device"], "ok": False, "wrong": True,
                    "rel_err": err, "points": points,
                    "error": f"wrong result at M={M}: relative error {err:.3g} exceeds {tol:g}"}
        out = measure.operand(at, "C")
        ms = measure.time_ms(lambda a, b, k=bound, o=out: k(a, b, o), sets)
        base_ms = state["baseline_ms"][M]
        points.append({"M": M, "ms": ms, "baseline_ms": base_ms, "rel_err": err,
                       "tflops": measure.tflops(at, ms),
                       "baseline_tflops": measure.tflops(at, base_ms)})
    return summarize(points, gpu=state["gpu"], device=state["device"])


def summarize(points: list[dict], **extra) -> dict:
    """A bench record from the per-M points: ms, baseline_ms and TFLOP/s as geometric means
    (the rank is by ms), rel_err the largest."""
    ms = geomean(p["ms"] for p in points)
    base = geomean(p["baseline_ms"] for p in points)
    return {**extra, "ok": True, "ms": ms, "baseline_ms": base,
            "tflops": geomean(p["tflops"] for p in points),
            "baseline_tflops": geomean(p["baseline_tflops"] for p in points),
            "vs_baseline": base / ms, "rel_err": max(p["rel_err"] for p in points),
            "points": points}


__all__ = ["RangeSpace", "bench_range", "default_config", "geomean",
           "sample_ms", "summarize"]
