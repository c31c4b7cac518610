"""DeepGen GEMM benchmark suite: DeepGen against torch (cuBLAS) and Triton, by named shape suites.

    # a host with both MLIR and a GPU: compile, then run, in one go
    python benchmarks/gemm_suite.py [--suites square,llm] [--dtypes bf16,fp32] [--plot]
    # the split workflow (benchmarks/README.md): compile on the CPU machine, run on the GPU host
    python benchmarks/gemm_suite.py --compile-only BUNDLE [--suites ...] [--dtypes ...]
    python benchmarks/gemm_suite.py --run BUNDLE [--out r.json] [--plot]

Suites: square, llm, batched, odd (see SUITES), smoke (a quick one for tests), all (the first
four). Dtypes: fp32 (SIMT, no TF32), tf32 (f32 inputs, TF32 allowed), f16, bf16; C has the
input's type, accumulation is f32.

DeepGen's kernel for each shape uses the tuned database's config (deepgen.build.tuned_config)
and else the default heuristic, whatever path (SIMT, tensor cores) that config compiles to. A
TF32 shape is "n/a" for DeepGen until its kernel really uses TF32 tensor cores (mma/wgmma .tf32
in the PTX); torch is still timed with TF32 on.

Method (DESIGN.md, runtime/measure.py): one process; CUDA events through triton's do_bench
(median, warm-up, L2 flushed between calls) over input sets rotated past the L2 size, in
`--rounds` interleaved rounds of all runners (each figure: the median of its rounds);
`--max-autotune REGEX` adds torch.compile's max-autotune on the matching points; every
DeepGen result checked against a float64 reference on fresh random data with C poisoned (NaN);
torch and Triton checked the same way once. `--run` imports neither MLIR nor deepgen.compiler.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deepgen.spec import GemmSpec

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BUNDLE_FORMAT = "deepgen-suite-bundle/1"
RESULT_FORMAT = "deepgen-gemm-suite/1"


@dataclass(frozen=True)
class Shape:
    M: int
    N: int
    K: int
    batch: int = 1
    layout: str = "NN"

    @property
    def label(self) -> str:
        s = f"{self.M}x{self.N}x{self.K}"
        if self.batch > 1:
            s = f"{self.batch}x({s})"
        return s if self.layout == "NN" else f"{s} {self.layout}"

    @property
    def slug(self) -> str:
        s = f"{self.M}x{self.N}x{self.K}"
        if self.batch > 1:
            s = f"b{self.batch}-{s}"
        return s if self.layout == "NN" else f"{s}-{self.layout}"


_LLM_NK = [(4096, 4096), (14336, 4096), (4096, 14336)]
SUITES: dict[str, list[Shape]] = {
    "square": [Shape(n, n, n) for n in (1024, 2048, 4096, 8192)],
    "llm": [Shape(m, n, k) for m in (1, 16, 128, 2048, 4096) for (n, k) in _LLM_NK],
    "batched": [Shape(512, 512, 512, batch=64), Shape(2048, 2048, 2048, batch=8)],
    "odd": [Shape(1000, 1234, 777, layout="TN"), Shape(4097, 33, 1000),
            Shape(127, 4097, 33, layout="NT")],
    # Not part of "all": a quick suite that exercises every path of the tool (tests use it).
    "smoke": [Shape(256, 256, 256), Shape(1, 512, 1024), Shape(96, 64, 40, batch=3, layout="TT")],
}
ALL = ("square", "llm", "batched", "odd")
DTYPES = {"fp32": dict(dtype="f32"), "tf32": dict(dtype="f32", allow_tf32=True),
          "f16": dict(dtype="f16"), "bf16": dict(dtype="bf16")}

_TF32_MMA = re.compile(r"\b(?:wgmma\.mma_async|mma\.sync)\S*\.tf32\b")
_ANY_MMA = re.compile(r"\b(?:wgmma\.mma_async|mma\.sync)\b")


@dataclass(frozen=True)
class Entry:
    """One benchmark point: a shape in a dtype."""

    name: str
    suites: tuple[str, ...]
    shape: Shape
    dtype: str  # a DTYPES key

    @property
    def spec(self) -> GemmSpec:
        s = self.shape
        return GemmSpec(M=s.M, N=s.N, K=s.K, batch=s.batch, layout=s.layout, **DTYPES[self.dtype])


def parse_list(text: str, known, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in known]
    if bad or not items:
        raise SystemExit(f"--{what}: unknown {bad or text!r}; choose from {', '.join(known)}")
    return items


def entries(suites=("all",), dtypes=tuple(DTYPES)) -> list[Entry]:
    """The benchmark points of `suites` x `dtypes`, each shape once (dtype-major order)."""
    names = [n for s in suites for n in (ALL if s == "all" else (s,))]
    shapes: dict[Shape, list[str]] = {}
    for suite in names:
        for shape in SUITES[suite]:
            if suite not in shapes.setdefault(shape, []):
                shapes[shape].append(suite)
    return [Entry(f"{dt}-{shape.slug}", tuple(sl), shape, dt)
            for dt in dtypes for shape, sl in shapes.items()]


# ---------------------------------------------------------------------------------------------
# Compile (the CPU machine with MLIR)


def uses_tf32(ptx: str) -> bool:
    return bool(_TF32_MMA.search(ptx))


def engine(ptx: str) -> str:
    return "tensor cores" if _ANY_MMA.search(ptx) else "SIMT"


def git_commit(repo: Path = REPO) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--",
                                "compiler", "runtime", "dialects", "deepgen"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def compile_bundle(bundle: Path, points: list[Entry], target: str = "sm_90a",
                   log=print) -> dict:
    """Compile DeepGen's kernel of every point into bundle/<name>/, write bundle/index.json."""
    from deepgen.compiler import compile_artifact, default_config, toolchain_versions
    from deepgen.build import tuned_config

    bundle.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in points:
        spec = e.spec
        row = {"name": e.name, "suites": list(e.suites), "shape": e.shape.label,
               "dtype": e.dtype, "spec": spec.to_dict(), "kernel": None, "na": None,
               "error": None}
        tuned = tuned_config(spec, target)
        t = time.perf_counter()
        try:
            cfg = tuned if tuned is not None else default_config(spec, target).to_dict()
            row.update(config_source="tuned" if tuned is not None else "default", config=cfg)
            art = compile_artifact(spec, cfg, target, keep_ir=False)
        except Exception as ex:  # a point that does not compile is reported, not fatal
            row["error"] = f"compile failed: {type(ex).__name__}: {ex}"[:2000]
            log(f"{e.name:32s} {row['error']}")
            rows.append(row)
            continue
        row.update(engine=engine(art.assembly), compile_seconds=round(time.perf_counter() - t, 3),
                   launches=len(art.launches), binary_bytes=len(art.binary),
                   resources=art.resources)
        if spec.allow_tf32 and not uses_tf32(art.assembly):
            row["na"] = (f"no TF32 path yet: the {row['config_source']} config compiles to "
                         f"{row['engine']} without tf32 mma")
            log(f"{e.name:32s} n/a ({row['na']})")
        else:
            art.save(bundle / e.name)
            row["kernel"] = e.name
            log(f"{e.name:32s} {row['compile_seconds']:5.2f} s  {row['engine']}, "
                f"{row['config_source']} config {cfg.get('strategy', '')} BM={cfg.get('BM')} "
                f"BN={cfg.get('BN')} BK={cfg.get('BK')} split_k={cfg.get('split_k')}, "
                f"{len(art.binary) // 1024} KiB")
        rows.append(row)
    index = {"format": BUNDLE_FORMAT, "target": target,
             "created": _dt.datetime.now().isoformat(timespec="seconds"),
             "git_commit": git_commit(), "toolchain": toolchain_versions(),
             "host": platform.node(), "entries": rows}
    (bundle / "index.json").write_text(json.dumps(index, indent=1))
    return index


