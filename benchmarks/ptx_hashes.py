"""PTX guard for refactors: compile every kernel of the correctness sweep and of the GEMM
suite's `all` bundle and compare a sha256 of each kernel's PTX with the recorded one.

    python benchmarks/ptx_hashes.py            # check (CI): exit 1 when a PTX changed
    python benchmarks/ptx_hashes.py --record   # re-record on purpose (a changed default)
    python benchmarks/ptx_hashes.py --only 'bf16-.*4096'   # a subset (check or record)

A refactor that must not change the kernels keeps every hash. Where a difference is intended,
rerun the GPU correctness sweep and the suite (their figures must not drop), then --record.
Runs with an empty tuned database (a private $DEEPGEN_CACHE_DIR), so the kernels are those of
the default heuristic and the sweep's overrides, whatever the developer's cache holds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RECORD = HERE / "ptx_hashes.json"
FORMAT = "deepgen-ptx-hashes/1"


def points() -> list[tuple[str, dict, dict | None]]:
    """(name, spec dict, config overrides) of every kernel the guard compiles."""
    import correctness_sweep
    import gemm_suite

    out = [(f"sweep/{name}", spec, overrides)
           for name, spec, overrides, _alpha, _beta in correctness_sweep.cases()]
    out += [(f"suite/{e.name}", e.spec.to_dict(), None) for e in gemm_suite.entries(("all",))]
    return out + [(name, spec, None) for name, spec in quant_points()]


def quant_points() -> list[tuple[str, dict]]:
    """(name, spec dict) of every shape of the quantized benches (fp8 per-tensor and rowwise,
    int8 w8a8, block-scaled fp8: layout NT, the only one their wgmma reads)."""
    import fp8_bench
    import fp8_block_bench
    import int8_bench

    return [(f"quant/{mod.__name__}/{name}", mod.spec_of(*shape).to_dict())
            for mod in (fp8_bench, int8_bench, fp8_block_bench)
            for name, shape in mod.SHAPES.items()]


def ptx_hash(point: tuple[str, dict, dict | None]) -> tuple[str, str, float]:
    """(name, sha256 of the PTX or "error: ...", seconds)."""
    from deepgen.compiler import compile_artifact, default_config
    from deepgen.spec import GemmSpec

    name, spec_d, overrides = point
    t = time.perf_counter()
    try:
        spec = GemmSpec(**spec_d)
        cfg = default_config(spec)
        if overrides:
            cfg = cfg.replace(**overrides)
        art = compile_artifact(spec, cfg, keep_ir=False)
        digest = hashlib.sha256(art.assembly.encode()).hexdigest()
    except Exception as e:  # recorded as such: a point that stops compiling is a change too
        digest = f"error: {type(e).__name__}: {str(e)[:200]}"
    return name, digest, time.perf_counter() - t


def compile_points(fn, todo: list, jobs: int) -> list:
    """fn(point) for every point, in `jobs` processes, with an empty tuned database: the
    guards check the default heuristic's kernels, not one developer's tuning."""
    os.environ["DEEPGEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="deepgen-guard-")
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(fn, todo, chunksize=4))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--record", action="store_true", help="write the hashes instead of checking")
    p.add_argument("--only", metavar="REGEX", help="only points whose name matches")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = p.parse_args(argv)
    todo = [pt for pt in points() if not a.only or re.search(a.only, pt[0])]
    t0 = time.perf_counter()
    got = {name: digest for name, digest, _ in compile_points(ptx_hash, todo, a.jobs)}
    print(f"{len(got)} kernels compiled in {time.perf_counter() - t0:.1f} s")
    old = json.loads(RECORD.read_text())["hashes"] if RECORD.exists() else {}
    if a.record:
        merged = {**old, **got} if a.only else got
        RECORD.write_text(json.dumps({"format": FORMAT, "hashes": dict(sorted(merged.items()))},
                                     indent=1) + "\n")
        print(f"recorded {len(got)} hashes in {RECORD}")
        return 0
    missing = sorted(set(got) - set(old))
    changed = sorted(n for n in got if n in old and got[n] != old[n])
    for n in missing:
        print(f"NEW     {n}: no recorded hash (run --record)")
    for n in changed:
        print(f"CHANGED {n}: {old[n][:16]} -> {got[n][:16]}")
    errors = sorted(n for n, d in got.items() if d.startswith("error"))
    for n in errors:
        print(f"ERROR   {n}: {got[n]}")
    bad = len(missing) + len(changed)
    print(f"{len(got) - bad}/{len(got)} PTX identical to the record"
          + (f"; {len(errors)} recorded as errors" if errors else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
