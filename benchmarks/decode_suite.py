"""Decode-sized GEMMs (issue 15): M in 1..128 tokens against the Llama-3 8B/70B projection
weights, layout NT (B stored (N, K) as nn.Linear stores it; `--layouts` adds others), bf16
and f16.

    python benchmarks/decode_suite.py --compile-only DIR [--ms 1,2,4] [--dtypes bf16]  # CPU
    python benchmarks/decode_suite.py --run DIR [--out r.json] [--budget-s 200]        # GPU
    python benchmarks/decode_suite.py --analyze r.json   # issue 15's figures and their bounds

Per point: DeepGen's default kernel and, where they apply, alternatives (the other strategy's
default; gemv variants of rows/unroll, bf16 M <= 16: what the default heuristic was decided
from), torch.matmul (cuBLAS) and the Triton tutorial matmul (benchmarks/triton_matmul.py, its
best config for the point) timed in the same process. TFLOP/s, GB/s (A and B read once,
C written once), and the fraction of the streaming-read bandwidth measured in the same run
(torch.sum over 1 GiB).

Method: the weights stay cold as in decoding: each runner rotates among copies of B that
together hold at least 4 x the 50 MiB L2 (no L2 flush: its write-back would land inside a
10 us kernel). Each runner is captured in a CUDA graph of `launches` calls (the copies in
turn) and replayed; one round times every runner of the point once (interleaved), the
figure is the median over `--rounds` (>= 5) rounds of the per-call time. Every kernel,
DeepGen's and cuBLAS's, is checked against a float64 reference on fresh random data with C
poisoned (NaN) first (runtime/measure.py tolerances). `--run` needs no MLIR.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_suite import (  # noqa: E402
    _load_triton, add_bundle_modes, device_info, git_commit, write_json)

from deepgen.spec import DTYPE_BYTES, GemmSpec  # noqa: E402
from deepgen.tuner.ranges import geomean  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BUNDLE_FORMAT = "deepgen-decode-bundle/1"
RESULT_FORMAT = "deepgen-decode-suite/1"
MS = (1, 2, 4, 8, 16, 32, 64, 128)
# Llama-3 8B and 70B projections: (N, K) of qkv/o/gate-up/down
NK = [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336), (8192, 8192), (10240, 8192),
      (57344, 8192), (8192, 28672)]
DTYPES = ("bf16", "f16")
L2_BYTES = 50 * 2**20
# gemv variants (rows, unroll) compiled beside the default for bf16 M <= 16
GEMV_VARIANTS = ((4, 2), (2, 4), (1, 8), (4, 4))
# and for N-contiguous B (layouts NN, TN): (warps, k_warps, unroll), split_k fitted
GEMV_NN_VARIANTS = ((8, 8, 16), (16, 16, 8), (16, 16, 16), (32, 32, 8), (16, 8, 16))
VARIANT_MAX_M = 16


def points(ms=MS, dtypes=DTYPES, nk=NK, layouts=("NT",)) -> list[dict]:
    """The suite's points, M <= 32 first (bf16, then f16), then the larger M: a run cut
    short by its time budget keeps the points that decide the default heuristic. Layout NT
    (B as nn.Linear stores it) is the suite; other layouts get the layout in their name."""
    pts = [{"name": f"{dt}-{m}x{n}x{k}" + ("" if lay == "NT" else f"-{lay}"), "M": m, "N": n,
            "K": k, "dtype": dt, "layout": lay}
           for lay in layouts for dt in dtypes for (n, k) in nk for m in ms]
    return sorted(pts, key=lambda p: (p["M"] > 32, dtypes.index(p["dtype"])))


def spec_of(p: dict) -> GemmSpec:
    return GemmSpec(M=p["M"], N=p["N"], K=p["K"], dtype=p["dtype"],
                    layout=p.get("layout", "NT"))


# ---------------------------------------------------------------------------------------------
# Compile (CPU machine with MLIR)


def variants(spec: GemmSpec, target: str = "sm_90a", default_only: bool = False,
             extra: dict | None = None) -> dict:
    """name -> config dict: "default" (the default heuristic), the `extra` configs (name ->
    config dict with "strategy", fields left out completed for the spec; those the spec does
    not validate or that repeat another are left out) and, unless `default_only`, the
    other strategy's default and gemv variants for bf16 M <= VARIANT_MAX_M."""
    from deepgen.compiler import strategies

    tgt = strategies._target(target)
    default = strategies.default_config(spec, tgt)
    out = {"default": default.to_dict()}
    for vname, given in (extra or {}).items():
        try:
            d = strategies.resolve(given, spec, tgt).to_dict()
        except Exception:
            continue
        if d not in out.values():
            out[vname] = d
    if default_only:
        return out
    for name in ("mma_sync", "gemv"):
        s = strategies.get(name)
        if name != default.strategy and s.serves(spec, tgt):
            out[name] = s.default_config(spec, tgt).to_dict()
    if spec.dtype == "bf16" and spec.M <= VARIANT_MAX_M:
        gemv = strategies.get("gemv")
        seen = {json.dumps(c, sort_keys=True) for c in out.values()}
        if spec.b_transposed:  # K-contiguous B
            given = {f"gemv_r{r}u{u}": {"rows": r, "unroll": u} for r, u in GEMV_VARIANTS}
        else:
            given = {f"gemv_w{w}k{kw}u{u}": {"rows": 1, "warps": w, "k_warps": kw, "unroll": u}
                     for w, kw, u in GEMV_NN_VARIANTS}
        for vname, fields in given.items():
            try:
                cfg = gemv.complete(fields, spec, tgt)
                gemv.validate(cfg, spec, tgt)
            except Exception:
                continue
            d = cfg.to_dict()
            key = json.dumps(d, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out[vname] = d
    return out


def _compile_one(job) -> dict:
    name, vname, spec_d, cfg, directory, target = job
    from deepgen.compiler import compile_artifact

    t = time.perf_counter()
    row = {"variant": vname, "config": cfg, "strategy": cfg.get("strategy")}
    try:
        art = compile_artifact(GemmSpec(**spec_d), cfg, target, keep_ir=False)
        path = Path(directory) / name / vname
        art.save(path)
        row.update(kernel=f"{name}/{vname}", resources=art.resources,
                   launches=[l.entry for l in art.launches],
                   compile_seconds=round(time.perf_counter() - t, 3))
    except Exception as ex:
        row["error"] = f"{type(ex).__name__}: {ex}"[:1000]
    return {"name": name, **row}


def compile_bundle(directory: Path, pts: list[dict], target="sm_90a", workers: int = 2,
                   default_only: bool = False, extra: dict | None = None,
                   log=print) -> dict:
    from deepgen.compiler import toolchain_versions

    directory.mkdir(parents=True, exist_ok=True)
    jobs, rows = [], []
    for p in pts:
        spec = spec_of(p)
        vs = variants(spec, target, default_only, extra)
        rows.append({**p, "spec": spec.to_dict(), "variants": {}})
        for vname, cfg in vs.items():
            jobs.append((p["name"], vname, spec.to_dict(), cfg, str(directory), target))
    by_name = {r["name"]: r for r in rows}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for i, res in enumerate(pool.map(_compile_one, jobs, chunksize=4)):
            by_name[res.pop("name")]["variants"][res["variant"]] = res
            if res.get("error") or i % 20 == 0:
                log(f"[{i + 1}/{len(jobs)} {time.perf_counter() - t0:5.0f} s] "
                    f"{jobs[i][0]} {res['variant']} {res.get('error', 'ok')}")
    index = {"format": BUNDLE_FORMAT, "target": target,
             "created": _dt.datetime.now().isoformat(timespec="seconds"),
             "git_commit": git_commit(), "toolchain": toolchain_versions(), "points": rows}
    (directory / "index.json").write_text(json.dumps(index, indent=1))
    return index


# ---------------------------------------------------------------------------------------------
# Run (GPU, runtime only)


def stream_read_gbps(rounds: int = 5) -> dict:
    """Bytes per second of torch.sum over a 1 GiB bf16 tensor (median of rounds)."""
    import torch

    x = torch.randn(2**29, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        x.sum()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(5):
            x.sum()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 5)
    ms = sorted(times)[len(times) // 2]
    del x
    torch.cuda.empty_cache()
    return {"bytes": 2**30, "ms": ms, "gbps": 2**30 / (ms * 1e-3) / 1e9, "rounds": times}


class Runner:
    """One kernel of a point captured in a CUDA graph rotating over the copies of B."""

    def __init__(self, name, call, bs, launches: int):
        import torch

        self.name = name
        self.launches = launches
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for i in range(3):
                call(bs[i % len(bs)])
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            for i in range(launches):
                call(bs[i % len(bs)])
        self.graph.replay()
        torch.cuda.synchronize()

    def time_ms(self, replays: int = 1) -> float:
        import torch

        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.graph.replay()  # warm
        s.record()
        for _ in range(replays):
            self.graph.replay()
        e.record()
        torch.cuda.synchronize()
        return s.elapsed_time(e) / (replays * self.launches)


def measure_point(row: dict, bundle: Path, stream_gbps: float, rounds: int) -> dict:
    import torch

    from deepgen.runtime import measure
    from deepgen.runtime.kernel import load

    spec = GemmSpec.from_dict(row["spec"])
    elt = DTYPE_BYTES[spec.dtype]
    nbytes = (spec.M * spec.K + spec.N * spec.K) * elt + spec.M * spec.N * elt
    b_bytes = spec.N * spec.K * elt
    copies = max(2, math.ceil(4 * L2_BYTES / b_bytes))
    launches = copies * math.ceil(48 / copies)
    res = {"name": row["name"], "M": spec.M, "N": spec.N, "K": spec.K, "dtype": spec.dtype,
           "layout": spec.layout, "flops": spec.flops, "bytes": nbytes, "b_copies": copies,
           "launches_per_graph": launches, "tolerance": measure.tolerance(spec), "runners": {}}
    torch.manual_seed(0)
    # correctness: one float64 reference, every kernel (C poisoned before each)
    a, b = measure.operand(spec, "A"), measure.operand(spec, "B")
    ref = measure.reference(a, b)
    out_dt = measure.TORCH_DTYPES[spec.out_dtype]
    c = torch.empty(spec.M, spec.N, device="cuda", dtype=out_dt)
    kernels = {}
    for vname, v in row["variants"].items():
        r = res["runners"][vname] = {"config": v.get("config"), "strategy": v.get("strategy"),
                                     "resources": v.get("resources")}
        if v.get("error"):
            r["check"] = "compile failed: " + v["error"][:300]
            continue
        try:
            k = load(bundle / v["kernel"])
            c.fill_(float("nan"))
            k(a, b, c)
            torch.cuda.synchronize()
            err = measure.rel_error(c, ref)
            r["rel_err"] = err
            r["check"] = "ok" if err <= res["tolerance"] else f"FAIL rel_err {err:.2e}"
            if r["check"] == "ok":
                kernels[vname] = k
        except Exception as ex:
            r["check"] = f"error: {type(ex).__name__}: {ex}"[:500]
    c.fill_(float("nan"))
    torch.matmul(a, b, out=c)
    torch.cuda.synchronize()
    err = measure.rel_error(c, ref)
    res["runners"]["cublas"] = {"rel_err": err, "check": "ok" if err <= res["tolerance"]
                                else f"FAIL rel_err {err:.2e}"}
    triton_run = _checked_triton(res, a, b, c, ref)
    del ref, b
    # timing: copies of B past the L2, one graph per runner, interleaved rounds
    bs = [measure.operand(spec, "B") for _ in range(copies)]
    runners = []
    try:
        for vname, k in kernels.items():
            cv = torch.empty_like(c)
            runners.append(Runner(vname, lambda bb, k=k, cv=cv: k(a, bb, cv), bs, launches))
        ct = torch.empty_like(c)
        runners.append(Runner("cublas", lambda bb: torch.matmul(a, bb, out=ct), bs, launches))
        if triton_run is not None:
            runners.append(Runner("triton", lambda bb: triton_run(a, bb), bs, launches))
        times = {r.name: [] for r in runners}
        for _ in range(rounds):
            for r in runners:
                times[r.name].append(r.time_ms())
    except Exception as ex:
        res["error"] = f"{type(ex).__name__}: {ex}"[:500]
        times = {}
    for name, ts in times.items():
        ms = sorted(ts)[len(ts) // 2]
        gbps = nbytes / (ms * 1e-3) / 1e9
        res["runners"][name].update(ms=ms, rounds_ms=ts, tflops=spec.flops / (ms * 1e-3) / 1e12,
                                    gbps=gbps, frac_stream=gbps / stream_gbps)
    cub = res["runners"]["cublas"].get("ms")
    for name, r in res["runners"].items():
        if cub and r.get("ms"):
            r["vs_cublas"] = cub / r["ms"]
    timed = {n: r for n, r in res["runners"].items()
             if n not in ("cublas", "triton") and r.get("ms")}
    if timed:
        best = min(timed, key=lambda n: timed[n]["ms"])
        res["best"] = best
    del runners, bs
    torch.cuda.empty_cache()
    return res


def _checked_triton(res: dict, a, b, c, ref):
    """The Triton tutorial matmul (benchmarks/triton_matmul.py) with its best config for this
    point, checked like the others (C poisoned); run(a, b) or None where Triton is missing or
    fails (recorded in res["runners"]["triton"])."""
    import torch

    from deepgen.runtime import measure

    tm = _load_triton()
    if tm is None:
        return None
    r = res["runners"]["triton"] = {}
    out = torch.empty_like(c)

    def bench(fn):  # a candidate config, as gemm_suite tunes Triton
        return measure.time_ms(lambda _a, _b: fn(), [(a, b)], warmup_ms=5, rep_ms=20)

    try:
        cfg, tried = tm.tune(a, b, out, False, bench)
        r.update(config=list(cfg), tried=tried)
        out.fill_(float("nan"))
        tm.matmul(a, b, out, cfg)
        torch.cuda.synchronize()
        err = measure.rel_error(out, ref)
        r["rel_err"] = err
        r["check"] = "ok" if err <= res["tolerance"] else f"FAIL rel_err {err:.2e}"
    except Exception as ex:  # a missing or failing baseline is recorded, not fatal
        r["check"] = f"error: {type(ex).__name__}: {ex}"[:500]
        return None
    return lambda aa, bb: tm.matmul(aa, bb, out, cfg)


def run_bundle(bundle: Path, out: Path | None, rounds: int = 5, budget_s: float | None = None,
               pattern: str | None = None) -> dict:

    index = json.loads((bundle / "index.json").read_text())
    assert index.get("format") == BUNDLE_FORMAT, f"{bundle}: not a decode bundle"
    rows = [r for r in index["points"] if not pattern or re.search(pattern, r["name"])]
    rows.sort(key=lambda r: (r["M"] > 32, r["dtype"] != "bf16"))  # as points() orders them
    info = device_info()
    when = _dt.datetime.now()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", info["device"]).strip("-")
    out = out or RESULTS / f"decode_suite-{slug}-{when:%Y-%m-%d-%H%M}.json"
    stream = stream_read_gbps()
    doc = {"format": RESULT_FORMAT, "date": when.isoformat(timespec="seconds"), **info,
           "git_commit": git_commit(), "bundle": {k: v for k, v in index.items() if k != "points"},
           "stream_read": stream,
           "method": {"timer": "CUDA graph of launches rotating B copies, CUDA events",
                      "rounds": rounds, "b_copies": ">= 4 x 50 MiB L2, at least 2",
                      "check": "float64 reference, relative Frobenius error, C poisoned"},
           "results": []}
    print(f"stream read (torch.sum, 1 GiB): {stream['gbps']:.0f} GB/s")
    t0 = time.monotonic()
    for i, row in enumerate(rows):
        if budget_s is not None and time.monotonic() - t0 > budget_s:
            doc["results"].append({"name": row["name"], "skipped": "time budget spent"})
            continue
        res = measure_point(row, bundle, stream["gbps"], rounds)
        doc["results"].append(res)
        d, cb = res["runners"].get("default", {}), res["runners"]["cublas"]
        print(f"[{i + 1}/{len(rows)} {time.monotonic() - t0:5.0f} s] {row['name']:22s} "
              f"default {d.get('strategy')} {_f(d.get('tflops'))} TF {_f(d.get('frac_stream'), 2)} "
              f"of stream, cuBLAS {_f(cb.get('tflops'))} TF, x{_f(d.get('vs_cublas'), 2)}; best "
              f"{res.get('best')} x{_f(res['runners'].get(res.get('best'), {}).get('vs_cublas'), 2)}"
              f"; checks {','.join(n for n, r in res['runners'].items() if r.get('check') != 'ok') or 'ok'}",
              flush=True)
        write_json(out, doc)
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    doc["analysis"] = analyze(doc)
    write_json(out, doc)
    print(f"\nwrote {out}\n")
    print(format_table(doc))
    print(format_analysis(doc["analysis"]))
    return doc


# H200 HBM3e: the data sheet's 4.8 TB/s, a rate no measured read reaches (the bound's ceiling)
HBM_PEAK_GBPS = {"NVIDIA H200": 4800.0}
BIG_B_BYTES = 64 * 2**20  # the floors: B >= 64 MiB at >= 85% of the stream read,
FLOORS = (0.85, 0.70)     # every other M <= 16 point at >= 70%
GROUPS = {"M1_16": (1, 16), "M32_128": (32, 128)}


def _geo(xs: list) -> float | None:
    return round(geomean(xs), 3) if xs else None


def analyze(doc: dict, runner: str = "default") -> dict:
    """What a decode-suite result says about issue 15's figures, and how far any kernel could
    go: per group (M <= 16, 32 <= M <= 128) the runner's geomean, min and count below 1.0 vs
    cuBLAS, and the geomean of the ideal ratio, cuBLAS's time over the time to move the
    point's bytes at a rate: the run's stream read (torch.sum over 1 GiB), the highest rate
    any kernel of the run reached at any point, and the HBM's data-sheet peak (a bound no
    kernel can pass: reads never reach it); the M <= 16 bandwidth floors (FLOORS)."""
    rows = [r for r in doc["results"] if not r.get("skipped")
            and r["runners"].get(runner, {}).get("check") == "ok"
            and r["runners"]["cublas"].get("ms")]
    best = max((x["gbps"] for r in rows for x in r["runners"].values() if x.get("gbps")),
               default=None)  # None: no point measured (a spent budget)
    rates = {"stream_read": doc["stream_read"]["gbps"]}
    if best is not None:
        rates["best_measured"] = best
    if doc.get("device") in HBM_PEAK_GBPS:
        rates["hbm_peak"] = HBM_PEAK_GBPS[doc["device"]]
    out = {"runner": runner, "rates_gbps": {k: round(v) for k, v in rates.items()}}
    for g, (lo, hi) in GROUPS.items():
        grp = [r for r in rows if lo <= r["M"] <= hi]
        ratios = [r["runners"][runner]["vs_cublas"] for r in grp]
        out[g] = {"points": len(grp), "geomean": _geo(ratios),
                  "min": round(min(ratios), 3) if ratios else None,
                  "below_1": sum(x < 1.0 for x in ratios),
                  "ideal_geomean": {k: _geo([r["runners"]["cublas"]["ms"] * 1e-3 * v * 1e9
                                             / r["bytes"] for r in grp])
                                    for k, v in rates.items()}}
    def floor(r):  # FLOORS[0] where B holds at least BIG_B_BYTES, else FLOORS[1]
        return FLOORS[0] if r["N"] * r["K"] * DTYPE_BYTES[r["dtype"]] >= BIG_B_BYTES else FLOORS[1]

    floors = [r["name"] for r in rows
              if r["M"] <= 16 and r["runners"][runner]["frac_stream"] < floor(r)]
    out["M1_16"]["below_floor"] = floors
    return out


def format_analysis(a: dict) -> str:
    lines = []
    for g in GROUPS:
        x = a[g]
        ideal = ", ".join(f"{k} ({a['rates_gbps'][k]} GB/s) {v}"
                          for k, v in x["ideal_geomean"].items())
        lines.append(f"{g}: '{a['runner']}' geomean {x['geomean']} (min {x['min']}, "
                     f"{x['below_1']} of {x['points']} below 1.0); a kernel moving every "
                     f"point's bytes at: {ideal}")
    lines.append(f"M1_16 below the bandwidth floors: {a['M1_16']['below_floor'] or 'none'}")
    return "\n".join(lines)


def _f(x, d=1):
    return f"{x:.{d}f}" if isinstance(x, (int, float)) else "-"


def format_table(doc: dict, runner: str = "default") -> str:
    stream = doc["stream_read"]["gbps"]
    lines = [f"decode suite, {doc.get('device')}; stream read {stream:.0f} GB/s; "
             f"runner '{runner}' vs cuBLAS (median of {doc['method']['rounds']} rounds)",
             f"{'point':22s} {'strategy':8s} {'TFLOP/s':>8s} {'GB/s':>6s} {'frac':>5s} "
             f"{'cuBLAS':>7s} {'cuB GB/s':>8s} {'Triton':>7s} {'ratio':>6s}  best"]
    groups = {"M<=16": [], "32<=M<=128": []}
    for r in doc["results"]:
        if r.get("skipped"):
            lines.append(f"{r['name']:22s} skipped")
            continue
        d, cb = r["runners"].get(runner, {}), r["runners"]["cublas"]
        best = r.get("best")
        bv = r["runners"].get(best, {}).get("vs_cublas")
        lines.append(f"{r['name']:22s} {str(d.get('strategy')):8s} {_f(d.get('tflops')):>8s} "
                     f"{_f(d.get('gbps'), 0):>6s} {_f(d.get('frac_stream'), 2):>5s} "
                     f"{_f(cb.get('tflops')):>7s} {_f(cb.get('gbps'), 0):>8s} "
                     f"{_f(r['runners'].get('triton', {}).get('tflops')):>7s} "
                     f"{_f(d.get('vs_cublas'), 2):>6s}  {best} {_f(bv, 2)}"
                     + ("" if d.get("check") == "ok" else f"  [{d.get('check')}]"))
        if d.get("vs_cublas") and d.get("check") == "ok":
            groups["M<=16" if r["M"] <= 16 else "32<=M<=128"].append(d["vs_cublas"])
    for g, xs in groups.items():
        if xs:
            geo = geomean(xs)
            lines.append(f"{g}: geometric mean vs cuBLAS {geo:.3f} over {len(xs)} points, "
                         f"min {min(xs):.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_modes(p)
    p.add_argument("--ms", default=",".join(map(str, MS)))
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--layouts", default="NT", help="comma-separated (the suite: NT)")
    p.add_argument("--nk", default=None, metavar="NxK,...",
                   help="(N, K) pairs instead of the Llama-3 projections, e.g. 14336x4096")
    p.add_argument("--only", default=None, metavar="REGEX")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--default-only", action="store_true",
                   help="compile only DeepGen's default per point (no alternatives)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=JSON",
                   help="another variant per point: a config dict with \"strategy\" (fields "
                        "left out follow from the given ones); repeatable")
    p.add_argument("--target", default="sm_90a")
    p.add_argument("--analyze", type=Path, default=None, metavar="RESULT.json",
                   help="(no GPU) add the figures' analysis to a result file and print it")
    a = p.parse_args(argv)
    if a.analyze:
        doc = json.loads(a.analyze.read_text())
        doc["analysis"] = analyze(doc)
        write_json(a.analyze, doc)
        print(format_analysis(doc["analysis"]))
        return 0
    if not (a.run or a.compile_only):
        p.error("one of --compile-only, --run or --analyze is required")
    if a.rounds < 5:
        raise SystemExit("--rounds: at least 5 (the issue's method)")
    if a.run:
        doc = run_bundle(a.run, a.out, a.rounds, a.budget_s, a.only)
        bad = [r["name"] for r in doc["results"] for n, x in r.get("runners", {}).items()
               if x.get("check") not in (None, "ok")]
        return 1 if bad else 0
    nk = [tuple(int(v) for v in x.split("x")) for x in a.nk.split(",")] if a.nk else NK
    pts = points([int(x) for x in a.ms.split(",")], a.dtypes.split(","), nk,
                 layouts=a.layouts.split(","))
    if a.only:
        pts = [q for q in pts if re.search(a.only, q["name"])]
    t = time.perf_counter()
    extra = {name: json.loads(text) for name, text in (e.split("=", 1) for e in a.extra)}
    index = compile_bundle(a.compile_only, pts, a.target, a.workers, a.default_only, extra)
    n = sum(len(r["variants"]) for r in index["points"])
    errs = [(r["name"], v) for r in index["points"] for v, x in r["variants"].items()
            if x.get("error")]
    print(f"{n} kernels for {len(pts)} points in {a.compile_only}, "
          f"{time.perf_counter() - t:.0f} s; {len(errs)} errors {errs[:5]}")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
