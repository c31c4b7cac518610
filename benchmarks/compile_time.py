"""Compile time of DeepGen kernels on this (CPU) machine: compile_artifact per representative
spec (SIMT and tensor-core kernels), N runs each after one discarded warm-up compile; min,
median and max wall time, and the median time per stage (module build, each DeepGen pass,
upstream lowering, PTX, ptxas).

    python benchmarks/compile_time.py [--runs 7] [--out benchmarks/results/compile_time-<host>-<date>.json]
    python benchmarks/compile_time.py --vs-triton [--runs 5] [--out ...]

--vs-triton: DeepGen against Triton (the GEMM suite's matmul, benchmarks/triton_matmul.py,
compiled for sm_90 by triton.compile with GPUTarget("cuda", 90, 32): no GPU needed), same tiles
(TILES), side by side. Each compiler runs in its own long-lived worker process (so neither
pays for imports or the other's libraries), warm: one discarded compile per tile first, then
`--runs` rounds, interleaved (round r: every tile by both, the order of the two alternating),
each compile from nothing: Triton with TRITON_CACHE_DIR a fresh empty directory, DeepGen's
compile_artifact(keep_ir=False) directly (no kernel cache). Reported: every run's seconds, the
median per tile and compiler, the ratio DeepGen/Triton of the medians, the load averages.

Stages are timed by wrapping the compiler's own functions (gemm_module, run_pipeline, the
DeepGen passes, to_ptx, assemble) for the duration of the measurement, so the numbers are those
of the real compile_artifact; Triton's the same way (its backend's make_ttir .. make_cubin).

    python benchmarks/compile_time.py --vs-triton --mma-sync-ptxas-opt 2 [--out ...]
    python benchmarks/compile_time.py --ptxas-ab BUNDLE

--mma-sync-ptxas-opt N: the comparison with the mma_sync kernels assembled at ptxas -O<N>
instead of the strategy's level (compiler/strategies/mma_sync PTXAS_OPT_LEVEL). --ptxas-ab:
a GPU bundle of the mma_sync kernels of AB_POINTS assembled at -O3 and at -O2 (the same PTX),
in benchmarks/tensor_core_goal.py's bundle format, so that the GPU host checks and times both
against cuBLAS in interleaved rounds: `python benchmarks/tensor_core_goal.py --run BUNDLE`.
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

    from deepgen.compiler import backend_nvidia, driver, strategies
    from deepgen.compiler.passes import REGISTRY

    getattr(strategies, "load_passes", lambda: None)()  # the strategies' passes, registered
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


# (label, spec, DeepGen config: (strategy, overrides of its default for the shape), Triton
# (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages)): the same tile and stages on both sides (the
# same warps too, but for wgmma: 3 warpgroups there, Triton's 8 warps for 128x256). DeepGen's
# 16-row default splits K in 4 (a second, reduction kernel); Triton's suite kernel has no
# split-K.
TILES = [
    ("bf16 4096^3 wgmma 128x256x64 (default)", dict(M=4096, N=4096, K=4096, dtype="bf16"),
     ("wgmma", None), (128, 256, 64, 8, 4)),
    ("bf16 4096^3 256x128x64", dict(M=4096, N=4096, K=4096, dtype="bf16"), ("mma_sync", None),
     (256, 128, 64, 8, 4)),
    ("bf16 4096^3 128x128x64", dict(M=4096, N=4096, K=4096, dtype="bf16"),
     ("mma_sync", {"BM": 128, "warps_m": 2, "warps_n": 2}), (128, 128, 64, 4, 4)),
    ("bf16 16x4096x4096 16x128x32", dict(M=16, N=4096, K=4096, dtype="bf16"),
     ("mma_sync", None), (16, 128, 32, 4, 3)),
    ("f32 4096^3 SIMT 128x128x8", dict(M=4096, N=4096, K=4096, dtype="f32"), ("simt", None),
     (128, 128, 8, 8, 2)),
]


class _DeepGenWorker:
    name = "deepgen"

    def __init__(self):
        from deepgen.compiler import compile_artifact, strategies
        from deepgen.compiler.strategies import mma_sync
        from deepgen.compiler.target import get_target

        if os.environ.get(_PTXAS_OPT_ENV):  # --mma-sync-ptxas-opt
            mma_sync.PTXAS_OPT_LEVEL = int(os.environ[_PTXAS_OPT_ENV])
        self.mma_sync_ptxas_opt = mma_sync.PTXAS_OPT_LEVEL

        self.compile_artifact = compile_artifact
        self.cases = []
        for _label, fields, (strategy, overrides), _triton in TILES:
            spec = GemmSpec(**fields)
            cfg = strategies.get(strategy).default_config(spec, get_target("sm_90a"))
            self.cases.append((spec, cfg.replace(**overrides) if overrides else cfg))

    def compile(self, i: int) -> dict:
        spec, cfg = self.cases[i]
        with stage_timer() as stages:  # wraps a few functions: microseconds per compile
            c, t = _cpu_seconds(), time.perf_counter()
            art = self.compile_artifact(spec, cfg, "sm_90a", keep_ir=False)
            seconds, cpu = time.perf_counter() - t, _cpu_seconds() - c
        return {"seconds": seconds, "cpu_s": cpu, "config": cfg.to_dict(),
                "kernels": len(art.launches),
                "resources": art.resources, "engine": _engine(art.assembly),
                "stages": dict(stages)}

    def versions(self) -> dict:
        from deepgen.compiler import toolchain_versions
        return {**toolchain_versions(), "mma_sync_ptxas_opt": self.mma_sync_ptxas_opt}


class _TritonWorker:
    """triton.compile of triton_matmul.matmul_kernel for sm_90, specialized as a launch on
    row-major tensors of the spec's shape would specialize it (JITFunction's own binder)."""
    name = "triton"

    def __init__(self):
        import tempfile

        import torch
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource, make_backend
        from triton.runtime.jit import create_function_from_signature

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import triton_matmul as tm

        self.tm, self.triton, self.ASTSource, self.tempfile = tm, triton, ASTSource, tempfile
        self.resources_seen = set()  # tiles whose cubin's resources were read (the first compile)
        self.target = GPUTarget("cuda", 90, 32)
        self.backend = make_backend(self.target)
        kern = tm.matmul_kernel
        self.binder = create_function_from_signature(kern.signature, kern.params, self.backend)
        dtypes = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
        self.cases = []
        for _label, fields, _overrides, cfg in TILES:
            dt = dtypes[fields.get("dtype", "f32")]
            m, n, k = fields["M"], fields["N"], fields["K"]
            tensors = (torch.empty(m, k, dtype=dt), torch.empty(k, n, dtype=dt),
                       torch.empty(m, n, dtype=dt))
            self.cases.append((tensors, (m, n, k), cfg))

    def _source(self, i: int):
        from triton import knobs

        (a, b, c), (m, n, k), (bm, bn, bk, warps, stages) = self.cases[i]
        tm = self.tm
        kwargs = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=tm.GROUP_M,
                      PRECISION=tm.precision(a.dtype, False), num_warps=warps,
                      num_stages=stages, debug=False,
                      instrumentation_mode=knobs.compilation.instrumentation_mode,
                      fpsan_homomorphic_casts=knobs.compilation.fpsan_homomorphic_casts)
        bound, specialization, options = self.binder(a, b, c, m, n, k, *tm._3d(a), *tm._3d(b),
                                                     *tm._3d(c), **kwargs)
        options, signature, constexprs, attrs = tm.matmul_kernel._pack_args(
            self.backend, kwargs, bound, specialization, options)
        return self.ASTSource(tm.matmul_kernel, signature, constexprs, attrs), options

    def compile(self, i: int) -> dict:
        import shutil

        cache = self.tempfile.mkdtemp(prefix="triton-cache-")
        os.environ["TRITON_CACHE_DIR"] = cache  # a fresh, empty cache for every compile
        try:
            with self._stage_timer() as stages:
                c, t = _cpu_seconds(), time.perf_counter()
                src, options = self._source(i)
                kernel = self.triton.compile(src, target=self.target, options=options.__dict__)
                seconds, cpu = time.perf_counter() - t, _cpu_seconds() - c
            cached = sum(len(f) for _, _, f in os.walk(cache))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        md = kernel.metadata
        extra = {}
        if i not in self.resources_seen:  # once per tile (a cuobjdump run, outside the timing)
            self.resources_seen.add(i)
            extra["resources"] = _cubin_resources(kernel.asm.get("cubin"))
        return {"seconds": seconds, "cpu_s": cpu, "cache_files_written": cached,
                "num_warps": md.num_warps,
                "num_stages": md.num_stages, "shared": md.shared,
                "engine": _engine(kernel.asm["ptx"]), "stages": stages, **extra}

    @contextlib.contextmanager
    def _stage_timer(self):
        """Seconds per stage of Triton's NVIDIA backend: make_ttir, make_ttgir, make_llir
        (TTGIR -> LLVM IR), make_ptx (LLVM's NVPTX back end), make_cubin (ptxas)."""
        from triton.backends.nvidia.compiler import CUDABackend

        times: dict[str, float] = {}
        names = ("make_ttir", "make_ttgir", "make_llir", "make_ptx", "make_cubin")
        originals = {n: CUDABackend.__dict__[n] for n in names if n in CUDABackend.__dict__}

        def timed(name, fn):
            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    times[name] = times.get(name, 0.0) + time.perf_counter() - t
            return wrapper

        for name, attr in originals.items():
            static = isinstance(attr, staticmethod)
            wrapped = timed(name, attr.__func__ if static else attr)
            setattr(CUDABackend, name, staticmethod(wrapped) if static else wrapped)
        try:
            yield times
        finally:
            for name, attr in originals.items():
                setattr(CUDABackend, name, attr)

    @staticmethod
    def versions() -> dict:
        import triton
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(90)
        return {"triton": triton.__version__, "ptxas": ptxas.version, "ptxas_path": ptxas.path}


def _stage_medians(runs: list[dict]) -> dict:
    labels = list(dict.fromkeys(k for r in runs for k in r))
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in labels}