def bundle_bytes(bundle: Path) -> int:
    return sum(p.stat().st_size for p in Path(bundle).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# Run (the GPU host: runtime only)


def read_index(bundle: Path) -> dict:
    index = json.loads((Path(bundle) / "index.json").read_text())
    if index.get("format") != BUNDLE_FORMAT:
        raise SystemExit(f"{bundle}/index.json: not a {BUNDLE_FORMAT} bundle "
                         f"(made by `gemm_suite.py --compile-only`)")
    return index


def select(rows: list[dict], suites=None, dtypes=None, pattern: str | None = None) -> list[dict]:
    keep = []
    wanted = None if suites is None else {n for s in suites for n in (ALL if s == "all" else (s,))}
    for r in rows:
        if wanted is not None and not wanted.intersection(r["suites"]):
            continue
        if dtypes is not None and r["dtype"] not in dtypes:
            continue
        if pattern and not re.search(pattern, r["name"]):
            continue
        keep.append(r)
    return keep


def load_kernels(bundle: Path, rows: list[dict]) -> dict:
    """name -> deepgen.runtime Kernel for the rows that have one (runtime only, no MLIR)."""
    from deepgen.runtime.kernel import load

    return {r["name"]: load(Path(bundle) / r["kernel"]) for r in rows if r.get("kernel")}


def _load_triton():
    try:
        import triton  # noqa: F401
    except ImportError:
        return None
    path = Path(__file__).with_name("triton_matmul.py")
    name = "deepgen_bench_triton_matmul"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _check_output(run_one, spec: GemmSpec, poison=None) -> float:
    """Relative error of run_one(a, b) (which returns C) on fresh data, C poisoned first."""
    import torch

    from deepgen.runtime import measure

    a, b = measure.operand(spec, "A"), measure.operand(spec, "B")
    ref = measure.reference(a, b)
    if poison is not None:
        poison.fill_(float("nan"))
    out = run_one(a, b)
    torch.cuda.synchronize()
    return measure.rel_error(out, ref)


def compiled_max_autotune(spec: GemmSpec):
    """run_one(a, b) for torch.compile(mode="max-autotune-no-cudagraphs") of the matmul: what a
    PyTorch user reaches for (Inductor autotunes its Triton GEMM templates against cuBLAS and
    keeps the faster). Without CUDA graphs: the same GEMM choice as "max-autotune", but each
    call runs on the rotated inputs as the other runners do, not on copies into a graph."""
    import torch

    from deepgen.runtime import measure

    out_dt = measure.TORCH_DTYPES[spec.out_dtype]
    return torch.compile(lambda a, b: torch.matmul(a, b).to(out_dt),
                         mode="max-autotune-no-cudagraphs", dynamic=False)


def measure_entry(row: dict, kernel, tm, warmup_ms: float, rep_ms: float,
                  tune_rep_ms: float, rounds: int = 5, max_autotune: bool = False) -> dict:
    """Check DeepGen, torch (cuBLAS), Triton and optionally torch.compile max-autotune on one
    point, then time them in `rounds` interleaved rounds (median per runner: clocks drift
    under sustained load, so a ratio compares runners timed side by side); every failure is
    recorded."""
    import torch

    from deepgen.runtime import measure

    spec = GemmSpec.from_dict(row["spec"])
    tol = measure.tolerance(spec)
    res = {"name": row["name"], "suites": row["suites"], "shape": row["shape"],
           "dtype": row["dtype"], "spec": row["spec"], "flops": spec.flops, "tolerance": tol,
           "config_source": row.get("config_source"), "config": row.get("config"),
           "engine": row.get("engine")}
    torch.manual_seed(0)
    sets = measure.input_sets(spec)
    out_shape = (spec.M, spec.N) if spec.batch == 1 else (spec.batch, spec.M, spec.N)
    runs = {}  # key -> run_one(a, b), the runners that were checked (timed below)

    def checked(key: str, run_one, check):
        try:
            err = check()
            res[f"{key}_rel_err"] = err
            res[f"{key}_check"] = "ok" if err <= tol else f"FAIL rel_err {err:.2e} > {tol:.0e}"
            runs[key] = run_one
        except Exception as ex:  # keep going: one broken point must not end the suite
            res[f"{key}_check"] = f"error: {type(ex).__name__}: {ex}"[:500]
            res.setdefault(f"{key}_tflops", None)

    # DeepGen
    if row.get("error"):
        res["deepgen_check"] = row["error"][:500]
    elif row.get("na"):
        res["deepgen_check"], res["deepgen_na"] = "n/a", row["na"]
    else:
        c = torch.empty(out_shape, device="cuda", dtype=measure.TORCH_DTYPES[spec.out_dtype])
        checked("deepgen", lambda a, b: kernel(a, b, c), lambda: measure.check(kernel, spec))
        try:
            res["deepgen_local_bytes"] = max(d.get("local_bytes", 0)
                                             for d in kernel.driver_attributes())
        except Exception:  # informative only
            pass
    # torch (cuBLAS); TF32 on exactly when the spec allows it (set again before the timing)
    run_torch = measure.torch_baseline(spec)
    checked("torch", run_torch, lambda: _check_output(run_torch, spec))
    # Triton
    if tm is not None:
        ct = torch.empty(out_shape, device="cuda", dtype=measure.TORCH_DTYPES[spec.out_dtype])
        try:
            first = sets[:1]
            a0, b0 = first[0]
            cfg, tried = tm.tune(a0, b0, ct, spec.allow_tf32,
                                 lambda fn: measure.time_ms(lambda a, b: fn(), first,
                                                            warmup_ms=5, rep_ms=tune_rep_ms))
            res["triton_config"], res["triton_tried"] = list(cfg), tried
            run_tr = lambda a, b: tm.matmul(a, b, ct, cfg, spec.allow_tf32)
            checked("triton", run_tr, lambda: _check_output(run_tr, spec, poison=ct))
        except Exception as ex:
            res["triton_check"] = f"error: {type(ex).__name__}: {ex}"[:500]
    else:
        res["triton_check"] = "n/a (triton not importable)"
    if max_autotune:
        t = time.monotonic()
        try:
            torch.backends.cuda.matmul.allow_tf32 = bool(spec.allow_tf32)
            run_ma = compiled_max_autotune(spec)
            checked("max_autotune", run_ma, lambda: _check_output(run_ma, spec))
        except Exception as ex:
            res["max_autotune_check"] = f"error: {type(ex).__name__}: {ex}"[:500]
        res["max_autotune_compile_s"] = round(time.monotonic() - t, 1)
    # interleaved rounds
    torch.backends.cuda.matmul.allow_tf32 = bool(spec.allow_tf32)
    per_round = {key: [] for key in runs}
    for _ in range(rounds):
        for key in list(runs):
            try:
                per_round[key].append(measure.time_ms(runs[key], sets, warmup_ms, rep_ms))
            except Exception as ex:
                res[f"{key}_check"] = f"error: {type(ex).__name__}: {ex}"[:500]
                del runs[key]
    torch.backends.cuda.matmul.allow_tf32 = False
    for key, ts in per_round.items():
        if ts:
            ms = sorted(ts)[len(ts) // 2]
            res[f"{key}_ms"], res[f"{key}_tflops"] = ms, measure.tflops(spec, ms)
            res[f"{key}_rounds_ms"] = ts
    if res.get("deepgen_tflops") and res.get("torch_tflops"):
        res["ratio_vs_cublas"] = res["deepgen_tflops"] / res["torch_tflops"]
    if res.get("deepgen_tflops") and res.get("max_autotune_tflops"):
        res["ratio_vs_max_autotune"] = res["deepgen_tflops"] / res["max_autotune_tflops"]
    del sets
    torch.cuda.empty_cache()
    return res


def run_points(rows: list[dict], measure_one, budget_s: float | None, clock=time.monotonic,
               progress=print, on_result=None) -> list[dict]:
    """measure_one(row) for each row until `budget_s` has passed; later rows are recorded as
    skipped. on_result(results) runs after each row (partial JSON survives a kill)."""
    start, results = clock(), []
    for i, row in enumerate(rows):
        if budget_s is not None and clock() - start > budget_s:
            results.append({"name": row["name"], "suites": row["suites"], "shape": row["shape"],
                            "dtype": row["dtype"], "spec": row["spec"],
                            "skipped": f"time budget of {budget_s:.0f} s spent"})
            continue
        t = clock()
        res = measure_one(row)
        res["wall_s"] = round(clock() - t, 2)
        results.append(res)
        progress(f"[{i + 1}/{len(rows)} {clock() - start:6.1f} s] {_progress_line(res)}")
        if on_result is not None:
            on_result(results)
    return results


def _progress_line(r: dict) -> str:
    return (f"{r['name']:32s} DeepGen {_fmt(r.get('deepgen_tflops'))} torch "
            f"{_fmt(r.get('torch_tflops'))} Triton {_fmt(r.get('triton_tflops'))}  "
            f"check {r.get('deepgen_check')}")


def _fmt(x, width: int = 8, digits: int = 1) -> str:
    return f"{x:{width}.{digits}f}" if isinstance(x, (int, float)) else "-".rjust(width)


def device_info() -> dict:
    import torch

    info = {"device": torch.cuda.get_device_name(),
            "capability": "sm_%d%d" % torch.cuda.get_device_capability(),
            "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
            "python": platform.python_version(), "host": platform.node()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        info["driver_version"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        info["driver_version"] = None
    if not info["driver_version"]:
        try:
            m = re.search(r"Kernel Module\s+(\S+)", Path("/proc/driver/nvidia/version").read_text())
            info["driver_version"] = m.group(1) if m else None
        except OSError:
            pass
    try:
        import ctypes
        v = ctypes.c_int()
        ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(v))
        info["driver_cuda_version"] = f"{v.value // 1000}.{v.value % 1000 // 10}"
    except OSError:
        pass
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    import deepgen
    info["deepgen"] = deepgen.__version__
    return info


def default_out(device: str, when: _dt.datetime) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-") or "gpu"
    return RESULTS / f"gemm_suite-{slug}-{when:%Y-%m-%d-%H%M}.json"


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


def format_table(results: list[dict], title: str = "") -> str:
    head = (f"{'shape':24s} {'dtype':5s} {'DeepGen':>8s} {'torch':>8s} {'Triton':>8s} "
            f"{'DG/cuBLAS':>9s}  {'check':8s} config (d/t = default/tuned)")
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    ratios = []
    for r in results:
        if r.get("skipped"):
            lines.append(f"{r['shape']:24s} {r['dtype']:5s} skipped ({r['skipped']})")
            continue
        dg = r.get("deepgen_tflops")
        check = r.get("deepgen_check") or "-"
        if check == "n/a":
            dg_text = f"{'n/a':>8s}"
        else:
            dg_text = _fmt(dg)
        ratio = r.get("ratio_vs_cublas")
        if ratio is not None and check == "ok":  # a wrong result's speed does not count
            ratios.append(ratio)
        cfg = r.get("config") or {}
        cfg_text = ""
        if cfg and check != "n/a":
            eng = {"SIMT": " simt", "tensor cores": " tc"}.get(r.get("engine"), "")
            cfg_text = (f"{(r.get('config_source') or '?')[0]} {cfg.get('BM')}x{cfg.get('BN')}x"
                        f"{cfg.get('BK')} sk{cfg.get('split_k')}{eng}")
        check_text = _short(check)
        for key in ("torch", "triton"):
            if r.get(f"{key}_check") not in (None, "ok") and not str(
                    r.get(f"{key}_check")).startswith("n/a"):
                cfg_text += f" [{key} {_short(r[f'{key}_check'])}]"
        lines.append(f"{r['shape']:24s} {r['dtype']:5s} {dg_text} {_fmt(r.get('torch_tflops'))} "
                     f"{_fmt(r.get('triton_tflops'))} {_fmt(ratio, 9, 3)}  {check_text:8s} "
                     f"{cfg_text}".rstrip()
                     + (f"  max-autotune {r['max_autotune_tflops']:.1f}"
                        if r.get("max_autotune_tflops") else ""))
    lines.append("-" * len(head))
    if ratios:
        from deepgen.tuner.ranges import geomean
        geo = geomean(ratios)
        lines.append(f"TFLOP/s; DG/cuBLAS geometric mean over the {len(ratios)} points that "
                     f"check ok: {geo:.3f}")
    fails = [r["name"] for r in results if _failed(r)]
    lines.append(f"checks: {sum(1 for r in results if r.get('deepgen_check') == 'ok')} ok, "
                 f"{len(fails)} failed{(': ' + ', '.join(fails)) if fails else ''}, "
                 f"{sum(1 for r in results if r.get('deepgen_check') == 'n/a')} n/a, "
                 f"{sum(1 for r in results if r.get('skipped'))} skipped")
    return "\n".join(lines)


def _short(check: str) -> str:
    if check in ("ok", "n/a", "-"):
        return check
    for prefix, short in (("FAIL", "FAIL"), ("error", "ERROR"), ("compile failed", "NO BUILD")):
        if check.startswith(prefix):
            return short
    return check[:8]


def _failed(r: dict) -> bool:
    c = r.get("deepgen_check")
    return bool(c) and c not in ("ok", "n/a")


def plot(results: list[dict], path: Path, title: str) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot: matplotlib is not importable here; no PNG written")
        return None
    dtypes = [d for d in DTYPES if any(r["dtype"] == d for r in results)]
    fig, axes = plt.subplots(len(dtypes), 1, figsize=(14, 3.6 * len(dtypes)), squeeze=False)
    for ax, dt in zip(axes[:, 0], dtypes):
        rows = [r for r in results if r["dtype"] == dt and not r.get("skipped")]
        xs = range(len(rows))
        for j, (key, label) in enumerate((("deepgen", "DeepGen"), ("torch", "torch (cuBLAS)"),
                                          ("triton", "Triton"))):
            ax.bar([x + (j - 1) * 0.27 for x in xs], [r.get(f"{key}_tflops") or 0 for r in rows],
                   width=0.27, label=label)
        ax.set_xticks(list(xs), [r["shape"] for r in rows], rotation=35, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("TFLOP/s (log)")
        ax.set_title(f"{dt}")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_bundle(bundle: Path, out: Path | None = None, *, suites=None, dtypes=None,
               pattern: str | None = None, triton: bool = True, warmup_ms: float = 25,
               rep_ms: float = 40, tune_rep_ms: float = 20, budget_s: float | None = None,
               want_plot: bool = False, print_table: bool = True, rounds: int = 5,
               max_autotune: str | None = None) -> dict:
    """Measure every selected point of `bundle`; write the JSON (and PNG); return the doc."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--run needs an NVIDIA GPU that torch can see")
    index = read_index(bundle)
    rows = select(index["entries"], suites, dtypes, pattern)
    kernels = load_kernels(bundle, rows)
    tm = _load_triton() if triton else None
    when = _dt.datetime.now()
    info = device_info()
    out = out or default_out(info["device"], when)
    doc = {"format": RESULT_FORMAT, "date": when.isoformat(timespec="seconds"), **info,
           "git_commit": git_commit(), "bundle": {k: v for k, v in index.items() if k != "entries"},
           "method": {"timer": "triton.testing.do_bench median (CUDA events)" if _has_do_bench()
                      else "CUDA events median", "warmup_ms": warmup_ms, "rep_ms": rep_ms,
                      "rounds": rounds, "ratio": "median of the interleaved rounds per runner",
                      "max_autotune": max_autotune and ("torch.compile(mode='max-autotune-"
                                                        f"no-cudagraphs') on points matching "
                                                        f"{max_autotune!r}"),
                      "l2_rotation": "input sets > 2 x 50 MiB", "triton_tune_rep_ms": tune_rep_ms,
                      "check": "float64 reference, relative Frobenius error, C poisoned"},
           "results": []}

    def save(results):
        doc["results"] = results
        write_json(out, doc)

    t0 = time.monotonic()
    results = run_points(rows, lambda r: measure_entry(
        r, kernels.get(r["name"]), tm, warmup_ms, rep_ms, tune_rep_ms, rounds,
        bool(max_autotune) and re.search(max_autotune, r["name"]) is not None),
                         budget_s, on_result=save)
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    save(results)
    print(f"\nwrote {out}")
    if want_plot:
        png = plot(results, out.with_suffix(".png"), f"{info['device']}  {doc['date']}")
        if png:
            print(f"wrote {png}")
    if print_table:
        print()
        print(format_table(results, f"GEMM suite on {info['device']} (driver "
                                    f"{info.get('driver_version')}, torch {info['torch']}, "
                                    f"triton {info.get('triton')}), {doc['wall_s']} s"))
    return doc


def _has_do_bench() -> bool:
    return importlib.util.find_spec("triton") is not None


def add_bundle_modes(p: argparse.ArgumentParser, required: bool = False) -> None:
    """The split workflow's two modes (benchmarks/README.md), shared by the GPU scripts."""
    mode = p.add_mutually_exclusive_group(required=required)
    mode.add_argument("--compile-only", type=Path, metavar="BUNDLE",
                      help="compile every kernel into BUNDLE (needs MLIR, no GPU)")
    mode.add_argument("--run", type=Path, metavar="BUNDLE",
                      help="run a bundle (needs a GPU, no MLIR)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    add_bundle_modes(p)
    p.add_argument("--suites", default=None,
                   help=f"comma-separated, from {', '.join([*SUITES, 'all'])} (default: all; "
                        "with --run: every point of the bundle)")
    p.add_argument("--dtypes", default=None,
                   help=f"comma-separated, from {', '.join(DTYPES)} (default: all)")
    p.add_argument("--only", default=None, metavar="REGEX", help="only points whose name matches")
    p.add_argument("--target", default="sm_90a")
    p.add_argument("--out", type=Path, default=None,
                   help="result JSON (default benchmarks/results/gemm_suite-<device>-<date>.json)")
    p.add_argument("--plot", action="store_true", help="also write a PNG beside the JSON")
    p.add_argument("--no-triton", action="store_true", help="skip the Triton baseline")
    p.add_argument("--warmup-ms", type=float, default=25)
    p.add_argument("--rep-ms", type=float, default=40,
                   help="do_bench rep per runner and round")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved timing rounds per point (median per runner)")
    p.add_argument("--max-autotune", metavar="REGEX", default=None,
                   help="also time torch.compile(mode='max-autotune-no-cudagraphs') on the "
                        "points whose name matches (each compiles and autotunes: ~30 s)")
    p.add_argument("--tune-rep-ms", type=float, default=20,
                   help="do_bench rep per Triton candidate config")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop measuring after this many seconds (later points: skipped)")
    a = p.parse_args(argv)
    suites = parse_list(a.suites, [*SUITES, "all"], "suites") if a.suites else None
    dtypes = parse_list(a.dtypes, list(DTYPES), "dtypes") if a.dtypes else None
    run_kw = dict(triton=not a.no_triton, warmup_ms=a.warmup_ms, rep_ms=a.rep_ms,
                  tune_rep_ms=a.tune_rep_ms, budget_s=a.budget_s, want_plot=a.plot,
                  rounds=a.rounds, max_autotune=a.max_autotune)
    if a.run:
        doc = run_bundle(a.run, a.out, suites=suites, dtypes=dtypes, pattern=a.only, **run_kw)
        return 1 if any(_failed(r) for r in doc["results"]) else 0
    points = entries(suites or ("all",), dtypes or tuple(DTYPES))
    if a.only:
        points = [e for e in points if re.search(a.only, e.name)]
    if a.compile_only:
        t = time.perf_counter()
        index = compile_bundle(a.compile_only, points, a.target)
        n = sum(1 for r in index["entries"] if r["kernel"])
        print(f"{n} kernels ({len(index['entries'])} points) in {a.compile_only}: "
              f"{bundle_bytes(a.compile_only) / 2**20:.1f} MiB, {time.perf_counter() - t:.0f} s")
        return 1 if any(r["error"] for r in index["entries"]) else 0
    with tempfile.TemporaryDirectory(prefix="deepgen-suite-") as tmp:
        compile_bundle(Path(tmp), points, a.target)
        doc = run_bundle(Path(tmp), a.out, **run_kw)
    return 1 if any(_failed(r) for r in doc["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
