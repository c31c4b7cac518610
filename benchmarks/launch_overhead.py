"""Host overhead per call from Python, for a tiny GEMM (16x16x16 f32 by default).

    python benchmarks/launch_overhead.py --bundle .carry/runtime_bundles/overhead_16x16x16_f32

For each way of running the GEMM (torch.matmul, Kernel.__call__ with and without C,
deepgen.gemm, torch.ops.deepgen.gemm, and the bare LaunchPlan.launch as the floor), a repeat
times a loop of --calls calls with time.perf_counter: `host` is the time until the loop has
queued its last call (what the Python caller pays), `total` includes the final
torch.cuda.synchronize (bounded below by the GPU time). Repeats are interleaved across the
paths; the figures are medians over --repeats. Correctness first: every path's output is
compared with a float64 reference (outputs poisoned with NaN before).

The bundle comes from a CPU machine (benchmarks/runtime_bundles.py): the GPU host needs no
MLIR. It is preloaded, so deepgen.gemm and the op find it without compiling. Without
--bundle, the reference PTX kernel (deepgen.runtime.reference) stands in.
Writes JSON to --out and prints a table last.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import deepgen
from deepgen.api import target_of
from deepgen.runtime import Kernel, _launcher, cache, load
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec

TORCH = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def operands(spec: GemmSpec, device: str):
    """a, b in the spec's layouts (transposed views for "T") and a row-major C."""
    def matrix(rows, cols, transposed):
        x = torch.randn((spec.batch, cols, rows) if transposed else (spec.batch, rows, cols),
                        device=device).to(TORCH[spec.dtype])
        x = x.transpose(1, 2) if transposed else x
        return x if spec.batch > 1 else x[0]

    a = matrix(spec.M, spec.K, spec.a_transposed)
    b = matrix(spec.K, spec.N, spec.b_transposed)
    c = torch.empty(*((spec.batch,) if spec.batch > 1 else ()), spec.M, spec.N, device=device,
                    dtype=TORCH[spec.out_dtype])
    return a, b, c


def errors(got: torch.Tensor, want: torch.Tensor) -> dict:
    diff = (got.double() - want).abs()
    return {"rel_err": float(torch.linalg.norm(got.double() - want) / torch.linalg.norm(want)),
            "max_rel_err": float(diff.max() / want.abs().max()),
            "unwritten": int(torch.isnan(got).sum())}


def time_loop(fn, calls: int) -> tuple[float, float]:
    """(host, total) microseconds per call of one loop of `calls` calls."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return (t1 - t0) / calls * 1e6, (t2 - t0) / calls * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="kernel bundle (default: reference PTX)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "launch_overhead.json")
    parser.add_argument("--calls", type=int, default=200,
                        help="calls per timed loop (keep under the driver's launch queue)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("launch_overhead: needs an NVIDIA GPU (none found)", file=sys.stderr)
        return 2
    device = "cuda:0"
    target = target_of(0)
    if args.bundle:
        kernel, source = load(args.bundle), str(args.bundle)
        if kernel.target != target:
            print(f"launch_overhead: the bundle is for {kernel.target}, this GPU is {target}",
                  file=sys.stderr)
            return 2
    else:
        kernel = Kernel(reference_artifact(GemmSpec(M=16, N=16, K=16), target=target))
        source = "reference PTX (deepgen.runtime.reference), JIT by the driver"
    cache.preload(kernel.artifact)  # deepgen.gemm and the op find it without compiling
    spec = kernel.spec
    a, b, c = operands(spec, device)
    want = a.double() @ b.double()
    plan = kernel._plan(0)
    stream = torch.cuda.current_stream().cuda_stream
    pa, pb, pc = a.data_ptr(), b.data_ptr(), c.data_ptr()

    paths = {  # name -> (call, whether it writes c rather than returning a fresh tensor)
        "torch.matmul(a, b)": (lambda: torch.matmul(a, b), False),
        "torch.matmul(a, b, out=c)": (lambda: torch.matmul(a, b, out=c), True),
        "LaunchPlan.launch (floor)": (lambda: plan.launch(stream, pa, pb, pc, 0, 1.0, 0.0), True),
        "Kernel(a, b, c)": (lambda: kernel(a, b, c), True),
        "Kernel(a, b)": (lambda: kernel(a, b), False),
        "deepgen.gemm(a, b, out=c)": (lambda: deepgen.gemm(a, b, out=c), True),
        "deepgen.gemm(a, b)": (lambda: deepgen.gemm(a, b), False),
        "torch.ops.deepgen.gemm(a, b)": (lambda: torch.ops.deepgen.gemm(a, b), False),
    }
    if spec.batch > 1 or spec.a_transposed or spec.b_transposed or spec.dtype != spec.out_dtype:
        del paths["torch.matmul(a, b, out=c)"]  # torch's out= wants matching dtype and layout

    results = {}
    for name, (fn, writes_c) in paths.items():
        c.fill_(float("nan"))
        out = fn()
        torch.cuda.synchronize()
        results[name] = errors(c if writes_c else out, want)
        results[name]["host_us"], results[name]["total_us"] = [], []
    for _ in range(args.warmup):
        for fn, _ in paths.values():
            fn()
    for _ in range(args.repeats):
        for name, (fn, _) in paths.items():
            host, total = time_loop(fn, args.calls)
            results[name]["host_us"].append(host)
            results[name]["total_us"].append(total)

    base = statistics.median(results["torch.matmul(a, b)"]["host_us"])
    for r in results.values():
        r["host_us_median"] = statistics.median(r["host_us"])
        r["host_us_min"] = min(r["host_us"])
        r["total_us_median"] = statistics.median(r["total_us"])
        r["host_vs_torch_matmul"] = r["host_us_median"] / base
    props = torch.cuda.get_device_properties(0)
    report = {
        "benchmark": "launch_overhead",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": props.name, "capability": f"{props.major}.{props.minor}", "target": target,
        "driver_version": _launcher.driver_version(), "cuda_runtime": torch.version.cuda,
        "torch": torch.__version__, "python": platform.python_version(),
        "deepgen": deepgen.__version__,
        "kernel": {"source": source, "spec": spec.to_dict(), "config": kernel.config,
                   "launches": [l.to_dict() for l in kernel.artifact.launches],
                   "toolchain": kernel.artifact.toolchain, "registers": kernel.registers},
        "calls_per_loop": args.calls, "repeats": args.repeats, "warmup": args.warmup,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")

    print(f"{props.name}, driver {report['driver_version']}, torch {torch.__version__}; "
          f"{spec.M}x{spec.N}x{spec.K} {spec.dtype} {spec.layout}, kernel: {source}")
    print(f"wrote {args.out}\n")
    print(f"{'path':32} {'host us/call':>12} {'vs matmul':>9} {'total us/call':>13} "
          f"{'rel err':>9} {'max rel err':>11}")
    for name, r in results.items():
        print(f"{name:32} {r['host_us_median']:12.2f} {r['host_vs_torch_matmul']:9.2f} "
              f"{r['total_us_median']:13.2f} {r['rel_err']:9.1e} {r['max_rel_err']:11.1e}"
              + ("  UNWRITTEN" if r["unwritten"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
