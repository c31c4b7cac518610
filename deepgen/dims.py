"""Dim: a GEMM dimension known only as a range at compile time (issue 17, runtime shapes).

    GemmSpec(M=Dim(max=2048, min=257), N=4096, K=4096, dtype="bf16", layout="NT")

declares a kernel that serves every M in min..max (in steps of `multiple_of`): M becomes an
i32 kernel parameter, the grid a size rule over M evaluated at launch (runtime/artifact.py)
and the kernel guards the rows beyond M. The compiler plans the kernel for M = max (as TVM's
dynamic dimensions with max_data do); only what must be static (N, K, the alignment a TMA row
pitch needs) stays static.

M_RANGES are the ranges deepgen.gemm's range table and deepgen.routing use (the same
boundaries: 1-16, 17-64, 65-256, 257-2048, 2049 up to a maximum, DEFAULT_MAX_M unless given).

This module imports neither MLIR nor torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from deepgen.errors import SpecError

# The M ranges of the range table; deepgen/routing.py RANGES has the same boundaries.
M_RANGES = ((1, 16), (17, 64), (65, 256), (257, 2048), (2049, None))
DEFAULT_MAX_M = 16384  # the last range's maximum unless the caller gives one


@dataclass(frozen=True)
class Dim:
    """A dimension in min..max, a multiple of `multiple_of` (1: any)."""

    max: int
    multiple_of: int = 1
    min: int = 1

    def __post_init__(self) -> None:
        self.validate("M")

    def validate(self, field: str) -> None:
        """SpecError naming `field` (e.g. "M") and the limit when the range is malformed."""
        for name in ("max", "multiple_of", "min"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise SpecError(f"{field}.{name}: must be an int, got {v!r}")
            if v < 1:
                raise SpecError(f"{field}.{name}: must be >= 1, got {v}")
        if self.min > self.max:
            raise SpecError(f"{field}.min: {self.min} exceeds {field}.max {self.max}")

    def contains(self, value: int) -> bool:
        return self.min <= value <= self.max and value % self.multiple_of == 0

    def check(self, value: int, field: str = "M") -> None:
        """ValueError naming `field` when `value` is outside the range."""
        if not self.contains(value):
            raise ValueError(f"{field}: {value} is outside this kernel's range {self}")

    def to_dict(self) -> dict:
        return {"max": self.max, "multiple_of": self.multiple_of, "min": self.min}

    @classmethod
    def from_dict(cls, d, field: str = "M") -> Dim:
        if not isinstance(d, dict):
            raise SpecError(f"{field}: a range is an object {{max, multiple_of, min}}, got {d!r}")
        unknown = sorted(set(d) - {"max", "multiple_of", "min"})
        if unknown:
            raise SpecError(f"{field}.{unknown[0]}: not a Dim field (fields: max, "
                            f"multiple_of, min)")
        if "max" not in d:
            raise SpecError(f"{field}.max: a range needs a maximum")
        return cls(**d)

    def __str__(self) -> str:
        step = f" step {self.multiple_of}" if self.multiple_of > 1 else ""
        return f"{self.min}..{self.max}{step}"


def is_dim(value) -> bool:
    return isinstance(value, Dim)


def range_of(M: int, max_m: int = DEFAULT_MAX_M) -> Dim:
    """The M_RANGES range that holds M, as a Dim (the last one up to `max_m`); ValueError
    naming M when M is outside 1..max_m."""
    if not isinstance(M, int) or isinstance(M, bool) or not 1 <= M <= max_m:
        raise ValueError(f"M: {M!r} is outside the range table's 1..{max_m} (max_m)")
    for lo, hi in M_RANGES:
        if hi is None or M <= hi:
            return Dim(max=min(max_m, hi) if hi is not None else max_m, min=lo)
    raise AssertionError("unreachable")


def ranges_up_to(max_m: int = DEFAULT_MAX_M) -> list[Dim]:
    """Every range of the table that holds some M in 1..max_m."""
    out = []
    for lo, hi in M_RANGES:
        if lo > max_m:
            break
        out.append(Dim(max=max_m if hi is None else min(hi, max_m), min=lo))
    return out


def range_label(d: Dim) -> str:
    return f"{d.min}-{d.max}"


__all__ = [
    "DEFAULT_MAX_M",
    "M_RANGES",
    "Dim",
    "is_dim",
    "range_label",
    "range_of",
    "ranges_up_to",
]
