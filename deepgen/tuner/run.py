"""A tune run: tuning config -> candidates -> compile -> benchmark -> results, resumable.

Everything lands in one directory (the bundle): index.json, kernels/<id>/, journal.jsonl,
results.json. A run that finds a journal there refuses to start unless told to resume; a
resumed run skips every candidate the journal says is finished (compiled, or failed to
compile; benchmarked, or failed there) and redoes the rest.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import results as results_mod
from .journal import Journal, latest, read_journal
from .manifest import Candidate, bundle_size, load_index, write_index

WRITE_EVERY_S = 20.0  # rewrite results.json this often while benchmarking


class RunError(RuntimeError):
    """The run cannot start or go on; the message says what to do."""


@dataclass
class Options:
    out: Path
    workers: int = 2  # compile processes (Ray: CPUs of a local instance)
    resume: bool = False
    top: int = 5
    compile_only: bool = False
    max_candidates: int | None = None  # per shape; overrides the config's
    ray: str | None = None  # None: local processes; "local" or a Ray address
    target: str | None = None  # overrides the config's
    compile_timeout: float = 300.0
    bench_timeout: float = 120.0
    gpus: int | None = None  # None: every visible GPU
    keep_ptx: bool = False
    dry_run: bool = False
    progress: bool = True
    bench_worker: tuple | None = None  # (fn, init) replacing the GPU worker: tests use fakes


def log(*parts) -> None:
    print(*parts, flush=True)


# -- planning (needs the compiler's validator, not MLIR passes) --------------------------------

def plan(config_path, opts: Options):
    """(tuning config, shape entries for index.json, candidates), the space reports printed."""
    from deepgen.compiler.config import default_config

    from . import configfile, space

    cfg = configfile.load(config_path, opts.target)
    for note in cfg.notes:
        log(f"note: {cfg.path}: {note}")
    limit = opts.max_candidates or cfg.max_candidates
    shapes, candidates = [], []
    for spec in cfg.specs:
        if spec.dynamic_m:  # a range of M: the range path's wgmma configs (tuner/ranges.py)
            from . import ranges

            walk = ranges.RangeSpace(spec, cfg.space, cfg.target, cfg.base)
            base_config = ranges.default_config(spec, cfg.target)
        else:
            walk = space.Space(spec, cfg.space, cfg.target, cfg.base)
            base_config = default_config(spec, cfg.target).to_dict()
        chosen = [Candidate(spec, c.to_dict(), cfg.target)
                  for c in space.sample(walk, limit, cfg.seed)]
        # The heuristic's own pick is always measured: the tuned result never loses to it.
        default = Candidate(spec, base_config, cfg.target, True)
        same = next((c for c in chosen if c.id == default.id), None)
        if same is not None:
            same.default = True
        else:
            chosen.append(default)
        for line in walk.report.lines():
            log(line)
        if limit is not None and walk.report.kept > limit:
            log(f"  sampled {limit} of {walk.report.kept} (seed {cfg.seed})")
        shapes.append({"key": walk.report.shape, "spec": spec.to_dict(),
                       "space": walk.report.to_dict(), "candidates": len(chosen)})
        candidates += chosen
    return cfg, shapes, candidates


# -- compiling -----------------------------------------------------------------------------------

def _open_journal(out: Path, resume: bool, stage: str) -> tuple[Journal, dict]:
    records = read_journal(out)
    finished = latest(records, stage)
    if finished and not resume:
        raise RunError(f"{out} already holds a run ({len(finished)} {stage} records in "
                       f"journal.jsonl): pass --resume to continue it, or choose another --out")
    return Journal(out), finished


def compile_candidates(out: Path, candidates: list[Candidate], opts: Options) -> None:
    journal, finished = _open_journal(out, opts.resume, "compile")
    done = {i for i, r in finished.items()
            if not r.get("ok") or (out / "kernels" / i / "kernel.json").exists()}
    tasks = [{"id": c.id, "spec": c.spec.to_dict(), "config": c.config, "target": c.target,
              "keep_ptx": opts.keep_ptx, "out": str(out / c.dir)}
             for c in candidates if c.id not in done]
    if done:
        log(f"resume: {len(done)} candidates already compiled (or failed), {len(tasks)} to go")
    if opts.ray:
        from . import ray_backend

        records = ray_backend.compile_ray(tasks, opts.ray, opts.workers, opts.compile_timeout)
    else:
        from .compiling import compile_pool

        records = compile_pool(tasks, opts.workers, timeout=opts.compile_timeout)
    t0, failed = time.monotonic(), 0
    with journal, _progress(len(tasks), "compile", opts) as bar:
        for rec in records:
            journal.append(rec)
            failed += not rec.get("ok")
            bar.update(1)
            bar.set_postfix(failed=failed, refresh=False)
    if tasks:
        log(f"compiled {len(tasks) - failed}/{len(tasks)} in {time.monotonic() - t0:.1f} s "
            f"with {opts.workers} workers")


def _progress(total: int, what: str, opts: Options):
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="kernel", file=sys.stderr, mininterval=1.0,
                disable=not opts.progress or total == 0, dynamic_ncols=True)


def _compile_summary(candidates: list[Candidate], out: Path) -> None:
    ok = [c for c in candidates if c.compile.get("ok")]
    bad = Counter(results_mod.first_line(c.compile.get("error", ""))
                  for c in candidates if c.compile and not c.compile.get("ok"))
    secs = [c.compile["seconds"] for c in ok if c.compile.get("seconds")]
    mean = sum(secs) / len(secs) if secs else 0.0
    log(f"{len(ok)}/{len(candidates)} candidates compiled (mean {mean:.2f} s each); "
        f"bundle {out}: {bundle_size(out) / 2**20:.1f} MiB")
    for err, n in bad.most_common(5):
        log(f"  {n:>6} failed: {err}")


def tune(config_path, opts: Options) -> int:
    out = Path(opts.out)
    cfg, shapes, candidates = plan(config_path, opts)
    log(f"{len(candidates)} candidates for {len(shapes)} shapes on {cfg.target}")
    if opts.dry_run:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    extra = {"config_file": str(config_path), "target": cfg.target}
    write_index(out, cfg.name, shapes, candidates, extra)  # a killed run still leaves it
    compile_candidates(out, candidates, opts)
    write_index(out, cfg.name, shapes, candidates, extra)
    _compile_summary(candidates, out)
    if opts.compile_only:
        log(f"benchmark it on a GPU host: deepgen bench {out} --out RESULTS_DIR")
        return 0
    return bench(out, out, opts)


# -- benchmarking (the runtime alone: no MLIR) ------------------------------------------------

def bench(bundle, out, opts: Options) -> int:
    from .benching import bench_local, bench_tasks, gpu_count

    bundle, out = Path(bundle), Path(out)
    index, candidates = load_index(bundle)
    out.mkdir(parents=True, exist_ok=True)
    journal, finished = _open_journal(out, opts.resume, "bench")
    tasks = bench_tasks(bundle, candidates, set(finished))
    if finished:
        log(f"resume: {len(finished)} candidates already benchmarked, {len(tasks)} to go")
    if opts.ray:
        from . import ray_backend

        runs = ray_backend.bench_ray(tasks, opts.ray, opts.bench_timeout)
    else:
        gpus = opts.gpus if opts.gpus is not None else (1 if opts.bench_worker else gpu_count())
        if gpus < 1 and tasks:
            raise RunError("no CUDA GPU visible: benchmark on a GPU host "
                           f"(`deepgen bench {bundle}`), or compile only (--compile-only)")
        fn, init = opts.bench_worker or (None, None)
        runs = bench_local(tasks, gpus, opts.bench_timeout, **({"fn": fn, "init": init}
                                                                if fn else {}))
    workers = f"ray {opts.ray}" if opts.ray else gpus
    t0, last, bad = time.monotonic(), time.monotonic(), 0
    try:
        with journal, _progress(len(tasks), "bench", opts) as bar:
            for task, rec in runs:
                journal.append({**rec, "id": task["id"], "stage": "bench"})
                bad += not rec.get("ok")
                bar.update(1)
                bar.set_postfix(failed=bad, refresh=False)
                if time.monotonic() - last > WRITE_EVERY_S:
                    _write_results(out, index, candidates, opts.top)
                    last = time.monotonic()
    finally:
        # this invocation's benchmark phase: what a scaling comparison over GPUs reads
        phase = {"candidates": len(tasks), "seconds": round(time.monotonic() - t0, 2),
                 "workers": workers, "failed_or_wrong": bad}
        res = _write_results(out, index, candidates, opts.top, phase)
    if tasks:
        log(f"benchmarked {len(tasks)} candidates in {phase['seconds']:.1f} s "
            f"({bad} failed or wrong)")
    log(results_mod.table(res))
    log(f"results: {out / results_mod.RESULTS}")
    return 0


def _write_results(out: Path, index: dict, candidates: list[Candidate], top: int,
                   phase: dict | None = None) -> dict:
    res = results_mod.build(index, candidates, read_journal(out), top)
    if phase is not None:
        res["bench_phase"] = phase
    results_mod.write(out, res)
    return res


def report(directory, plot: str | os.PathLike | None = None) -> int:
    directory = Path(directory)
    res = results_mod.load(directory)
    log(results_mod.table(res))
    target = Path(plot) if plot else directory / results_mod.PLOT
    if results_mod.plot(res, target) is None:
        log("no plot: matplotlib is not installed (pip install 'deepgen-mlir[plot]' or "
            "pip install matplotlib)")
    else:
        log(f"plot: {target}")
    return 0
