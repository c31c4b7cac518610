"""The tuned-configuration database that `deepgen.gemm` consults before the default heuristic.

The autotuner writes `$DEEPGEN_CACHE_DIR/tuned.json` (see deepgen.runtime.cache.cache_dir):

    {"format": "deepgen-tuned/1",
     "entries": [{"spec": GemmSpec.to_dict(), "target": "sm_90a", "config": {...}, ...}]}

An entry without "target" applies to every target; one with it wins over one without. Other
fields of an entry (timings, dates) are the tuner's and ignored here. No file means no tuned
configs.

A spec with no entry of its own borrows the config of the nearest tuned shape: same dtype,
out_dtype, layout, allow_tf32 and batched-ness (batch > 1 or not), nearest by log-distance of
M, N and K, provided the config still validates for the new shape (range entries, M a
deepgen.dims.Dim, neither lend nor borrow: deepgen/range_table.py takes a range's own
entry). That check needs the
compiler, which the runtime never imports: the caller passes it as `validate(config, spec,
target) -> bool` (deepgen.build.config_fits, at the package root); without one, or when no
neighbour's config fits, lookup returns None and the default heuristic applies. Configs are
handed back as stored (a dict, whatever its format): reading them is the compiler's business.
`deepgen tune install DIR` writes the entries. After the user's own entry, a shipped
database's own entry for the spec counts (runtime/shipped_db.py: package data for one GPU,
used only on that GPU; not an entry marked "heuristic", a default measured as routing's
evidence), before any neighbour. An unreadable or malformed file is reported
once as a warning and ignored: a broken database must not stop GEMMs from running. Imports
neither MLIR, torch nor deepgen.compiler.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Callable

from deepgen.spec import GemmSpec

from .cache import cache_dir, canonical_json

FORMAT = "deepgen-tuned/1"
FILENAME = "tuned.json"

_loaded: dict = {"stamp": None, "table": ({}, [])}  # parsed once per file version


def tuned_path() -> Path:
    return cache_dir() / FILENAME


Validate = Callable[[dict, GemmSpec, "str | None"], bool]  # config, spec, target -> fits


def lookup(spec: GemmSpec, target: str | None = None, *,
           validate: Validate | None = None) -> dict | None:
    """The tuned config for `spec` (on `target`), or None when there is none. Without
    `validate`, only an entry for `spec` itself counts (no neighbour is borrowed)."""
    found = find(spec, target, validate=validate)
    return None if found is None else found[0]


def find(spec: GemmSpec, target: str | None = None, *, validate: Validate | None = None,
         device_name: str | None = None) -> tuple[dict, str, str] | None:
    """(config, origin, database path) of what lookup returns; origin is "user" (the user's
    own entry), "shipped" (a shipped database's own entry for this GPU: runtime/shipped_db.py,
    its config checked by `validate` when given) or "user-neighbour"."""
    from . import shipped_db

    path = tuned_path()
    exact, entries = _table(path)
    key = canonical_json(spec.to_dict())
    found = exact.get((key, target)) or exact.get((key, None))
    if found is not None:
        return dict(found), "user", str(path)
    ship = shipped_db.entry(spec, target, device_name)
    if ship is not None and ship[0].get("heuristic"):
        ship = None  # a default measured for routing's evidence: today's heuristic decides
    if ship is not None and (validate is None or validate(dict(ship[0]["config"]), spec,
                                                          target)):
        return dict(ship[0]["config"]), "shipped", ship[1]
    near = nearest(entries, spec, target, validate) if validate is not None else None
    return None if near is None else (near, "user-neighbour", str(path))


def nearest(entries: list[tuple[GemmSpec, str | None, dict]], spec: GemmSpec,
            target: str | None, validate: Validate) -> dict | None:
    """The config of the closest comparable tuned shape for which `validate(config, spec,
    target)` is true."""
    def kind(s: GemmSpec):
        return (s.dtype, s.out_dtype, s.layout, s.allow_tf32, s.batch > 1)

    def distance(s: GemmSpec) -> float:
        return sum(math.log(a / b) ** 2 for a, b in ((s.M, spec.M), (s.N, spec.N),
                                                     (s.K, spec.K), (s.batch, spec.batch)))

    if spec.dynamic_m:  # a range kernel takes its own entry only (deepgen/range_table.py)
        return None
    near = sorted(((distance(s), t is None, i) for i, (s, t, _) in enumerate(entries)
                   if kind(s) == kind(spec) and t in (target, None) and not s.dynamic_m))
    for _, _, i in near:  # target-specific entries first among equally near ones
        config = entries[i][2]
        if validate(dict(config), spec, target):
            return dict(config)
    return None


def _table(path: Path) -> tuple[dict, list]:
    """({(spec key, target): config}, [(spec, target, config)]) of the database file."""
    try:
        st = path.stat()
    except OSError:
        return {}, []
    stamp = (str(path), st.st_mtime_ns, st.st_size)
    if _loaded["stamp"] != stamp:
        _loaded["stamp"], _loaded["table"] = stamp, _parse(path)
    return _loaded["table"]


def _parse(path: Path) -> tuple[dict, list]:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        table, entries = {}, []
        for entry in data["entries"]:
            spec = GemmSpec.from_dict(entry["spec"])  # normalizes defaults (out_dtype, ...)
            config = dict(entry["config"])
            table[(canonical_json(spec.to_dict()), entry.get("target"))] = config
            entries.append((spec, entry.get("target"), config))
        return table, entries
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"{path}: ignoring the tuned-config database ({type(e).__name__}: {e})",
                      stacklevel=3)
        return {}, []
