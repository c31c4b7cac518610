"""Range kernels vs exact-shape kernels of the same tile (issue 17), on one GPU.

    python benchmarks/dynamic_m_bench.py --compile DIR      # on a machine with MLIR
    python benchmarks/dynamic_m_bench.py --run DIR --out results/x.json   # on the GPU host

--compile writes into DIR:
  range/<label>, exact/<M>   for N = K = 4096 bf16 NT: the range kernel serving M (ranges
                             65-256, 257-2048, 2049-16384) and the exact-shape kernel at
                             M = 128, 2048, 4096 with the range kernel's config (same tile)
  host/range, host/exact     a small pair (M in 1-16, N = K = 256) for the host cost per call
  every/                     deepgen precompile of N = K = 1024 up to M = 4096 (the GPU test's
                             loop over every M; tests/gpu/test_dynamic_m_gpu.py)
  export/                    deepgen export of 4096x4096 bf16 NT up to M = 4096 (the C test)

--run: every kernel checked against float64 first (C poisoned with NaN), then --rounds
interleaved rounds (the order of range/exact alternates per round); each figure the median
of the rounds' medians (runtime/measure.time_ms, rotating input sets past L2). Host cost:
--calls calls per repeat of Kernel.__call__ (exact), RangeKernel.__call__ and
deepgen.gemm(dynamic_m=True) vs deepgen.gemm on the exact bundle (preloaded), timed with
perf_counter until the last call is queued, interleaved repeats, medians. JSON to --out; a
table last.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gemm_suite import device_info, git_commit

N = K = 4096
POINTS = (128, 2048, 4096)
HOST = dict(M=16, N=256, K=256)
EVERY = dict(N=1024, K=1024, max_m=4096)


def _spec(M, n=N, k=K):
    from deepgen.spec import GemmSpec

    return GemmSpec(M=M, N=n, K=k, dtype="bf16", layout="NT")


def compile_all(root: Path) -> None:
    from deepgen.compiler import compile_artifact

    from deepgen import aot
    from deepgen.aot.precompile import compile_range
    from deepgen.dims import range_label, range_of

    for M in POINTS:
        rspec = _spec(range_of(M))
        art = compile_range(rspec)
        art.save(root / "range" / range_label(rspec.M))
        exact = compile_artifact(_spec(M), art.config, keep_ir=False)
        exact.save(root / "exact" / str(M))
        print(f"M={M}: range {range_label(rspec.M)} and exact, config {art.config['BM']}x"
              f"{art.config['BN']} {art.config['mode']} s{art.config['stages']}")
    rspec = _spec(range_of(HOST["M"]), HOST["N"], HOST["K"])
    art = compile_range(rspec)
    art.save(root / "host" / "range")
    compile_artifact(_spec(HOST["M"], HOST["N"], HOST["K"]), art.config,
                     keep_ir=False).save(root / "host" / "exact")
    aot.precompile([(EVERY["N"], EVERY["K"])], max_m=EVERY["max_m"], out=root / "every")
    aot.export(root / "export", [(N, K)], max_m=4096)
    print(f"wrote {root}")


def run_all(root: Path, rounds: int, calls: int, out: Path | None) -> int:
    import torch
    from deepgen.runtime import cache, load
    from deepgen.runtime.measure import input_sets, rel_error, time_ms, tolerance

    import deepgen
    from deepgen.dims import range_label, range_of

    dev = torch.device("cuda")
    results = {"what": "range kernel vs exact-shape kernel of the same tile, bf16 NT",
               "date": datetime.date.today().isoformat(), "git_commit": git_commit(),
               **device_info(), "rounds": rounds, "points": [], "host": {}}
    pairs = {}
    ok = True
    for M in POINTS:
        rk = load(root / "range" / range_label(range_of(M)))
        ek = load(root / "exact" / str(M))
        assert rk.config == ek.config, (rk.config, ek.config)
        spec = ek.spec
        a = torch.randn(M, K, device=dev).to(torch.bfloat16)
        b = torch.randn(N, K, device=dev).to(torch.bfloat16).t()  # NT: B stored N x K
        ref = a.double() @ b.double()
        errs = {}
        for name, k in (("range", rk), ("exact", ek)):
            c = torch.full((M, N), float("nan"), device=dev, dtype=torch.bfloat16)
            k(a, b, c)
            torch.cuda.synchronize()
            errs[name] = rel_error(c, ref)
        good = all(e <= tolerance(spec) for e in errs.values())
        ok &= good
        sets = input_sets(spec)
        outs = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
        pairs[M] = (rk, ek, sets, outs)
        results["points"].append({"M": M, "N": N, "K": K, "range": range_label(rk.dim),
                                  "config": rk.config, "rel_error": errs, "ok": good,
                                  "range_ms": [], "exact_ms": []})
    for r in range(rounds):
        for p in results["points"]:
            rk, ek, sets, outs = pairs[p["M"]]
            order = (("range", rk), ("exact", ek)) if r % 2 == 0 else (("exact", ek),
                                                                       ("range", rk))
            for name, k in order:
                p[f"{name}_ms"].append(time_ms(lambda a, b, k=k, o=outs: k(a, b, o), sets))
    for p in results["points"]:
        p["range_median_ms"] = statistics.median(p["range_ms"])
        p["exact_median_ms"] = statistics.median(p["exact_ms"])
        p["range_over_exact_time"] = p["range_median_ms"] / p["exact_median_ms"]
        flops = 2 * p["M"] * N * K
        p["range_tflops"] = flops / p["range_median_ms"] / 1e9
        p["exact_tflops"] = flops / p["exact_median_ms"] / 1e9
    results["host"] = host_cost(root, calls, rounds, torch, deepgen, cache, load)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    print(f"{'M':>6} {'range':>11} {'range ms':>9} {'exact ms':>9} {'ratio':>6} {'err':>8}")
    for p in results["points"]:
        print(f"{p['M']:>6} {p['range']:>11} {p['range_median_ms']:9.4f} "
              f"{p['exact_median_ms']:9.4f} {p['range_over_exact_time']:6.3f} "
              f"{max(p['rel_error'].values()):8.1e}")
    for name, us in results["host"]["median_us"].items():
        print(f"host {name:>22}: {us:7.2f} us/call")
    return 0 if ok else 1


def host_cost(root, calls, repeats, torch, deepgen, cache, load) -> dict:
    """Host microseconds per call until the last call is queued (M = 16, N = K = 256)."""
    rk, ek = load(root / "host" / "range"), load(root / "host" / "exact")
    cache.preload(root / "host" / "range")
    cache.preload(root / "host" / "exact")
    M, n, k = HOST["M"], HOST["N"], HOST["K"]
    dev = torch.device("cuda")
    a = torch.randn(M, k, device=dev).to(torch.bfloat16)
    b = torch.randn(n, k, device=dev).to(torch.bfloat16).t()
    c = torch.empty(M, n, device=dev, dtype=torch.bfloat16)
    paths = {"Kernel (exact)": lambda: ek(a, b, c),
             "RangeKernel": lambda: rk(a, b, c),
             "deepgen.gemm (exact)": lambda: deepgen.gemm(a, b, out=c),
             "deepgen.gemm dynamic_m": lambda: deepgen.gemm(a, b, out=c, dynamic_m=True)}
    ref = a.double() @ b.double()
    errors = {}
    for name, fn in paths.items():  # correctness and warm-up (binds, plans, fast paths)
        c.fill_(float("nan"))
        fn()
        torch.cuda.synchronize()
        errors[name] = ((c.double() - ref).norm() / ref.norm()).item()
        for _ in range(20):
            fn()
    from deepgen import api
    api._by_call.clear()  # the two deepgen.gemm paths share a call signature: see below
    times = {name: [] for name in paths}
    names = list(paths)
    for r in range(repeats * 4):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = paths[name]
            if name.startswith("deepgen.gemm"):
                api._by_call.clear()  # each deepgen.gemm path onto its own kernel, then
                fn()                  # its fast path (the signature caches one kernel)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls * 1e6)
            torch.cuda.synchronize()
    return {"M": M, "N": n, "K": k, "calls": calls, "rel_error": errors,
            "median_us": {name: statistics.median(v) for name, v in times.items()},
            "samples_us": times}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compile", type=Path, metavar="DIR")
    p.add_argument("--run", type=Path, metavar="DIR")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.compile:
        compile_all(args.compile)
    if args.run:
        return run_all(args.run, args.rounds, args.calls, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
