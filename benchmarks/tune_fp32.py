"""fp32 SIMT autotuning on the H100: compile on the CPU machine, benchmark on the GPU host.

  full    tuning_configs/fp32_4096_full.json: a full tune of fp32 4096^3 (292 candidates
          after pruning, plus the default config)
  best30  tuning_configs/fp32_best30.json: the best of at most 30 configs per shape for fp32
          4096^3 and 8192^3 (a seeded sample of the same space, plus the default config)

CPU machine (MLIR), from the repository root; bundles go to .carry/tune_fp32/ (ignored by git,
about 7 MiB + 1.5 MiB, carried to the GPU host):

    python benchmarks/tune_fp32.py compile [--workers 2]

GPU host (runtime only, no MLIR), from the repository root:

    pip install --no-build-isolation --no-deps -e .
    python benchmarks/tune_fp32.py bench --out $OUT/tune_fp32

`bench` runs `deepgen bench` on each bundle (results, journal and plot per bundle under
--out) and writes summary.json there: the GPU wall time of each run and, per shape, the best
DeepGen TFLOP/s, cuBLAS (no TF32) and the default config, all timed in the same workers.
Rerun with --resume and the same --out (carried back) to continue an interrupted run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"full": "fp32_4096_full.json", "best30": "fp32_best30.json"}
BUNDLES = ROOT / ".carry" / "tune_fp32"
CARRY_LIMIT = 64 * 2**20  # what one device call can carry


def compile_all(workers: int, runs: list[str]) -> int:
    from deepgen.tuner import run
    from deepgen.tuner.journal import latest, read_journal
    from deepgen.tuner.manifest import bundle_size, load_index

    timing_file = BUNDLES / "compile.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    for name in runs:
        out = BUNDLES / name
        t0 = time.monotonic()
        before = len(latest(read_journal(out), "compile"))
        opts = run.Options(out=out, workers=workers, compile_only=True, resume=out.exists())
        rc = run.tune(ROOT / "tuning_configs" / RUNS[name], opts)
        if rc:
            return rc
        _, cands = load_index(out)
        if before and name in timing:  # resumed: the first run's wall time stays
            continue
        timing[name] = {"wall_s": round(time.monotonic() - t0, 1), "workers": workers,
                        "candidates": len(cands),
                        "compiled": sum(1 for c in cands if c.compile.get("ok")),
                        "bundle_mib": round(bundle_size(out) / 2**20, 2)}
        print(f"{name}: {timing[name]}")
    timing_file.write_text(json.dumps(timing, indent=1) + "\n")
    total = sum(bundle_size(BUNDLES / n) for n in RUNS if (BUNDLES / n).exists())
    print(f"{BUNDLES}: {total / 2**20:.1f} MiB to carry (limit {CARRY_LIMIT // 2**20} MiB)")
    return 0 if total < CARRY_LIMIT else 1


def bench_all(out: Path, runs: list[str], resume: bool, timeout: float) -> int:
    from deepgen.tuner import run
    from deepgen.tuner import results as results_mod

    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {"runs": {}}
    compile_file = BUNDLES / "compile.json"
    if compile_file.exists():
        summary["compile"] = json.loads(compile_file.read_text())
    for name in runs:
        dest = out / name
        t0 = time.monotonic()
        opts = run.Options(out=dest, resume=resume, top=5, bench_timeout=timeout)
        run.bench(BUNDLES / name, dest, opts)
        wall = time.monotonic() - t0
        res = results_mod.load(dest)
        results_mod.plot(res, dest / results_mod.PLOT)
        summary["runs"][name] = {"gpu_wall_s": round(wall, 1), "device": res["device"],
                                 "shapes": [_shape_summary(sh) for sh in res["shapes"]]}
        summary_file.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


def _shape_summary(sh: dict) -> dict:
    best, base, default = (sh["top"] or [None])[0], sh["baseline"], sh["default"]
    return {"shape": sh["key"], "counts": sh["counts"],
            "best_tflops": best and round(best["tflops"], 2),
            "cublas_tflops": base and round(base["tflops"], 2),
            "default_tflops": default and round(default["tflops"], 2),
            "best_vs_cublas": best and base and round(best["tflops"] / base["tflops"], 3),
            "best_config": best and best["config"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    c = sub.add_parser("compile", help="CPU machine: compile the bundles")
    c.add_argument("--workers", type=int, default=2)
    b = sub.add_parser("bench", help="GPU host: benchmark the bundles")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--resume", action="store_true")
    b.add_argument("--timeout", type=float, default=120.0)
    for q in (c, b):
        q.add_argument("--only", choices=sorted(RUNS), action="append",
                       help="one of the runs (default: both)")
    a = p.parse_args()
    runs = a.only or list(RUNS)
    if a.step == "compile":
        return compile_all(a.workers, runs)
    return bench_all(a.out, runs, a.resume, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
