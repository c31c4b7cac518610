"""`deepgen tune install DIR`: put the winners of a results directory into the tuned database
that deepgen.gemm reads (deepgen.runtime.tuned: $DEEPGEN_CACHE_DIR/tuned.json).

An entry per (spec, target): the winner's config and time ("ms") and torch's time for the same
shape, measured by the same worker in the same run ("baseline_ms", "baseline_tflops"; tuned
on several GPUs, the winner's time scaled to that baseline's GPUs, results.gpu_scales), which
deepgen.optimize routes by (entries installed before "baseline_ms" existed give it through
"baseline_tflops"; an entry with neither is never routed). A range problem's entry (spec M a
range, tuner/ranges.py) also has "points" [{M, ms, baseline_ms, ...}], the times at each M
it was measured at (deepgen.routing reads them); its spec is the key deepgen/range_table.py
looks the range kernel's config up by. An installed winner replaces the
entry of the same spec and target and leaves every other entry alone. The file is rewritten
atomically, so a concurrent deepgen.gemm sees the old database or the new one. Imports
neither MLIR nor torch.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from deepgen.runtime import tuned
from deepgen.runtime.cache import canonical_json
from deepgen.spec import GemmSpec

from . import results as results_mod
from .journal import write_json


def _key(entry: dict) -> tuple[str, str | None]:
    return canonical_json(GemmSpec.from_dict(entry["spec"]).to_dict()), entry.get("target")


def winners(res: dict, source: str) -> list[dict]:
    """One database entry per shape that has a correct, timed best candidate."""
    out = []
    for sh in res["shapes"]:
        if not sh["top"]:
            continue
        best, base = sh["top"][0], sh.get("baseline") or {}
        ms = best.get("ms_ranked") or best["ms"]  # several GPUs: on the baseline's scale
        out.append({"spec": sh["spec"], "target": res.get("target"), "config": best["config"],
                    "ms": ms, "tflops": best["tflops"] * best["ms"] / ms,
                    "baseline_ms": base.get("ms"), "baseline_tflops": base.get("tflops"),
                    "device": res.get("device"),
                    **({"points": best["points"]} if best.get("points") else {}),
                    "source": source, "installed": time.strftime("%Y-%m-%d %H:%M:%S")})
    return out


def install(directory: str | os.PathLike, db_path: str | os.PathLike | None = None) -> tuple[
        int, int, Path]:
    """Merge the winners of `directory` into the database: (added, replaced, path)."""
    res = results_mod.load(directory)
    path = Path(db_path) if db_path else tuned.tuned_path()
    entries = []
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); move it aside first") from None
        if not isinstance(data, dict) or data.get("format") != tuned.FORMAT:
            raise ValueError(f"{path}: not a {tuned.FORMAT} database; move it aside first")
        entries = data.get("entries", [])
    new = winners(res, str(Path(directory).resolve()))
    index = {_key(e): i for i, e in enumerate(entries)}
    added = replaced = 0
    for e in new:
        k = _key(e)
        if k in index:
            entries[index[k]] = e
            replaced += 1
        else:
            index[k] = len(entries)
            entries.append(e)
            added += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"format": tuned.FORMAT, "entries": entries})
    return added, replaced, path
