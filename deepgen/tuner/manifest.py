"""Candidates and the bundle index: what a tune run compiles and what `deepgen bench` reads.

A bundle directory (portable: it is all a GPU host needs, with the runtime alone) holds

    index.json           format "deepgen-tune-bundle/1": the run's shapes (with the space
                         report) and candidates (id, shape, spec, config, target, dir, compile)
    kernels/<id>/        one kernel bundle per compiled candidate (KernelArtifact.save)
    journal.jsonl        what finished (see journal.py); its compile records win over index.json

A candidate id is a hash of (spec, config, target): the same point gets the same id in every
run, which is what lets --resume skip it. Imports neither MLIR nor torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepgen.spec import GemmSpec

from .journal import latest, read_journal, write_json

BUNDLE_FORMAT = "deepgen-tune-bundle/1"
INDEX = "index.json"


class BundleError(ValueError):
    """A bundle directory is missing, malformed, or from another format."""


def shape_key(spec: GemmSpec) -> str:
    """A readable, unique name of a problem: 4096x4096x4096_f32_NN, 512x512x512_b64_bf16-f32_TN."""
    batch = f"_b{spec.batch}" if spec.batch > 1 else ""
    dtype = spec.dtype if spec.out_dtype == spec.dtype else f"{spec.dtype}-{spec.out_dtype}"
    tf32 = "_tf32" if spec.allow_tf32 else ""
    return f"{spec.M}x{spec.N}x{spec.K}{batch}_{dtype}{tf32}_{spec.layout}"


def candidate_id(spec: GemmSpec, config: dict, target: str) -> str:
    text = json.dumps({"spec": spec.to_dict(), "config": config, "target": target},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Candidate:
    spec: GemmSpec
    config: dict  # TileConfig.to_dict()
    target: str
    default: bool = False  # the default heuristic's own config (always tried)
    compile: dict = field(default_factory=dict)  # compile record once compiled

    @property
    def id(self) -> str:
        return candidate_id(self.spec, self.config, self.target)

    @property
    def shape(self) -> str:
        return shape_key(self.spec)

    @property
    def dir(self) -> str:
        return f"kernels/{self.id}"

    def to_dict(self) -> dict:
        return {"id": self.id, "shape": self.shape, "spec": self.spec.to_dict(),
                "config": self.config, "target": self.target, "default": self.default,
                "dir": self.dir, "compile": self.compile}

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        return cls(spec=GemmSpec.from_dict(d["spec"]), config=dict(d["config"]),
                   target=d["target"], default=bool(d.get("default")),
                   compile=dict(d.get("compile") or {}))


def write_index(directory: str | os.PathLike, name: str, shapes: list[dict],
                candidates: list[Candidate], extra: dict | None = None) -> None:
    """index.json with each candidate's compile record taken from the journal when present."""
    d = Path(directory)
    _merge_compiled(d, candidates)
    write_json(d / INDEX, {"format": BUNDLE_FORMAT, "name": name,
                           "created": time.strftime("%Y-%m-%d %H:%M:%S"), **(extra or {}),
                           "shapes": shapes, "candidates": [c.to_dict() for c in candidates]})


def _merge_compiled(directory: Path, candidates: list[Candidate]) -> None:
    """Each candidate's compile record from the journal, when it has one."""
    keep = ("ok", "error", "seconds", "resources", "binary_size")
    compiled = latest(read_journal(directory), "compile")
    for c in candidates:
        if c.id in compiled:
            c.compile = {k: compiled[c.id][k] for k in keep if k in compiled[c.id]}


def load_index(directory: str | os.PathLike) -> tuple[dict, list[Candidate]]:
    """(index without candidates, candidates), compile records updated from the journal."""
    d = Path(directory)
    try:
        index = json.loads((d / INDEX).read_text())
    except FileNotFoundError:
        raise BundleError(f"{d}: no {INDEX}: not a tune bundle (make one with "
                          f"`deepgen tune CONFIG --compile-only --out {d}`)") from None
    except ValueError as e:
        raise BundleError(f"{d / INDEX}: not valid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{d / INDEX}: format is {index.get('format')!r}, "
                          f"expected {BUNDLE_FORMAT!r}")
    try:
        cands = [Candidate.from_dict(c) for c in index.pop("candidates")]
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{d / INDEX}: malformed candidate ({type(e).__name__}: {e})") from None
    _merge_compiled(d, cands)
    return index, cands


def bundle_size(directory: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
