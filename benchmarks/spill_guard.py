"""Spill guard: the default config of every shape of the benchmark suites (gemm_suite's `all`
and the decode suite, in every layout and dtype; the quantized benches' shapes, layout NT)
compiles without local memory (no spill stores or loads, no stack frame) in any of its
kernels.

    python benchmarks/spill_guard.py              # check (CI): exit 1 when a default spills
    python benchmarks/spill_guard.py --only 'bf16-128x'   # a subset

Runs with an empty tuned database (a private $DEEPGEN_CACHE_DIR): the kernels are those of the
default heuristic, whatever the developer's cache holds.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ptx_hashes import compile_points, quant_points  # noqa: E402

LAYOUTS = ("NN", "NT", "TN", "TT")


def spec_key(spec: dict) -> str:
    """A spec dict's identity (JSON: a spec may hold nested fields, its epilogue's steps)."""
    return json.dumps(spec, sort_keys=True)


def points() -> list[tuple[str, dict, dict | None]]:
    """(name, spec dict, None) of every suite shape in every layout, one entry per distinct
    spec (the default config: no overrides)."""
    import decode_suite
    import gemm_suite

    specs = {}
    for e in gemm_suite.entries(("all",)):
        for layout in LAYOUTS:
            specs[f"suite/{e.name}-{layout}"] = dict(e.spec.to_dict(), layout=layout)
    for p in decode_suite.points():
        for layout in LAYOUTS:
            specs[f"decode/{p['name']}-{layout}"] = dict(decode_suite.spec_of(p).to_dict(),
                                                        layout=layout)
    specs.update(quant_points())  # their layout NT only
    seen, out = set(), []
    for name, spec in specs.items():
        key = spec_key(spec)
        if key not in seen:
            seen.add(key)
            out.append((name, spec, None))
    return out


def local_memory(point: tuple[str, dict, dict | None]) -> tuple[str, str, dict | str]:
    """(name, strategy, {kernel: bytes of spill stores/loads and stack, where not 0} or
    "error: ...") of the point's default config, or of its config dict where one is given."""
    from deepgen.compiler import compile_artifact, default_config
    from deepgen.compiler.strategies import resolve
    from deepgen.spec import GemmSpec

    name, spec_d, config = point
    try:
        spec = GemmSpec(**spec_d)
        cfg = default_config(spec) if config is None else resolve(config, spec)
        art = compile_artifact(spec, cfg, keep_ir=False)
        used = {entry: res["spill_stores"] + res["spill_loads"] + res["stack_bytes"]
                for entry, res in art.resources.items()}
        return name, cfg.strategy, {k: v for k, v in used.items() if v}
    except Exception as e:  # a default that does not compile fails the guard too
        return name, "?", f"error: {type(e).__name__}: {str(e)[:200]}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", metavar="REGEX", help="only points whose name matches")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = p.parse_args(argv)
    todo = [pt for pt in points() if not a.only or re.search(a.only, pt[0])]
    t0 = time.perf_counter()
    got = compile_points(local_memory, todo, a.jobs)
    bad = [(n, s, r) for n, s, r in got if r]
    for name, strategy, res in bad:
        print(f"LOCAL   {name} ({strategy}): {res}")
    print(f"{len(got) - len(bad)}/{len(got)} default kernels free of local memory "
          f"({time.perf_counter() - t0:.1f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
