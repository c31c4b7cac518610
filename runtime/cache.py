"""Kernel cache: artifacts in memory and on disk, shared by every process of a user.

Layout: `$DEEPGEN_CACHE_DIR` (default ~/.cache/deepgen) holds `kernels/<sha256>/`, one bundle
directory per key (see KernelArtifact.save) plus `key.json`, the key parts in clear. An entry
appears atomically: it is written into a temporary directory beside it and renamed into place;
when another process got there first, its entry is kept and ours discarded. Entries are never
modified after that, so readers need no lock. An entry that fails to load (bad JSON, binary of
the wrong size or checksum, missing file) is moved aside, deleted and rebuilt.

What goes into a key is the caller's business (deepgen.build.key_parts: spec, config, target,
versions, the compiler's source hash); `entries()` lists what is on disk with its key parts,
so stale entries can be told and removed (`deepgen cache list|prune|clear`).

Preloaded artifacts (`preload`) serve hosts that cannot compile (no MLIR): a bundle compiled
elsewhere is registered for its spec and target, and `deepgen.gemm` finds it before compiling.
This module imports neither MLIR nor torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

from deepgen.toolchain import cache_dir  # $DEEPGEN_CACHE_DIR, else ~/.cache/deepgen

from .artifact import ArtifactError, KernelArtifact

_memory: dict[str, KernelArtifact] = {}
_preloaded: dict[tuple[str, str], KernelArtifact] = {}
_lock = threading.RLock()  # one build at a time per process; a build may use the cache


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value):
    to_dict = getattr(value, "to_dict", None)  # GemmSpec, TileConfig
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"cache key: cannot encode {type(value).__name__} {value!r} as JSON")


def cache_key(key_parts: dict) -> str:
    """sha256 of the canonical JSON of `key_parts` (spec, config, target, versions...)."""
    return hashlib.sha256(canonical_json(key_parts).encode()).hexdigest()


def entry_dir(key: str) -> Path:
    return cache_dir() / "kernels" / key


def cached_artifact(key_parts: dict, build: Callable[[], KernelArtifact]) -> KernelArtifact:
    """The artifact for `key_parts`: from memory, else from disk, else `build()` and store it."""
    key = cache_key(key_parts)
    art = _memory.get(key)
    if art is not None:
        return art
    with _lock:
        art = _memory.get(key) or _load_entry(entry_dir(key))
        if art is None:
            art = build()
            try:
                _store_entry(key, key_parts, art)
            except OSError as e:  # a read-only or full disk costs a rebuild, not the kernel
                warnings.warn(f"deepgen: cannot write the kernel cache under {cache_dir()} "
                              f"({e}); kernels are rebuilt in each process", stacklevel=2)
        _memory[key] = art
        return art


def _load_entry(d: Path) -> KernelArtifact | None:
    """The entry's artifact; None when absent, or when corrupt (then it is removed)."""
    if not d.exists():
        return None
    try:
        return KernelArtifact.load(d)
    except ArtifactError:
        _remove(d)
        return None


def _store_entry(key: str, key_parts: dict, art: KernelArtifact) -> None:
    final = entry_dir(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key[:16]}-", suffix=".tmp"))
    try:
        art.save(tmp)
        (tmp / "key.json").write_text(json.dumps(key_parts, indent=1, sort_keys=True,
                                                 default=_jsonable))
        os.rename(tmp, final)  # atomic; fails if another process already renamed its entry
    except OSError:
        if not final.exists():
            raise  # not a lost race: a real write error (disk full, permissions)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(d: Path) -> bool:
    """Move an entry out of the way first, so nobody sees it half deleted; whether it was
    this call that removed it."""
    trash = d.parent / f".trash-{uuid.uuid4().hex}"
    try:
        os.rename(d, trash)
    except OSError:
        return False  # someone else removed or replaced it
    shutil.rmtree(trash, ignore_errors=True)
    return True


# -- what is on disk -----------------------------------------------------------------------------

class Entry(NamedTuple):
    key: str  # the directory name: sha256 of the key parts
    path: Path
    parts: dict | None  # key.json; None when missing or unreadable
    size: int  # bytes on disk
    problem: str | None  # why the entry cannot be used as is ("no key.json", a load error...)


def entries(check: bool = True) -> list[Entry]:
    """Every kernel entry on disk, by key. With `check`, each artifact is loaded (sizes and
    checksums verified) and its key.json hashed again; a failure is the entry's `problem`."""
    root = cache_dir() / "kernels"
    try:
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        return []
    found = []
    for d in dirs:
        parts, problem = None, None
        try:
            parts = json.loads((d / "key.json").read_text())
            if not isinstance(parts, dict):
                parts, problem = None, "key.json: not an object"
        except FileNotFoundError:
            problem = "no key.json"
        except (OSError, ValueError) as e:
            problem = f"key.json: {type(e).__name__}: {e}"
        if check and problem is None:
            if cache_key(parts) != d.name:
                problem = "key.json does not hash to the entry's name"
            else:
                try:
                    KernelArtifact.load(d)
                except ArtifactError as e:
                    problem = str(e).removeprefix(f"{d}: ")
        found.append(Entry(d.name, d, parts, _size(d), problem))
    return found


def leftovers(min_age_s: float = 3600.0) -> list[Path]:
    """Temporary and trash directories of writers that died (older than `min_age_s`: a
    younger one may belong to a writer at work)."""
    root = cache_dir() / "kernels"
    try:
        dirs = [d for d in root.iterdir() if d.is_dir() and d.name.startswith(".")]
    except OSError:
        return []
    now = time.time()
    old = []
    for d in dirs:
        try:
            if now - d.stat().st_mtime >= min_age_s:
                old.append(d)
        except OSError:
            pass
    return sorted(old)


def remove(path: Path) -> bool:
    """Remove an entry (or a leftover directory) of the disk cache; forgets it in memory too.
    Whether this call removed it."""
    _memory.pop(Path(path).name, None)
    return _remove(Path(path))


def _size(d: Path) -> int:
    total = 0
    for f in d.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except OSError:
            pass
    return total


def clear_memory() -> None:
    """Forget the in-process cache (and preloaded artifacts); the disk cache stays."""
    _memory.clear()
    _preloaded.clear()


# -- preloaded bundles -------------------------------------------------------------------------

def _spec_key(spec: dict) -> str:
    return canonical_json(spec)


def preload(source: str | os.PathLike | KernelArtifact) -> KernelArtifact:
    """Register a bundle directory (or an artifact) for its spec and target, so that
    `deepgen.gemm` runs it without compiling. A later preload of the same spec replaces it."""
    art = source if isinstance(source, KernelArtifact) else KernelArtifact.load(source)
    _preloaded[(_spec_key(art.spec), art.target)] = art
    return art


def preloaded(spec: dict, target: str, config: dict | None = None) -> KernelArtifact | None:
    """The preloaded artifact for (spec, target); with `config`, only one built from it."""
    art = _preloaded.get((_spec_key(spec), target))
    if art is not None and config is not None and canonical_json(art.config) != \
            canonical_json(config):
        return None
    return art
