"""The tuned databases DeepGen ships as package data (runtime/data/tuned-*.json).

Each file is a "deepgen-tuned/1" database for one GPU, built reproducibly from the tuning
and benchmark results committed under benchmarks/results/ by `python -m
deepgen.tuner.shipped` (only measurements whose result checked ok against float64, each with
torch's time from the same run); its "shipped" header names the GPU: target (e.g. "sm_90a")
and device name (torch.cuda.get_device_name, e.g. "NVIDIA H200").

A shipped database applies only where both match: the target deepgen.gemm compiles for and
the device name of the GPU (this process's current CUDA device; where there is none, e.g.
compiling on a CPU host for a GPU, the environment variable DEEPGEN_DEVICE_NAME stands in for
it). DEEPGEN_SHIPPED_DB=0 turns the shipped databases off. The user's database
($DEEPGEN_CACHE_DIR/tuned.json) is consulted first; a shipped entry gives its config for its
own spec only (no neighbour borrowing from shipped entries). A missing, unreadable or
malformed shipped file is ignored with one warning: it never stops a GEMM.

Imports neither MLIR, torch (it reads torch's device name only when torch is imported
already) nor deepgen.compiler.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from .cache import canonical_json

FORMAT = "deepgen-tuned/1"
DATA_DIR = Path(__file__).resolve().parent / "data"

_files: dict = {"stamp": None, "dbs": []}  # parsed once per version of the data directory
_names: dict[int, str | None] = {}
_warned: set[str] = set()


def enabled() -> bool:
    return os.environ.get("DEEPGEN_SHIPPED_DB", "1") not in ("0", "", "off", "false")


def device_name() -> str | None:
    """The name of this process's current CUDA device (None without one); the environment
    variable DEEPGEN_DEVICE_NAME wins when set."""
    forced = os.environ.get("DEEPGEN_DEVICE_NAME")
    if forced:
        return forced
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        index = torch.cuda.current_device()
        if index not in _names:
            _names[index] = torch.cuda.get_device_name(index)
        return _names[index]
    except Exception:  # noqa: BLE001  (no driver, a broken context: no shipped database)
        return None


def files(directory: Path | None = None) -> list[Path]:
    d = Path(directory) if directory else DATA_DIR
    try:
        return sorted(p for p in d.glob("tuned-*.json") if p.is_file())
    except OSError:
        return []


def databases(directory: Path | None = None) -> list[dict]:
    """[{"path", "target", "device", "entries": [entry, ...]}] of the readable shipped files
    (a broken one is left out, with a warning once)."""
    paths = files(directory)
    stamp = []
    for p in paths:
        try:
            st = p.stat()
            stamp.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append((str(p), None, None))
    stamp = tuple(stamp)
    if _files["stamp"] != stamp:
        dbs = []
        for p in paths:
            db = parse(p)
            if db is not None:
                dbs.append(db)
        _files.update(stamp=stamp, dbs=dbs)
    return _files["dbs"]


def parse(path: Path) -> dict | None:
    """The shipped database at `path`, or None (warned once) when it cannot be used."""
    from deepgen.spec import GemmSpec

    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        head = data.get("shipped")
        if not isinstance(head, dict) or not head.get("target") or not head.get("device"):
            raise ValueError("no 'shipped' header with its target and device name")
        entries, exact = [], {}
        for i, e in enumerate(data["entries"]):
            if not isinstance(e, dict) or not isinstance(e.get("config"), dict):
                raise TypeError(f"entries[{i}]: no config")
            spec = GemmSpec.from_dict(e["spec"])  # raises on a malformed spec
            entry = {**e, "spec": spec.to_dict()}
            entries.append(entry)
            exact[(canonical_json(entry["spec"]), e.get("target"))] = entry
        return {"path": str(path), "target": head["target"], "device": head["device"],
                "entries": entries, "exact": exact}
    except (OSError, ValueError, KeyError, TypeError) as e:
        message = (f"{path}: ignoring the shipped tuned database ({type(e).__name__}: {e}); "
                   f"DeepGen runs without it")
        if message not in _warned:
            _warned.add(message)
            warnings.warn(message, stacklevel=3)
        return None


def entry(spec, target: str | None, name: str | None = None) -> tuple[dict, str] | None:
    """(entry, path) of the first matching shipped database's own entry for `spec` (a
    GemmSpec) on `target`, or None."""
    key = canonical_json(spec.to_dict())
    for db in matching(target, name):
        found = db["exact"].get((key, target)) or db["exact"].get((key, None))
        if found is not None:
            return found, db["path"]
    return None


def matching(target: str | None, name: str | None = None) -> list[dict]:
    """The shipped databases for `target` on the device named `name` (default: this
    process's device, device_name()); [] when off, or when the device is not known."""
    if not enabled() or target is None:
        return []
    name = device_name() if name is None else name
    if name is None:
        return []
    return [db for db in databases() if db["target"] == target and db["device"] == name]


def clear() -> None:
    """Forget the parsed files, device names and warnings (tests)."""
    _files.update(stamp=None, dbs=[])
    _names.clear()
    _warned.clear()


__all__ = ["DATA_DIR", "clear", "databases", "device_name", "enabled", "entry", "files", "matching",
           "parse"]
