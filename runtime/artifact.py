"""KernelArtifact: what the compiler hands the runtime, and what a bundle holds on disk.

A kernel is one GPU binary (cubin or hsaco) with one or more entry points, launched in order
(split-K adds a reduction launch after the main one). Every launch names its arguments from a
fixed vocabulary, so the runtime can pack them without knowing how the kernel was built:

    "A", "B", "C"   device pointers of the operands (batch packed, see deepgen.spec)
    "W"             device pointer of a scratch workspace of `workspace_bytes` bytes (f32)
    "alpha", "beta" f32 scalars

This module imports neither MLIR nor torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "deepgen-kernel/1"
ARG_NAMES = ("A", "B", "C", "W", "alpha", "beta")
POINTER_ARGS = ("A", "B", "C", "W")


class ArtifactError(ValueError):
    """A kernel bundle or cache entry is malformed, truncated or from another format."""


@dataclass(frozen=True)
class Launch:
    entry: str  # symbol name in the binary
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int  # dynamic shared memory
    args: tuple[str, ...]  # names from ARG_NAMES, in parameter order

    def to_dict(self) -> dict:
        return {"entry": self.entry, "grid": list(self.grid), "block": list(self.block),
                "shared_bytes": self.shared_bytes, "args": list(self.args)}

    @classmethod
    def from_dict(cls, d: dict) -> "Launch":
        args = tuple(d["args"])
        bad = [a for a in args if a not in ARG_NAMES]
        if bad:
            raise ArtifactError(f"launch {d.get('entry')!r}: unknown argument {bad[0]!r}")
        return cls(entry=str(d["entry"]), grid=tuple(int(x) for x in d["grid"]),
                   block=tuple(int(x) for x in d["block"]), shared_bytes=int(d["shared_bytes"]),
                   args=args)


@dataclass
class KernelArtifact:
    backend: str  # "cuda" or "hip"
    target: str  # "sm_90a", "gfx942", ...
    binary: bytes  # cubin or hsaco
    launches: list[Launch]
    spec: dict  # GemmSpec.to_dict()
    config: dict  # TileConfig.to_dict(), opaque to the runtime
    workspace_bytes: int = 0
    resources: dict = field(default_factory=dict)  # per entry: registers, spills, shared
    toolchain: dict = field(default_factory=dict)  # versions that built it
    compile_seconds: float = 0.0
    assembly: str = ""  # PTX (or amdgcn assembly) for debugging; optional
    ir_stages: dict = field(default_factory=dict)  # stage name -> IR text; kept in memory only

    @property
    def binary_suffix(self) -> str:
        return ".cubin" if self.backend == "cuda" else ".hsaco"

    @property
    def assembly_file(self) -> str:
        return "kernel.ptx" if self.backend == "cuda" else "kernel.s"

    def metadata(self) -> dict:
        return {
            "format": FORMAT, "backend": self.backend, "target": self.target,
            "binary_file": "kernel" + self.binary_suffix, "binary_size": len(self.binary),
            "binary_sha256": hashlib.sha256(self.binary).hexdigest(),
            "launches": [l.to_dict() for l in self.launches], "spec": self.spec,
            "config": self.config, "workspace_bytes": self.workspace_bytes,
            "resources": self.resources, "toolchain": self.toolchain,
            "compile_seconds": self.compile_seconds,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write binary, assembly and kernel.json into `directory`, each file atomically.

        kernel.json is written last, so a reader that finds it finds a complete bundle."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = self.metadata()
        atomic_write(d / meta["binary_file"], self.binary)
        if self.assembly:
            atomic_write(d / self.assembly_file, self.assembly.encode())
        atomic_write(d / "kernel.json", json.dumps(meta, indent=1, sort_keys=True).encode())
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "KernelArtifact":
        d = Path(directory)
        try:
            meta = json.loads((d / "kernel.json").read_text())
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{d}: cannot read kernel.json ({e})") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ArtifactError(f"{d}: kernel.json is not a {FORMAT} bundle")
        try:
            binary = (d / meta["binary_file"]).read_bytes()
            if len(binary) != meta["binary_size"]:
                raise ArtifactError(f"{d}: binary is {len(binary)} bytes, "
                                    f"metadata says {meta['binary_size']} (truncated?)")
            digest = meta.get("binary_sha256")  # absent in bundles written before it existed
            if digest is not None and hashlib.sha256(binary).hexdigest() != digest:
                raise ArtifactError(f"{d}: binary does not match its sha256 (corrupt)")
            art = cls(backend=meta["backend"], target=meta["target"], binary=binary,
                      launches=[Launch.from_dict(l) for l in meta["launches"]],
                      spec=meta["spec"], config=meta["config"],
                      workspace_bytes=int(meta["workspace_bytes"]),
                      resources=meta.get("resources", {}), toolchain=meta.get("toolchain", {}),
                      compile_seconds=float(meta.get("compile_seconds", 0.0)))
            assembly = d / art.assembly_file
            if assembly.exists():
                art.assembly = assembly.read_text()
            return art
        except ArtifactError:
            raise
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{d}: malformed bundle ({type(e).__name__}: {e})") from e


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

