"""The tuned-configuration database that `deepgen.gemm` consults before the default heuristic.

The autotuner writes `$DEEPGEN_CACHE_DIR/tuned.json` (see deepgen.runtime.cache.cache_dir):

    {"format": "deepgen-tuned/1",
     "entries": [{"spec": GemmSpec.to_dict(), "target": "sm_90a", "config": {...}, ...}]}

An entry without "target" applies to every target; one with it wins over one without. Other
fields of an entry (timings, dates) are the tuner's and ignored here. No file means no tuned
configs. An unreadable or malformed file is reported once as a warning and ignored: a broken
database must not stop GEMMs from running. Imports neither MLIR nor torch.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from deepgen.spec import GemmSpec

from .cache import cache_dir, canonical_json

FORMAT = "deepgen-tuned/1"
FILENAME = "tuned.json"

_loaded: dict = {"stamp": None, "table": {}}  # parsed once per file version


def tuned_path() -> Path:
    return cache_dir() / FILENAME


def lookup(spec: GemmSpec, target: str | None = None) -> dict | None:
    """The tuned config for `spec` (on `target`), or None when there is none."""
    table = _table(tuned_path())
    key = canonical_json(spec.to_dict())
    return table.get((key, target)) or table.get((key, None))


def _table(path: Path) -> dict:
    try:
        st = path.stat()
    except OSError:
        return {}
    stamp = (str(path), st.st_mtime_ns, st.st_size)
    if _loaded["stamp"] != stamp:
        _loaded["stamp"], _loaded["table"] = stamp, _parse(path)
    return _loaded["table"]


def _parse(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        table = {}
        for entry in data["entries"]:
            spec = GemmSpec.from_dict(entry["spec"])  # normalizes defaults (out_dtype, ...)
            table[(canonical_json(spec.to_dict()), entry.get("target"))] = dict(entry["config"])
        return table
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"{path}: ignoring the tuned-config database ({type(e).__name__}: {e})",
                      stacklevel=3)
        return {}
