"""deepgen precompile: the range table of a list of (N, K) shapes compiled ahead of time,
into the kernel cache or a bundle directory, so that a GPU host without MLIR runs every M.

    entries = precompile([(4096, 4096), (14336, 4096)], dtype="bf16", layout="NT",
                         out="bundles/")          # one bundle per (N, K, M range)
    # on the GPU host (no compiler):
    deepgen.aot.preload_bundles("bundles/")        # registers them, sets the table's max M
    deepgen.gemm(a, b, dynamic_m=True)             # any M in 1..max_m, nothing compiles

A bundle directory holds one kernel bundle per range (runtime/artifact.py's format) and
manifest.json (format deepgen-ranges/1: max_m, target, entries of spec, config and dir).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from deepgen.dims import range_label, ranges_up_to
from deepgen.epilogue import EpilogueSpec
from deepgen.spec import GemmSpec

MANIFEST = "manifest.json"
FORMAT = "deepgen-ranges/1"


def gemm_name(spec: GemmSpec) -> str:
    """deepgen_gemm_<dtype>[_<out dtype>]_<layout>_<N>x<K>[_<epilogue>]: a C identifier."""
    out = f"_{spec.out_dtype}" if spec.out_dtype != spec.dtype else ""
    name = f"deepgen_gemm_{spec.dtype}{out}_{spec.layout.lower()}_{spec.N}x{spec.K}"
    if not spec.epilogue.is_default:
        name += "_" + "_".join(s for s in spec.epilogue.steps if s != "alpha_beta")
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


def range_specs(N: int, K: int, *, dtype: str = "bf16", layout: str = "NT",
                out_dtype: str | None = None, epilogue=None, max_m: int | None = None
                ) -> list[GemmSpec]:
    """The range table's specs for (N, K): one per M range up to max_m (validated: a
    SpecError names the field before anything compiles)."""
    from deepgen.range_table import max_m as default_max_m

    limit = default_max_m() if max_m is None else max_m
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_m: must be an int >= 1, got {limit!r}")
    if isinstance(epilogue, str) and "," in epilogue:  # "bias_col,relu": a list of steps
        epilogue = ["alpha_beta", *epilogue.split(",")]
    ep = EpilogueSpec.parse(epilogue) if epilogue is not None else EpilogueSpec()
    return [GemmSpec(M=d, N=N, K=K, dtype=dtype, out_dtype=out_dtype, layout=layout,
                     epilogue=ep) for d in ranges_up_to(limit)]


def compile_range(spec: GemmSpec, target: str = "sm_90a", config=None):
    """The artifact of one range spec, through the kernel cache (the tuned database's entry
    for the range spec when there is one)."""
    from deepgen import build
    from deepgen.runtime import tuned

    return build.compile_cached(spec, config or tuned.lookup(spec, target), target)


def precompile(shapes, *, dtype: str = "bf16", layout: str = "NT",
               out_dtype: str | None = None, epilogue=None, max_m: int | None = None,
               target: str = "sm_90a", out: str | os.PathLike | None = None,
               progress=None) -> list[dict]:
    """Compile the range table of every (N, K) in `shapes` (into the kernel cache; with
    `out`, also one bundle per range there plus manifest.json). Returns the entries: spec
    (a GemmSpec), artifact, name (the GEMM's C name), range label, dir (with `out`)."""
    shapes = [tuple(int(x) for x in s) for s in shapes]
    for s in shapes:
        if len(s) != 2:
            raise ValueError(f"shapes: each is (N, K), got {s}")
    specs = [spec for N, K in shapes for spec in range_specs(
        N, K, dtype=dtype, layout=layout, out_dtype=out_dtype, epilogue=epilogue,
        max_m=max_m)]  # every spec validated before the first compile
    entries = []
    for spec in specs:
        art = compile_range(spec, target)
        entry = {"spec": spec, "artifact": art, "name": gemm_name(spec),
                 "range": range_label(spec.M)}
        if out is not None:
            d = Path(out) / f"{entry['name']}_m{entry['range']}"
            art.save(d)
            entry["dir"] = d
        entries.append(entry)
        if progress is not None:
            progress(entry)
    if out is not None:
        write_manifest(out, entries, target, max(s.M.max for s in specs) if specs else 0)
    return entries


def write_manifest(out, entries, target: str, max_m: int) -> Path:
    from deepgen.runtime.artifact import atomic_write

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "target": target, "max_m": max_m,
            "entries": [{"spec": e["spec"].to_dict(), "name": e["name"], "range": e["range"],
                         "config": e["artifact"].config,
                         "dir": os.path.relpath(e["dir"], root)} for e in entries]}
    atomic_write(root / MANIFEST, json.dumps(data, indent=1, sort_keys=True).encode())
    return root / MANIFEST


def preload_bundles(directory: str | os.PathLike) -> list:
    """Register every range bundle of a precompiled directory (deepgen.runtime.preload) and
    set the range table's maximum M to the bundle's; returns the artifacts."""
    from deepgen import range_table
    from deepgen.runtime import cache

    root = Path(directory)
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{root}: not a precompiled bundle directory ({MANIFEST}: {e})") from e
    if data.get("format") != FORMAT:
        raise ValueError(f"{root / MANIFEST}: not a {FORMAT} manifest")
    arts = [cache.preload(root / e["dir"]) for e in data["entries"]]
    range_table.set_max_m(int(data["max_m"]))
    return arts
