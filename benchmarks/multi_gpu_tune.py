"""Tuning across the GPUs of one host (issue 19): one bundle benchmarked with 1, 2, 4, 8 GPUs.

On the CPU machine (MLIR), the bundle: tuning_configs/multi_gpu_400.json compiled, plus
TRAPS candidates per shape whose kernel traps (runtime/reference.py faulty_artifact), put
among the real ones so that one worker dies while the others are busy:

    python benchmarks/multi_gpu_tune.py --build DIR [--workers 14]

On the GPU host (the runtime alone), every worker count in turn, rotated per round (clocks
drift), each a `deepgen bench DIR --gpus n` into a fresh results directory; `--ray` adds a
run of the Ray backend (`--ray local`: one actor per GPU):

    python benchmarks/multi_gpu_tune.py --run DIR --gpus 1,2 --rounds 2 --out RESULTS.json

What it reports per worker count (the JSON has every run's records):
  - scaling: the benchmark phase's wall time (results.json "bench_phase"), median over the
    rounds, and the speedup over one GPU (issue 19 asks >= 1.8 at two);
  - rankings: per shape, Spearman's rho between the candidates' ranked times (each GPU's
    scaled to one baseline, tuner/results.py gpu_scales) of this run and of a one-GPU run,
    and the regret: how much slower, in the one-GPU run's times, this run's winner is than
    the one-GPU winner. The same between two one-GPU rounds is the noise they are held to;
  - crashes: every trap candidate failed, every other candidate was timed, and the worker
    whose GPU trapped went on timing candidates after it (so did the others).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_suite import git_commit, write_json  # noqa: E402

from deepgen.tuner.journal import read_journal  # noqa: E402
from deepgen.tuner.manifest import Candidate, load_index, write_index  # noqa: E402
from deepgen.tuner.results import gpu_of, gpu_scales, ranked_ms  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "tuning_configs" / "multi_gpu_400.json"
TRAPS = 2  # per shape
TRAP = "trap"
SCALING_GOAL = 1.8  # at two GPUs
NOISE_FLOOR = {"rho": 0.02, "regret": 0.01}  # slack above the one-GPU rounds' own spread


# -- the bundle (CPU) ------------------------------------------------------------------------

def build(directory: Path, workers: int, config: Path = CONFIG) -> None:
    subprocess.run([sys.executable, "-m", "deepgen", "tune", str(config), "--compile-only",
                    "--out", str(directory), "--workers", str(workers), "--no-progress"],
                   check=True)
    add_traps(directory, TRAPS)


def add_traps(directory: Path, per_shape: int) -> list[str]:
    """Put `per_shape` trapping candidates into each shape's list, spread among its real
    candidates (benchmarks run in index order within a shape). Returns their ids."""
    from deepgen.runtime.reference import faulty_artifact

    index, cands = load_index(directory)
    out, ids = [], []
    for sh in index["shapes"]:
        mine = [c for c in cands if c.shape == sh["key"]]
        mine_real = [c for c in mine if not is_trap(c.config)]
        traps = [Candidate(mine_real[0].spec, {"fault": TRAP, "n": i}, index["target"])
                 for i in range(per_shape) if not any(c.config == {"fault": TRAP, "n": i}
                                                      for c in mine)]
        for t in traps:
            faulty_artifact(t.spec, TRAP, target=t.target).save(directory / t.dir)
            t.compile = {"ok": True, "seconds": 0.0, "resources": {}}
            ids.append(t.id)
        step = max(1, len(mine_real) // (per_shape + 1))
        merged = list(mine)
        for i, t in enumerate(traps):  # after 1/(k+1), 2/(k+1), ... of the real ones
            merged.insert(min(len(merged), (i + 1) * step + i), t)
        sh["candidates"] = len(merged)
        out += merged
    extra = {k: v for k, v in index.items() if k not in ("format", "name", "created", "shapes")}
    write_index(directory, index["name"], index["shapes"], out, extra)
    return ids


def is_trap(config: dict) -> bool:
    return config.get("fault") == TRAP


# -- the runs (GPU host) ---------------------------------------------------------------------

def bench_once(bundle: Path, out: Path, workers, timeout: float) -> dict:
    how = ["--ray", "local"] if workers == "ray" else ["--gpus", str(workers)]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "deepgen", "bench", str(bundle), "--out",
                           str(out), "--timeout", str(timeout), "--no-progress", *how],
                          capture_output=True, text=True)
    run = {"workers": workers, "rc": proc.returncode, "wall_s": round(time.monotonic() - t0, 2),
           "log_tail": (proc.stdout + proc.stderr)[-3000:]}
    if proc.returncode == 0:
        res = json.loads((out / "results.json").read_text())
        run["bench_phase"] = res.get("bench_phase")
        run["device"] = res.get("device")
        run["records"] = [r for r in read_journal(out) if r.get("stage") == "bench"]
    return run


def ranked_times(records: list[dict], shape_of: dict[str, str]) -> dict[str, dict[str, float]]:
    """{shape: {id: ms scaled to the shape's common baseline}} of the correct candidates."""
    by_shape: dict[str, list[dict]] = {}
    for r in records:
        if r.get("ok") and r["id"] in shape_of:
            by_shape.setdefault(shape_of[r["id"]], []).append(r)
    out = {}
    for shape, recs in by_shape.items():
        scale = gpu_scales(recs)
        out[shape] = {r["id"]: ranked_ms(r, scale) for r in recs}
    return out


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    ids = sorted(set(a) & set(b))
    if len(ids) < 3:
        return float("nan")
    ra = np.argsort(np.argsort([a[i] for i in ids]))
    rb = np.argsort(np.argsort([b[i] for i in ids]))
    return float(np.corrcoef(ra, rb)[0, 1])


def regret(ref: dict[str, float], other: dict[str, float]) -> float:
    """How much slower, in `ref`'s times, `other`'s winner is than `ref`'s winner."""
    common = set(ref) & set(other)
    win = min(common, key=other.__getitem__)
    return ref[win] / min(ref[i] for i in common) - 1.0


def agreement(a: dict, b: dict) -> dict:
    """Per shape, rho and regret of run b's ranking against run a's (ranked_times outputs)."""
    return {s: {"rho": round(spearman(a[s], b[s]), 4), "regret": round(regret(a[s], b[s]), 4)}
            for s in sorted(set(a) & set(b))}


def worst(agreements: list[dict]) -> tuple[float | None, float | None]:
    """(lowest rho, highest regret) over agreement() outputs; (None, None) for none."""
    vals = [v for a in agreements for v in a.values()]
    return (min((v["rho"] for v in vals), default=None),
            max((v["regret"] for v in vals), default=None))


def crash_check(records: list[dict], trap_ids: set[str], expected: set[str]) -> dict:
    """The traps failed and were isolated: every other candidate has a correct record, and
    after each trap its GPU's worker (a fresh process) and the others went on timing."""
    seen = {r["id"] for r in records}
    traps = [(i, r) for i, r in enumerate(records) if r["id"] in trap_ids]
    ok_after = []
    for i, r in traps:
        later = [gpu_of(x) for x in records[i + 1:] if x.get("ok")]
        ok_after.append({"slot": r.get("slot"), "later_records": len(later),
                         "later_on_gpus": sorted(set(map(str, later)))})
    per_gpu = dict(Counter(gpu_of(r) for r in records if r.get("ok")))
    real = expected - trap_ids
    good = {r["id"] for r in records if r.get("ok") and r["id"] in real}
    return {"traps": len(traps),
            "traps_failed": sum(1 for _, r in traps if not r.get("ok")
                                and (r.get("restart") or r.get("crashed"))),
            "missing": sorted(expected - seen),
            "real_correct": len(good), "real": len(real),
            "wrong_or_failed_real": sorted(real & seen - good),
            "after_each_trap": ok_after, "correct_per_gpu": per_gpu}


def summarize(runs: list[dict], shape_of: dict, trap_ids: set[str]) -> dict:
    expected = set(shape_of)
    ok_runs = [r for r in runs if r["rc"] == 0]
    ranked = {id(r): ranked_times(r["records"], shape_of) for r in ok_runs}
    for r in ok_runs:
        r["crash_check"] = crash_check(r["records"], trap_ids, expected)
    ones = [r for r in ok_runs if r["workers"] == 1]
    noise = [agreement(ranked[id(a)], ranked[id(b)]) for a, b in combinations(ones, 2)]
    low, high = worst(noise)
    floor = {"rho": 1.0 if low is None else low, "regret": 0.0 if high is None else high}
    t1 = statistics.median([r["bench_phase"]["seconds"] for r in ones]) if ones else None
    table = {}
    for w in dict.fromkeys(r["workers"] for r in runs):
        mine = [r for r in ok_runs if r["workers"] == w]
        if not mine:
            table[str(w)] = {"failed_runs": sum(1 for r in runs if r["workers"] == w)}
            continue
        secs = statistics.median(r["bench_phase"]["seconds"] for r in mine)
        rho, reg = worst([agreement(ranked[id(o)], ranked[id(r)])
                          for r in mine for o in ones if o is not r])
        checks = [r["crash_check"] for r in mine]
        table[str(w)] = {
            "runs": len(mine), "bench_phase_s": secs,
            "speedup_vs_1": round(t1 / secs, 3) if t1 else None,
            "worst_rho_vs_1": rho, "worst_regret_vs_1": reg,
            "rankings_agree": None if rho is None else (
                rho >= floor["rho"] - NOISE_FLOOR["rho"]
                and reg <= max(floor["regret"], NOISE_FLOOR["regret"])),
            "crash_isolated": all(c["traps"] == c["traps_failed"] > 0 and not c["missing"]
                                  and c["real_correct"] == c["real"] for c in checks),
            "gpus_used": max(len(c["correct_per_gpu"]) for c in checks),
        }
    return {"one_gpu_noise": {"pairs": noise, "floor": floor}, "by_workers": table,
            "scaling_goal_at_2": SCALING_GOAL}


def device_info() -> dict:
    import torch

    from gemm_suite import device_info as one

    return {**one(), "gpus": [torch.cuda.get_device_name(i)
                              for i in range(torch.cuda.device_count())]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--build", type=Path, metavar="DIR")
    mode.add_argument("--run", type=Path, metavar="DIR")
    ap.add_argument("--workers", type=int, default=14, help="compile processes (--build)")
    ap.add_argument("--gpus", default="1,2", help="worker counts to compare (--run)")
    ap.add_argument("--ray", action="store_true", help="also run the Ray backend (--run)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="per candidate, seconds")
    ap.add_argument("--work", type=Path, default=Path("/tmp/deepgen-multi-gpu"))
    ap.add_argument("--out", type=Path, help="the JSON (--run)")
    args = ap.parse_args()
    if args.build:
        build(args.build, args.workers)
        return 0
    counts = [int(g) for g in args.gpus.split(",")]
    if 1 not in counts:
        ap.error("--gpus: include 1 (the runs are compared with one GPU's)")
    import torch

    if max(counts) > torch.cuda.device_count():
        ap.error(f"--gpus: {max(counts)} GPUs asked for, {torch.cuda.device_count()} visible")
    labels = counts + (["ray"] if args.ray else [])
    index, cands = load_index(args.run)
    shape_of = {c.id: c.shape for c in cands if c.compile.get("ok")}
    trap_ids = {c.id for c in cands if is_trap(c.config)}
    runs = []
    for rnd in range(args.rounds):
        for w in labels[rnd % len(labels):] + labels[:rnd % len(labels)]:
            out = args.work / f"r{rnd}-{w}"
            shutil.rmtree(out, ignore_errors=True)
            run = bench_once(args.run, out, w, args.timeout)
            run["round"] = rnd
            runs.append(run)
            phase = run.get("bench_phase") or {}
            print(f"round {rnd} workers {w}: rc {run['rc']}, bench phase "
                  f"{phase.get('seconds')} s, wall {run['wall_s']} s", flush=True)
    summary = summarize(runs, shape_of, trap_ids)
    result = {"benchmark": "multi_gpu_tune", "date": _dt.datetime.now().isoformat(),
              "git_commit": git_commit(), **device_info(), "bundle": str(args.run),
              "candidates": len(shape_of), "traps": len(trap_ids), "rounds": args.rounds,
              "summary": summary, "runs": runs}
    if args.out:
        write_json(args.out, result)
    print(f"{'workers':>8} {'phase s':>8} {'speedup':>8} {'rho>=':>7} {'regret<=':>9} "
          f"{'agree':>6} {'crash ok':>9} {'gpus':>5}")
    for w, row in summary["by_workers"].items():
        if "runs" not in row:
            print(f"{w:>8} every run failed")
            continue
        print(f"{w:>8} {row['bench_phase_s']:>8.1f} {row['speedup_vs_1'] or 0:>8.2f} "
              f"{row['worst_rho_vs_1'] if row['worst_rho_vs_1'] is not None else '-':>7} "
              f"{row['worst_regret_vs_1'] if row['worst_regret_vs_1'] is not None else '-':>9} "
              f"{str(row['rankings_agree']):>6} {str(row['crash_isolated']):>9} "
              f"{row['gpus_used']:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
