"""KernelArtifact: what the compiler hands the runtime, and what a bundle holds on disk.

A kernel is one GPU binary (cubin or hsaco) with one or more entry points, launched in order
(split-K adds a reduction launch after the main one). Each launch carries its **signature**:
the kernel's parameters in order, each a `Param` with a name and a kind:

    ptr        device pointer of a named operand ("A", "B", "C", "bias", ...), with its dtype
               (a deepgen.dtypes name) and its shape as size rules, e.g. ("batch", "M", "K")
               for row-major A, ("N",) for a column bias (elements, outermost first; packed)
    workspace  device pointer of a scratch buffer of the artifact's `workspace_bytes`
    f32        a float scalar passed by the caller ("alpha", "beta")
    i32, i64   an integer scalar whose value is a size rule ("M", "cdiv(K, 64)", ...)
    tma        a by-value 128-byte CUtensorMap the runtime encodes (cuTensorMapEncodeTiled)
               from the operand `operand` (its dtype and shape rule, as for ptr), with a box
               shape (outermost first, one entry per dimension), element strides, swizzle
               (0/32/64/128 bytes), interleave (0: none), L2 promotion (0/64/128/256 bytes)
               and out-of-bounds fill ("none" or "nan")

A **size rule** is an int or a small expression over the problem sizes M, N, K and batch:
ints, + - * //, cdiv(a, b), min(a, b, ...), max(a, b, ...) and parentheses. Rules are parsed
with `ast` against a whitelist (nothing is eval'ed) and evaluated at launch from the actual
sizes: the grid (one rule per dimension), the workspace size, operand shapes and integer
scalars. Today's kernels have static sizes and the compiler writes plain ints; the rules are
the contract a runtime-shape kernel will use.

A launch may carry a cluster shape (3 ints; launched with cuLaunchKernelEx).

    {"entry": "k", "grid": ["cdiv(N, 128)", "cdiv(M, 128)", "batch"], "block": [384, 1, 1],
     "shared_bytes": 197632, "cluster": [2, 1, 1],
     "params": [{"name": "A", "kind": "tma", "operand": "A", "dtype": "bf16",
                 "shape": ["batch", "M", "K"], "box": [1, 128, 64], "swizzle": 128, ...},
                {"name": "C", "kind": "ptr", "dtype": "bf16", "shape": ["batch", "M", "N"]},
                {"name": "alpha", "kind": "f32"}, {"name": "K", "kind": "i32", "value": "K"}]}

Bundles of format deepgen-kernel/1 (launches with "args" name lists from the fixed vocabulary
A, B, C, W, alpha, beta and int grids) still load: the names map to ptr (A, B, C), workspace
(W) and f32 (alpha, beta) params, typed from the bundle's spec.

`param_for(name, spec)` is the one table from the names the compiler writes into its kernels
(`deepgen.args`) to Params: the compiler and the bundle reader both use it.

This module imports neither MLIR nor torch.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Union

from deepgen.dtypes import DTYPES

FORMAT = "deepgen-kernel/2"
FORMAT_V1 = "deepgen-kernel/1"  # "args" name lists, int grids: still read
READ_FORMATS = (FORMAT_V1, FORMAT)

KINDS = ("ptr", "workspace", "f32", "i32", "i64", "tma")
SIZE_NAMES = ("M", "N", "K", "batch")
# The fixed vocabulary of deepgen-kernel/1 and its kinds.
LEGACY_KINDS = {"A": "ptr", "B": "ptr", "C": "ptr", "W": "workspace", "alpha": "f32",
                "beta": "f32"}
ARG_NAMES = tuple(LEGACY_KINDS)
POINTER_ARGS = ("A", "B", "C", "W")
# Names the compiler writes into deepgen.args -> kind (param_for adds dtype, shape, value).
ARGUMENT_KINDS = {**LEGACY_KINDS, "bias": "ptr", "scale_a": "ptr", "scale_b": "ptr",
                  "M": "i32", "N": "i32", "K": "i32",
                  "batch": "i32"}

TMA_SWIZZLES = (0, 32, 64, 128)  # bytes
TMA_INTERLEAVES = (0, 16, 32)  # bytes; 0: none
TMA_L2_PROMOTIONS = (0, 64, 128, 256)  # bytes
TMA_OOB_FILLS = ("none", "nan")
TMA_MAX_RANK = 5
TMA_MAX_BOX = 256

Rule = Union[int, str]


class ArtifactError(ValueError):
    """A kernel bundle or cache entry is malformed, truncated or from another format."""


# -- size rules ------------------------------------------------------------------------------

_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.FloorDiv: lambda a, b: a // b}
_BINOP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//"}
MAX_RULE_CHARS = 256
_CALLS = {"cdiv": (2, 2), "min": (2, None), "max": (2, None)}


def _node_name(node) -> str:
    return type(node).__name__


@functools.lru_cache(maxsize=1024)
def _compile_rule(text: str):
    """A function of a sizes dict for rule `text`; ValueError naming what is not allowed."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an expression ({e.msg})") from None

    def build(node):
        if isinstance(node, ast.Constant):
            if type(node.value) is not int:
                raise ValueError(f"constant {node.value!r} is not an int")
            v = node.value
            return lambda s: v
        if isinstance(node, ast.Name):
            name = node.id
            if name not in SIZE_NAMES:
                raise ValueError(f"unknown name {name!r} (rules use {', '.join(SIZE_NAMES)})")
            return lambda s: s[name]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            fn, lhs, rhs = _BINOPS[type(node.op)], build(node.left), build(node.right)
            if isinstance(node.op, ast.FloorDiv):
                def div(s):
                    d = rhs(s)
                    if d == 0:
                        raise ValueError("division by zero")
                    return lhs(s) // d
                return div
            return lambda s: fn(lhs(s), rhs(s))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            x = build(node.operand)
            return lambda s: -x(s)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise ValueError(f"{_node_name(node.func)} is not allowed (functions: "
                                 f"{', '.join(_CALLS)})")
            if node.func.id not in _CALLS:
                raise ValueError(f"call of {node.func.id!r} is not allowed (functions: "
                                 f"{', '.join(_CALLS)})")
            if node.keywords:
                raise ValueError(f"{node.func.id}: takes no keyword arguments")
            lo, hi = _CALLS[node.func.id]
            if len(node.args) < lo or (hi is not None and len(node.args) > hi):
                raise ValueError(f"{node.func.id}: takes {lo if hi == lo else f'{lo} or more'} "
                                 f"arguments, got {len(node.args)}")
            args = [build(a) for a in node.args]
            if node.func.id == "cdiv":
                def cdiv(s):
                    a, b = args[0](s), args[1](s)
                    if b == 0:
                        raise ValueError("cdiv by zero")
                    return -(-a // b)
                return cdiv
            agg = min if node.func.id == "min" else max
            return lambda s: agg(f(s) for f in args)
        what = _node_name(node)
        if isinstance(node, ast.BinOp):
            what = f"operator {_node_name(node.op)}"
        raise ValueError(f"{what} is not allowed (rules take ints, M, N, K, batch, "
                         f"+ - * //, cdiv, min, max)")

    return build(tree.body)


def check_rule(rule: Rule, where: str) -> Rule:
    """`rule` if it is a valid size rule, else ArtifactError naming `where`."""
    if type(rule) is int:
        return rule
    if not isinstance(rule, str):
        raise ArtifactError(f"{where}: a size rule is an int or a string, got "
                            f"{type(rule).__name__} {rule!r}")
    if len(rule) > MAX_RULE_CHARS:
        raise ArtifactError(f"{where}: rule of {len(rule)} characters, at most "
                            f"{MAX_RULE_CHARS}")
    try:
        _compile_rule(rule)
    except ValueError as e:
        raise ArtifactError(f"{where}: rule {rule!r}: {e}") from None
    return rule


def eval_rule(rule: Rule, sizes: dict, where: str = "rule") -> int:
    """The value of a size rule at `sizes` ({"M": .., "N": .., "K": .., "batch": ..})."""
    if type(rule) is int:
        return rule
    check_rule(rule, where)
    try:
        return int(_compile_rule(rule)(sizes))
    except KeyError as e:
        raise ArtifactError(f"{where}: rule {rule!r}: no size {e.args[0]!r} given") from None
    except ValueError as e:
        raise ArtifactError(f"{where}: rule {rule!r}: {e}") from None


def sizes_of(spec) -> dict:
    """The sizes a spec's rules are evaluated at (a GemmSpec or its dict)."""
    get = spec.get if isinstance(spec, dict) else lambda k, d=None: getattr(spec, k, d)
    return {"M": get("M"), "N": get("N"), "K": get("K"), "batch": get("batch", 1) or 1}


def _rules(value, where: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ArtifactError(f"{where}: expected a list of size rules, got {value!r}")
    return tuple(check_rule(r, f"{where}[{i}]") for i, r in enumerate(value))


# -- the signature -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One kernel parameter (see the module docstring for the kinds)."""

    name: str
    kind: str
    dtype: str | None = None  # ptr, tma: element type (None: from the spec, legacy names)
    shape: tuple | None = None  # ptr, tma: size rules of the operand, outermost first
    value: Rule | None = None  # i32, i64: size rule of the value (default: the name)
    operand: str | None = None  # tma: the operand it describes (default: the name)
    box: tuple | None = None  # tma: elements per dimension, outermost first
    element_strides: tuple | None = None  # tma: default all 1
    swizzle: int = 0  # tma: bytes, 0/32/64/128
    interleave: int = 0  # tma: bytes, 0 (none)/16/32
    l2_promotion: int = 128  # tma: bytes, 0/64/128/256
    oob_fill: str = "none"  # tma: "none" or "nan"

    def __post_init__(self) -> None:
        where = f"param {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ArtifactError(f"param: a name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise ArtifactError(f"{where}: unknown kind {self.kind!r} (kinds: "
                                f"{', '.join(KINDS)})")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ArtifactError(f"{where}: unknown dtype {self.dtype!r} (known: "
                                f"{', '.join(DTYPES)})")
        if self.shape is not None:
            object.__setattr__(self, "shape", _rules(self.shape, f"{where}: shape"))
        if self.kind in ("i32", "i64"):
            object.__setattr__(self, "value", check_rule(
                self.name if self.value is None else self.value, f"{where}: value"))
        elif self.value is not None:
            raise ArtifactError(f"{where}: only i32/i64 params have a value rule")
        if self.kind == "tma":
            self._check_tma(where)

    def _check_tma(self, where: str) -> None:
        if self.operand is None:
            object.__setattr__(self, "operand", self.name)
        if self.dtype is None or self.shape is None or self.box is None:
            raise ArtifactError(f"{where}: a tma param needs dtype, shape and box")
        rank = len(self.shape)
        if not 1 <= rank <= TMA_MAX_RANK:
            raise ArtifactError(f"{where}: rank {rank}, TMA takes 1 to {TMA_MAX_RANK}")
        box = tuple(self.box)
        if len(box) != rank or any(type(b) is not int or not 1 <= b <= TMA_MAX_BOX for b in box):
            raise ArtifactError(f"{where}: box {list(box)} must have {rank} ints in 1.."
                                f"{TMA_MAX_BOX} (one per dimension of shape)")
        object.__setattr__(self, "box", box)
        es = tuple(self.element_strides) if self.element_strides is not None else (1,) * rank
        if len(es) != rank or any(type(e) is not int or not 1 <= e <= 8 for e in es):
            raise ArtifactError(f"{where}: element_strides {list(es)} must have {rank} ints "
                                f"in 1..8")
        object.__setattr__(self, "element_strides", es)
        for name, allowed in (("swizzle", TMA_SWIZZLES), ("interleave", TMA_INTERLEAVES),
                              ("l2_promotion", TMA_L2_PROMOTIONS), ("oob_fill", TMA_OOB_FILLS)):
            if getattr(self, name) not in allowed:
                raise ArtifactError(f"{where}: {name} {getattr(self, name)!r} not in "
                                    f"{list(allowed)}")
        inner = box[-1] * DTYPES[self.dtype].bytes
        if self.interleave == 0 and inner % 16:
            raise ArtifactError(f"{where}: the box's inner dimension is {inner} bytes, TMA "
                                f"needs a multiple of 16")
        if self.interleave == 0 and self.swizzle and inner > self.swizzle:
            raise ArtifactError(f"{where}: the box's inner dimension is {inner} bytes, more "
                                f"than the {self.swizzle}-byte swizzle span")

    @property
    def pointer_name(self) -> str | None:
        """The operand whose device pointer this param is built from (ptr, tma)."""
        if self.kind == "ptr":
            return self.name
        return self.operand if self.kind == "tma" else None

    def to_dict(self) -> dict:
        d = {"name": self.name, "kind": self.kind}
        if self.dtype is not None:
            d["dtype"] = self.dtype
        if self.shape is not None:
            d["shape"] = list(self.shape)
        if self.kind in ("i32", "i64"):
            d["value"] = self.value
        if self.kind == "tma":
            d.update(operand=self.operand, box=list(self.box),
                     element_strides=list(self.element_strides), swizzle=self.swizzle,
                     interleave=self.interleave, l2_promotion=self.l2_promotion,
                     oob_fill=self.oob_fill)
        return d

    @classmethod
    def from_dict(cls, d) -> "Param":
        if isinstance(d, str):  # a name of the deepgen-kernel/1 vocabulary
            return legacy_param(d)
        if not isinstance(d, dict):
            raise ArtifactError(f"param: expected an object, got {d!r}")
        known = {"name", "kind", "dtype", "shape", "value", "operand", "box",
                 "element_strides", "swizzle", "interleave", "l2_promotion", "oob_fill"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArtifactError(f"param {d.get('name')!r}: unknown field {unknown[0]!r}")
        if "name" not in d or "kind" not in d:
            raise ArtifactError(f"param {d.get('name')!r}: needs a name and a kind")
        return cls(**d)


def legacy_param(name: str) -> Param:
    """The Param of a deepgen-kernel/1 argument name (untyped: see resolve_params)."""
    kind = LEGACY_KINDS.get(name)
    if kind is None:
        raise ArtifactError(f"unknown argument {name!r} (the deepgen-kernel/1 names: "
                            f"{', '.join(ARG_NAMES)})")
    return Param(name, kind)


def operand_shape_rule(name: str, spec) -> tuple:
    """The shape of a named pointer operand as size rules (packed layout, outermost first)."""
    if name == "A":
        return ("batch", "K", "M") if spec.a_transposed else ("batch", "M", "K")
    if name == "B":
        return ("batch", "N", "K") if spec.b_transposed else ("batch", "K", "N")
    if name == "C":
        return ("batch", "M", "N")
    if name == "bias":
        bias = spec.epilogue.bias
        if bias is None:
            raise ArtifactError("bias: the spec's epilogue has no bias step")
        return ("M",) if bias == "row" else ("N",)
    if name in ("scale_a", "scale_b"):  # GemmSpec.scale: 1 value, or M (A) / N (B) values
        scale = getattr(spec, "scale", "none")
        if scale == "none":
            raise ArtifactError(f"{name}: the spec has no scales (scale 'none')")
        if scale == "block":  # per K block of 128 (A: x 1 row; B: x 128 rows of N)
            kb = -(-spec.K // 128)
            return (kb, "M") if name == "scale_a" else (-(-spec.N // 128), kb)
        return (1,) if scale == "tensor" else ("M",) if name == "scale_a" else ("N",)
    raise ArtifactError(f"operand {name!r}: no shape rule (operands: A, B, C, bias, scale_a, "
                        f"scale_b)")


def param_for(name: str, spec) -> Param:
    """The Param of a kernel argument named in a kernel's `deepgen.args` (the one table from
    names to kinds; pointer operands take their dtype and shape rule from `spec`, a GemmSpec)."""
    kind = ARGUMENT_KINDS.get(name)
    if kind is None:
        raise ArtifactError(f"kernel argument {name!r}: not a known name (known: "
                            f"{', '.join(ARGUMENT_KINDS)})")
    if kind == "ptr":
        return Param(name, "ptr", dtype=spec.operand_dtype(name),
                     shape=operand_shape_rule(name, spec))
    if kind in ("i32", "i64"):
        return Param(name, kind, value=name)
    return Param(name, kind)


def tma_param(name: str, operand: str, spec, box, *, swizzle: int = 128,
              l2_promotion: int = 128, oob_fill: str = "none", element_strides=None) -> Param:
    """A tma Param describing `operand` (dtype and shape from `spec`) with `box`."""
    return Param(name, "tma", dtype=spec.operand_dtype(operand),
                 shape=operand_shape_rule(operand, spec), operand=operand, box=tuple(box),
                 swizzle=swizzle, l2_promotion=l2_promotion, oob_fill=oob_fill,
                 element_strides=element_strides)


def resolve_params(params, spec) -> tuple:
    """`params` with untyped pointer params (deepgen-kernel/1 names) typed from `spec`."""
    if all(p.kind != "ptr" or p.dtype is not None for p in params):
        return tuple(params)
    return tuple(replace(p, dtype=spec.operand_dtype(p.name),
                         shape=operand_shape_rule(p.name, spec))
                 if p.kind == "ptr" and p.dtype is None else p for p in params)


@dataclass(frozen=True)
class Launch:
    entry: str  # symbol name in the binary
    grid: tuple  # three size rules (ints for static kernels)
    block: tuple[int, int, int]
    shared_bytes: int  # dynamic shared memory
    params: tuple  # Params in parameter order; names of deepgen-kernel/1 are accepted
    cluster: tuple[int, int, int] | None = None  # thread-block cluster (cuLaunchKernelEx)

    def __post_init__(self) -> None:
        where = f"launch {self.entry!r}"
        try:
            params = tuple(p if isinstance(p, Param) else Param.from_dict(p)
                           for p in self.params)
        except ArtifactError as e:
            raise ArtifactError(f"{where}: {e}") from None
        object.__setattr__(self, "params", params)
        names = [p.name for p in params]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ArtifactError(f"{where}: param {dup!r} appears twice")
        grid = tuple(self.grid)
        if len(grid) != 3:
            raise ArtifactError(f"{where}: grid needs 3 rules, got {list(grid)}")
        object.__setattr__(self, "grid", tuple(check_rule(g, f"{where}: grid[{i}]")
                                               for i, g in enumerate(grid)))
        for name in ("block", "cluster"):
            value = getattr(self, name)
            if value is None:
                continue
            value = tuple(value)
            if len(value) != 3 or any(type(x) is not int or x < 1 for x in value):
                raise ArtifactError(f"{where}: {name} must be 3 positive ints, got "
                                    f"{list(value)}")
            object.__setattr__(self, name, value)

    @property
    def args(self) -> tuple[str, ...]:
        """The parameter names in order (what deepgen-kernel/1 called the arguments)."""
        return tuple(p.name for p in self.params)

    def grid_for(self, sizes: dict) -> tuple[int, int, int]:
        """The grid at `sizes`; ArtifactError naming the launch if a rule fails or is < 1."""
        grid = tuple(eval_rule(g, sizes, f"launch {self.entry!r}: grid[{i}]")
                     for i, g in enumerate(self.grid))
        if min(grid) < 1 or max(grid) >= 2**31:
            raise ArtifactError(f"launch {self.entry!r}: grid {list(grid)} at {sizes} is out "
                                f"of range (each dimension 1 .. 2^31-1)")
        return grid

    def to_dict(self) -> dict:
        d = {"entry": self.entry, "grid": list(self.grid), "block": list(self.block),
             "shared_bytes": self.shared_bytes, "params": [p.to_dict() for p in self.params]}
        if self.cluster is not None:
            d["cluster"] = list(self.cluster)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Launch":
        if "params" in d:
            params = d["params"]
        else:  # deepgen-kernel/1
            try:
                params = tuple(legacy_param(a) for a in d["args"])
            except ArtifactError as e:
                raise ArtifactError(f"launch {d.get('entry')!r}: {e}") from None
        return cls(entry=str(d["entry"]), grid=tuple(d["grid"]),
                   block=tuple(int(x) for x in d["block"]), shared_bytes=int(d["shared_bytes"]),
                   params=tuple(params), cluster=tuple(d["cluster"]) if d.get("cluster")
                   else None)


@dataclass
class KernelArtifact:
    backend: str  # "cuda" or "hip"
    target: str  # "sm_90a", "gfx942", ...
    binary: bytes  # cubin or hsaco
    launches: list[Launch]
    spec: dict  # GemmSpec.to_dict()
    config: dict  # TileConfig.to_dict(), opaque to the runtime
    workspace_bytes: Rule = 0  # a size rule (an int for static kernels)
    resources: dict = field(default_factory=dict)  # per entry: registers, spills, shared
    toolchain: dict = field(default_factory=dict)  # versions that built it
    compile_seconds: float = 0.0
    assembly: str = ""  # PTX (or amdgcn assembly) for debugging; optional
    ir_stages: dict = field(default_factory=dict)  # stage name -> IR text; kept in memory only

    def __post_init__(self) -> None:
        self.launches = self.resolved_launches()

    @property
    def binary_suffix(self) -> str:
        return ".cubin" if self.backend == "cuda" else ".hsaco"

    @property
    def assembly_file(self) -> str:
        return "kernel.ptx" if self.backend == "cuda" else "kernel.s"

    def resolved_launches(self) -> list[Launch]:
        """The launches with untyped pointer params (deepgen-kernel/1 names) typed from the
        spec; the launches as they are when the spec does not parse."""
        if all(p.kind != "ptr" or p.dtype is not None for l in self.launches for p in l.params):
            return list(self.launches)
        from deepgen.spec import GemmSpec

        try:
            spec = GemmSpec.from_dict(self.spec)
        except Exception:  # noqa: BLE001 - a bad spec is reported where it is used
            return list(self.launches)
        return [replace(l, params=resolve_params(l.params, spec)) for l in self.launches]

    def workspace_for(self, sizes: dict) -> int:
        """Workspace bytes at `sizes`."""
        n = eval_rule(self.workspace_bytes, sizes, "workspace_bytes")
        if n < 0:
            raise ArtifactError(f"workspace_bytes: rule {self.workspace_bytes!r} gives {n} "
                                f"at {sizes}")
        return n

    def metadata(self) -> dict:
        return {
            "format": FORMAT, "backend": self.backend, "target": self.target,
            "binary_file": "kernel" + self.binary_suffix, "binary_size": len(self.binary),
            "binary_sha256": hashlib.sha256(self.binary).hexdigest(),
            "launches": [l.to_dict() for l in self.resolved_launches()], "spec": self.spec,
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
        if not isinstance(meta, dict) or meta.get("format") not in READ_FORMATS:
            raise ArtifactError(f"{d}: kernel.json is not a {FORMAT} (or {FORMAT_V1}) bundle")
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
                      workspace_bytes=check_rule(meta["workspace_bytes"], "workspace_bytes"),
                      resources=meta.get("resources", {}), toolchain=meta.get("toolchain", {}),
                      compile_seconds=float(meta.get("compile_seconds", 0.0)))
            assembly = d / art.assembly_file
            if assembly.exists():
                art.assembly = assembly.read_text()
            return art
        except ArtifactError as e:
            raise ArtifactError(f"{d}: {e}" if str(d) not in str(e) else str(e)) from None
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