def _git_commit() -> str | None:
    """HEAD of the checkout measured ("+dirty" when the compiler's sources differ from it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from gemm_suite import git_commit
        return git_commit()
    except Exception:  # noqa: BLE001 - a record without a commit is still a record
        return None


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (ptxas): on a shared machine the
    CPU time of a compile moves less with the load than its wall time does."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _cubin_resources(cubin: bytes | None) -> dict | None:
    """{"registers", "local_bytes"} of a cubin's kernel, by the cuobjdump Triton ships
    (`-res-usage`); None when it cannot be read."""
    import subprocess
    import tempfile

    try:
        from triton.backends.nvidia.compiler import get_ptxas
        tool = Path(get_ptxas(90).path).parent / "cuobjdump"
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin)
            f.flush()
            out = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True,
                                 text=True, check=True).stdout
        m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", out)
        return {"registers": int(m[1]), "stack_bytes": int(m[2]), "local_bytes": int(m[3])}
    except Exception:  # noqa: BLE001 - a figure beside the timing, never a failure
        return None


def _engine(ptx: str) -> str:
    if re.search(r"\bwgmma", ptx):
        return "wgmma"
    return "mma.sync" if re.search(r"\bmma\.sync", ptx) else "SIMT"


def worker_main(kind: str) -> int:
    """A worker: JSON requests on stdin ({"tile": i} or {"versions": 1}), one JSON reply each."""
    import warnings

    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, said aloud
    warnings.simplefilter("ignore")
    worker = (_DeepGenWorker if kind == "deepgen" else _TritonWorker)()
    out = sys.stdout
    sys.stdout = sys.stderr  # compilers' chatter stays off the reply channel
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = worker.versions() if "versions" in req else worker.compile(req["tile"])
        except Exception as e:  # noqa: BLE001 - reported to the parent
            reply = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


_PTXAS_OPT_ENV = "DEEPGEN_BENCH_MMA_SYNC_PTXAS_OPT"  # the DeepGen worker's --mma-sync-ptxas-opt


class _Worker:
    def __init__(self, kind: str, env: dict | None = None):
        import subprocess

        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})

    def ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"{self.kind}: {reply['error']}")
        return reply

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def vs_triton(runs: int, out: Path | None, only: str | None = None,
              mma_sync_ptxas_opt: int | None = None) -> int:
    chosen = [i for i, t in enumerate(TILES) if only is None or re.search(only, t[0])]
    load_before = os.getloadavg()
    env = {_PTXAS_OPT_ENV: str(mma_sync_ptxas_opt)} if mma_sync_ptxas_opt is not None else {}
    workers = {kind: _Worker(kind, env if kind == "deepgen" else None)
               for kind in ("deepgen", "triton")}
    try:
        first = {k: {i: w.ask({"tile": i}) for i in chosen} for k, w in workers.items()}
        rounds = []
        for r in range(runs):
            order = ("deepgen", "triton") if r % 2 == 0 else ("triton", "deepgen")
            for i in chosen:
                label = TILES[i][0]
                for kind in order:
                    reply = workers[kind].ask({"tile": i})
                    rounds.append({"round": r, "tile": label, "compiler": kind,
                                   "seconds": reply["seconds"], "cpu_s": reply["cpu_s"],
                                   "stages_s": reply["stages"],
                                   "load_average_1min": os.getloadavg()[0]})
            print(f"round {r + 1}/{runs}: " + ", ".join(
                f"{x['compiler'][0]}{x['seconds']:.2f}" for x in rounds if x["round"] == r),
                flush=True)
        versions = {k: w.ask({"versions": 1}) for k, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    load_after = os.getloadavg()
    tiles = []
    for i in chosen:
        label, fields, _overrides, triton_cfg = TILES[i]
        times = {k: [x["seconds"] for x in rounds if x["tile"] == label and x["compiler"] == k]
                 for k in workers}
        med = {k: statistics.median(v) for k, v in times.items()}
        cpu = {k: statistics.median(x["cpu_s"] for x in rounds if x["tile"] == label
                                    and x["compiler"] == k) for k in workers}
        d, t = first["deepgen"][i], first["triton"][i]
        tiles.append({
            "tile": label, "spec": GemmSpec(**fields).to_dict(),
            "deepgen_config": d["config"], "triton_config": dict(zip(
                ("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages"), triton_cfg)),
            "deepgen_kernels": d["kernels"], "deepgen_engine": d["engine"],
            "triton_engine": t["engine"], "deepgen_resources": d["resources"],
            "triton_resources": t.get("resources"),
            "triton_shared": t.get("shared"),
            "triton_cache_files_written": t.get("cache_files_written"),
            "first_compile_in_worker_s": {"deepgen": d["seconds"], "triton": t["seconds"]},
            "runs_s": times, "median_s": med, "min_s": {k: min(v) for k, v in times.items()},
            "ratio_median": med["deepgen"] / med["triton"],
            # CPU seconds (the process and its ptxas): less moved by other work on the machine
            "cpu_median_s": cpu, "ratio_cpu_median": cpu["deepgen"] / cpu["triton"],
            # the same round's two compiles (back to back): the spread says how noisy it was
            "ratio_rounds": [d_ / t_ for d_, t_ in zip(times["deepgen"], times["triton"])],
            "deepgen_stages_median_s": _stage_medians(
                [x["stages_s"] for x in rounds if x["tile"] == label and x["compiler"] == "deepgen"]),
            "triton_stages_median_s": _stage_medians(
                [x["stages_s"] for x in rounds if x["tile"] == label and x["compiler"] == "triton"]),
            "target_met": med["deepgen"] <= 0.5 * med["triton"]})
    when = _dt.datetime.now()
    host = re.sub(r"[^A-Za-z0-9]+", "-", platform.node()).strip("-") or "host"
    out = out or RESULTS / f"compile_time-{host}-{when:%Y-%m-%d}.json"
    doc = {"format": "deepgen-compile-time-vs-triton/1", "date": when.isoformat(timespec="seconds"),
           "host": platform.node(), "cpu": _cpu_name(), "cpus": os.cpu_count(),
           "python": platform.python_version(), "git_commit": _git_commit(),
           "deepgen_toolchain": versions["deepgen"],
           "triton": versions["triton"], "load_average_before": load_before,
           "load_average_after": load_after,
           "method": f"one worker process per compiler, warm (a discarded compile per tile "
                     f"first), {runs} interleaved rounds (order alternating), fresh caches: "
                     "Triton TRITON_CACHE_DIR a new empty directory per compile, DeepGen "
                     "compile_artifact(keep_ir=False) (no kernel cache); target sm_90a "
                     "(DeepGen) / GPUTarget('cuda', 90, 32) (Triton)",
           "target": "DeepGen median <= 0.5 x Triton median, every tile",
           "mma_sync_ptxas_opt": versions["deepgen"].get("mma_sync_ptxas_opt"),
           "tiles": tiles, "runs": rounds}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nwrote {out}\n")
    print(f"compile time, median of {runs} interleaved runs (s); load average before "
          f"{load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"{'tile':40s} {'DeepGen':>8s} {'Triton':>8s} {'ratio':>6s} {'rounds':>11s} {'cpu':>5s}   "
          "DeepGen: passes, lowering, to PTX, ptxas | Triton: ttir+ttgir, llir, ptx, cubin")
    for row in tiles:
        st, tt = row["deepgen_stages_median_s"], row["triton_stages_median_s"]
        passes = sum(v for k, v in st.items() if k.startswith("deepgen-") or k == "build module")
        spread = f"{min(row['ratio_rounds']):.2f}-{max(row['ratio_rounds']):.2f}"
        print(f"{row['tile']:40s} {row['median_s']['deepgen']:8.3f} "
              f"{row['median_s']['triton']:8.3f} {row['ratio_median']:6.2f} {spread:>11s} "
              f"{row['ratio_cpu_median']:5.2f}   "
              f"{passes:.3f} {st.get('upstream lowering', 0):.3f} "
              f"{st.get('to PTX (gpu-module-to-binary)', 0):.3f} {st.get('ptxas', 0):.3f} | "
              f"{tt.get('make_ttir', 0) + tt.get('make_ttgir', 0):.3f} "
              f"{tt.get('make_llir', 0):.3f} {tt.get('make_ptx', 0):.3f} "
              f"{tt.get('make_cubin', 0):.3f}" + ("" if row["target_met"] else "  (> 0.5)"))
    return 0


# --ptxas-ab: mma_sync kernels (the strategy's default for the shape, with overrides) whose
# SASS at ptxas -O2 is compared on the GPU with -O3's: the two tiles of TILES, the f16 and
# long-K twins, and the suite's kinds of mma_sync defaults (split-K, 16-row, odd, tf32).
AB_POINTS = [
    ("bf16_4096^3_256x128x64", dict(M=4096, N=4096, K=4096, dtype="bf16"), None),
    ("bf16_4096^3_128x128x64", dict(M=4096, N=4096, K=4096, dtype="bf16"),
     {"BM": 128, "warps_m": 2, "warps_n": 2}),
    ("f16_4096^3_256x128x64", dict(M=4096, N=4096, K=4096, dtype="f16"), None),
    ("f16_4096^3_128x128x64", dict(M=4096, N=4096, K=4096, dtype="f16"),
     {"BM": 128, "warps_m": 2, "warps_n": 2}),
    ("bf16_2048x4096x14336_256x128x64", dict(M=2048, N=4096, K=14336, dtype="bf16"), None),
    ("bf16_128x4096x4096", dict(M=128, N=4096, K=4096, dtype="bf16"), None),
    ("bf16_16x4096x4096", dict(M=16, N=4096, K=4096, dtype="bf16"), None),
    ("bf16_1000x1234x777_TN", dict(M=1000, N=1234, K=777, dtype="bf16", layout="TN"), None),
    ("bf16_4097x33x1000", dict(M=4097, N=33, K=1000, dtype="bf16"), None),
    ("f16_127x4097x33_NT", dict(M=127, N=4097, K=33, dtype="f16", layout="NT"), None),
    ("tf32_4096^3", dict(M=4096, N=4096, K=4096, dtype="f32", allow_tf32=True), None),
]
AB_LEVELS = (3, 2)


def ptxas_ab_bundle(bundle: Path, only: str | None = None) -> int:
    """Compile AB_POINTS with the mma_sync kernels assembled at each of AB_LEVELS (the same
    PTX) into `bundle`, in tensor_core_goal.py's format (variant "ptxas-O<n>"); ab.json
    beside it: per variant the resources, the ptxas seconds and the SASS's sha256."""
    import hashlib

    from deepgen.compiler import compile_artifact, strategies
    from deepgen.compiler.strategies import mma_sync
    from deepgen.compiler.target import get_target

    bundle.mkdir(parents=True, exist_ok=True)
    index, summary = [], []
    saved = mma_sync.PTXAS_OPT_LEVEL
    try:
        for name, fields, overrides in AB_POINTS:
            if only and not re.search(only, name):
                continue
            spec = GemmSpec(**fields)
            cfg = strategies.get("mma_sync").default_config(spec, get_target("sm_90a"))
            cfg = cfg.replace(**overrides) if overrides else cfg
            ptx = None
            for level in AB_LEVELS:
                mma_sync.PTXAS_OPT_LEVEL = level
                with stage_timer() as stages:
                    art = compile_artifact(spec, cfg, "sm_90a", keep_ir=False)
                if ptx is not None and art.assembly != ptx:
                    raise RuntimeError(f"{name}: the PTX differs between ptxas levels")
                ptx = art.assembly
                variant = f"ptxas-O{level}"
                art.save(bundle / f"{name}-{variant}")
                index.append({"point": name, "variant": variant, "dir": f"{name}-{variant}"})
                row = {"point": name, "variant": variant, "config": cfg.to_dict(),
                       "resources": art.resources, "ptxas_s": stages.get("ptxas"),
                       "cubin_sha256": hashlib.sha256(art.binary).hexdigest()}
                summary.append(row)
                print(f"{name:34s} {variant:9s} ptxas {row['ptxas_s']:.2f} s "
                      f"{ {k: v['registers'] for k, v in art.resources.items()} } spills "
                      f"{ {k: v['spill_stores'] for k, v in art.resources.items()} }", flush=True)
    finally:
        mma_sync.PTXAS_OPT_LEVEL = saved
    (bundle / "index.json").write_text(json.dumps(index, indent=1))
    (bundle / "ab.json").write_text(json.dumps({"git_commit": _git_commit(), "variants": summary},
                                               indent=1))
    print(f"\n{len(index)} kernels in {bundle}; on the GPU host: "
          f"python benchmarks/tensor_core_goal.py --run {bundle} --rounds 7")
    return 0


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
    p.add_argument("--runs", type=int, default=None,
                   help="runs per spec (default 7), or rounds with --vs-triton (default 5)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--vs-triton", action="store_true",
                   help="DeepGen against Triton on TILES, side by side (see the module's doc)")
    p.add_argument("--only", metavar="REGEX", help="--vs-triton: only the tiles whose label "
                                                   "matches (--ptxas-ab: the points)")
    p.add_argument("--mma-sync-ptxas-opt", type=int, choices=(0, 1, 2, 3), default=None,
                   help="--vs-triton: assemble the mma_sync kernels at ptxas -O<N> instead of "
                        "the strategy's level")
    p.add_argument("--ptxas-ab", type=Path, metavar="BUNDLE",
                   help="write a GPU bundle of AB_POINTS at ptxas -O3 and -O2 (--only filters)")
    p.add_argument("--worker", choices=("deepgen", "triton"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker_main(a.worker)
    if a.ptxas_ab:
        return ptxas_ab_bundle(a.ptxas_ab, a.only)
    if a.vs_triton:
        return vs_triton(a.runs or 5, a.out, a.only, a.mma_sync_ptxas_opt)
    a.runs = a.runs or 7
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
