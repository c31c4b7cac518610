"""The tensor-core issue's figures: f16 and bf16 at 4096^3 and 2048 x 4096 x 14336 (and tf32 at
4096^3), DeepGen's default and tuned kernels against torch.matmul (cuBLAS), in several rounds.

    python benchmarks/tensor_core_goal.py --compile-only BUNDLE [--tuned RESULTS.json ...]
    python benchmarks/tensor_core_goal.py --run BUNDLE [--rounds 5] [--out r.json]

--compile-only (CPU machine, MLIR) compiles each point's default config and, where a tuning
results file (`deepgen bench` output) holds the point, its best tuned config. --run (GPU host,
runtime only) checks every kernel against float64 with C poisoned, then times the kernels and
cuBLAS in `rounds` interleaved rounds (GPU clocks drift over minutes of tensor-core load: one
round per variant would compare different clocks) and reports the median TFLOP/s per variant.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_suite import add_bundle_modes, device_info, git_commit  # noqa: E402

POINTS = {  # name -> spec fields
    "bf16_4096^3": dict(M=4096, N=4096, K=4096, dtype="bf16"),
    "f16_4096^3": dict(M=4096, N=4096, K=4096, dtype="f16"),
    "bf16_2048x4096x14336": dict(M=2048, N=4096, K=14336, dtype="bf16"),
    "f16_2048x4096x14336": dict(M=2048, N=4096, K=14336, dtype="f16"),
    "tf32_4096^3": dict(M=4096, N=4096, K=4096, dtype="f32", allow_tf32=True),
}


def best_tuned(results_files: list[Path]) -> dict:
    """spec key (canonical JSON) -> the fastest correct config across `deepgen bench` results."""
    from deepgen.runtime.tuned import canonical_json

    best = {}
    for path in results_files:
        for shape in json.loads(path.read_text())["shapes"]:
            key = canonical_json(shape["spec"])
            for row in shape.get("top", []):
                if row.get("tflops") and (key not in best or row["tflops"] > best[key][0]):
                    best[key] = (row["tflops"], row["config"])
    return {k: cfg for k, (_, cfg) in best.items()}


def compile_all(bundle: Path, tuned_files: list[Path]) -> None:
    from deepgen.compiler import compile_artifact, default_config
    from deepgen.runtime.tuned import canonical_json
    from deepgen.spec import GemmSpec

    tuned = best_tuned(tuned_files)
    bundle.mkdir(parents=True, exist_ok=True)
    index = []
    for name, fields in POINTS.items():
        spec = GemmSpec(**fields)
        variants = {"default": default_config(spec).to_dict()}
        if canonical_json(spec.to_dict()) in tuned:
            variants["tuned"] = tuned[canonical_json(spec.to_dict())]
        for variant, cfg in variants.items():
            art = compile_artifact(spec, cfg, keep_ir=False)
            art.save(bundle / f"{name}-{variant}")
            index.append({"point": name, "variant": variant, "dir": f"{name}-{variant}"})
            print(f"{name:24s} {variant:8s} {art.resources['deepgen_gemm']}", flush=True)
    (bundle / "index.json").write_text(json.dumps(index, indent=1))


def run_all(bundle: Path, rounds: int, out: Path | None) -> int:
    import torch

    from deepgen.runtime import load, measure

    torch.manual_seed(0)
    index = json.loads((bundle / "index.json").read_text())
    points, failures = {}, 0
    for entry in index:
        k = load(bundle / entry["dir"])
        p = points.setdefault(entry["point"], {"spec": k.spec, "variants": {}})
        err = measure.check(k, k.spec)
        ok = err <= measure.tolerance(k.spec)
        failures += not ok
        p["variants"][entry["variant"]] = {"kernel": k, "config": k.config, "rel_err": err,
                                           "ok": ok, "ms": []}
    for name, p in points.items():
        spec = p["spec"]
        sets = measure.input_sets(spec)
        runners = {v: (lambda a, b, k=d["kernel"], c=torch.empty(spec.M, spec.N, device="cuda",
                                                                   dtype=measure.TORCH_DTYPES[spec.out_dtype]):
                       k(a, b, c)) for v, d in p["variants"].items() if d["ok"]}
        runners["cublas"] = measure.torch_baseline(spec)
        p["variants"].setdefault("cublas", {"ms": []})
        for _ in range(rounds):
            for variant, run_one in runners.items():
                p["variants"][variant]["ms"].append(measure.time_ms(run_one, sets))
    report = {"benchmark": "tensor_core_goal", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "git_commit": git_commit(), **device_info(), "rounds": rounds, "points": {}}
    print(f"{'point':24s} {'variant':8s} {'median TF/s':>11s} {'min':>7s} {'max':>7s} {'vs cuBLAS':>9s}")
    for name, p in points.items():
        spec, rows = p["spec"], {}
        cublas_ms = statistics.median(p["variants"]["cublas"]["ms"])
        for variant, d in p["variants"].items():
            if not d["ms"]:
                rows[variant] = {"ok": d.get("ok"), "rel_err": d.get("rel_err")}
                continue
            tf = [measure.tflops(spec, ms) for ms in d["ms"]]
            med = measure.tflops(spec, statistics.median(d["ms"]))
            rows[variant] = {"tflops_median": med, "tflops_rounds": tf, "ms_rounds": d["ms"],
                             "vs_cublas": cublas_ms / statistics.median(d["ms"]),
                             "config": d.get("config"), "rel_err": d.get("rel_err")}
            print(f"{name:24s} {variant:8s} {med:11.1f} {min(tf):7.1f} {max(tf):7.1f} "
                  f"{rows[variant]['vs_cublas']:9.2f}")
        report["points"][name] = {"spec": spec.to_dict(), "variants": rows}
    if out:
        out.write_text(json.dumps(report, indent=1))
    return 1 if failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_modes(p, required=True)
    p.add_argument("--tuned", type=Path, nargs="*", default=[],
                   help="deepgen bench results.json files to take tuned configs from")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.compile_only:
        compile_all(a.compile_only, a.tuned)
        return 0
    return run_all(a.run, a.rounds, a.out)


if __name__ == "__main__":
    sys.exit(main())
