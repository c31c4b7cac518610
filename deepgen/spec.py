"""GemmSpec: what a GEMM computes, independent of how it is tiled.

    C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b]      for b in range(batch)

A is logically M x K and B is K x N; each is stored row-major ("N", the contiguous dimension
is the last one) or column-major ("T", stored as the transpose). C is always row-major M x N.
Batched operands are packed: operand b starts at b * (rows * cols) elements.

This module is shared by the compiler and the runtime and imports neither MLIR nor torch.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from deepgen.dims import Dim
from deepgen.dtypes import (DTYPES, FP8_DTYPES, INPUT_DTYPES, INT8_DTYPES, OUTPUT_DTYPES,
                            QUANTIZED_DTYPES)
from deepgen.epilogue import EpilogueSpec
from deepgen.errors import SpecError

# Bytes per element of every registered dtype (a view of deepgen.dtypes). Accumulation is f32.
DTYPE_BYTES = {name: d.bytes for name, d in DTYPES.items()}
LAYOUTS = ("NN", "NT", "TN", "TT")
# Largest value a 32-bit index computation in the kernel can address safely.
MAX_ELEMENTS = 2**31 - 1
# Scales of quantized (fp8, int8) inputs, applied to the f32 accumulator before the epilogue chain:
# "none"; "tensor": acc * scale_a * scale_b, two f32 scalars in device memory (1 element
# each; torch._scaled_mm's per-tensor form); "rowwise": acc[m, n] * scale_a[m] * scale_b[n]
# (M and N f32 values: per token of A times per channel of B, w8a8).
# "block" (fp8; DeepSeek-V3 / DeepGEMM's fine-grained scaling): scale_a per 1 x 128 block of A
# along K, stored (ceil(K/128), M) (M-major: the (M, K/128) scales' column-major storage, as
# DeepGEMM and torch's blockwise form take them), scale_b per 128 x 128 block of B (N, K),
# stored (ceil(N/128), ceil(K/128)) row-major; applied in the main loop per K block.
SCALES = ("none", "tensor", "rowwise", "block")
SCALE_BLOCK = 128
SCALE_OPERANDS = ("scale_a", "scale_b")


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise SpecError(f"{field}: {message}")


@dataclass(frozen=True)
class GemmSpec:
    # M: an int, or a range (deepgen.dims.Dim: one kernel for every M in min..max, M an i32
    # kernel argument; the compiler plans for max: `planning()`, the runtime binds `at(M)`)
    M: int | Dim
    N: int
    K: int
    batch: int = 1
    dtype: str = "f32"  # element type of A and B
    out_dtype: str | None = None  # element type of C; defaults to dtype
    layout: str = "NN"  # layout of A then B: N = row-major, T = column-major (transposed)
    allow_tf32: bool = False  # f32 inputs may use TF32 tensor cores (tensor-core path only)
    # What happens to the accumulator before the store (deepgen.epilogue); the default is
    # C = alpha * A @ B + beta * C.
    epilogue: EpilogueSpec = field(default_factory=EpilogueSpec)
    scale: str = "none"  # scales of fp8/int8 inputs (SCALES): operands scale_a and scale_b

    def __post_init__(self) -> None:
        if self.out_dtype is None:
            object.__setattr__(self, "out_dtype", self.dtype)
        object.__setattr__(self, "epilogue", EpilogueSpec.parse(self.epilogue))
        if isinstance(self.M, dict):  # a range as to_dict writes it
            object.__setattr__(self, "M", Dim.from_dict(self.M))
        self.validate()

    # -- ranges (deepgen.dims) -------------------------------------------------------------------
    @property
    def dynamic_m(self) -> bool:
        """Whether M is a range (one kernel for every M of it)."""
        return isinstance(self.M, Dim)

    @property
    def max_m(self) -> int:
        return self.M.max if self.dynamic_m else self.M

    def planning(self) -> GemmSpec:
        """The spec the compiler plans a range kernel for: M at its maximum (itself when M is
        an int)."""
        return dataclasses.replace(self, M=self.M.max) if self.dynamic_m else self

    def at(self, M: int) -> GemmSpec:
        """The exact spec at M (a range kernel bound to one size); ValueError naming M when M
        is outside the range."""
        if not self.dynamic_m:
            if M != self.M:
                raise ValueError(f"M: this spec has M = {self.M}, got {M}")
            return self
        self.M.check(M)
        return dataclasses.replace(self, M=M)

    def validate(self) -> None:
        for name in ("M", "N", "K", "batch"):
            value = getattr(self, name)
            if name == "M" and self.dynamic_m:
                value = self.M.max
            _require(isinstance(value, int) and not isinstance(value, bool), name,
                     f"must be an int, got {value!r}")
            _require(value >= 1, name, f"must be >= 1, got {value}")
        _require(self.dtype in INPUT_DTYPES, "dtype",
                 f"must be one of {INPUT_DTYPES}, got {self.dtype!r}")
        _require(self.out_dtype in OUTPUT_DTYPES, "out_dtype",
                 f"must be one of {OUTPUT_DTYPES}, got {self.out_dtype!r}")
        _require(self.layout in LAYOUTS, "layout",
                 f"must be one of {LAYOUTS}, got {self.layout!r}")
        _require(not self.allow_tf32 or self.dtype == "f32", "allow_tf32",
                 f"applies to f32 inputs only, got dtype {self.dtype!r}")
        _require(self.scale in SCALES, "scale", f"must be one of {SCALES}, got {self.scale!r}")
        _require(self.scale == "none" or self.dtype in QUANTIZED_DTYPES, "scale",
                 f"scales apply to quantized inputs ({', '.join(QUANTIZED_DTYPES)}), got dtype "
                 f"{self.dtype!r} with scale {self.scale!r}")
        for name, rows, cols in (("A", self.max_m, self.K), ("B", self.K, self.N),
                                 ("C", self.max_m, self.N)):
            total = self.batch * rows * cols
            _require(total <= MAX_ELEMENTS, f"{name} size",
                     f"batch*rows*cols = {total} exceeds the 32-bit index limit {MAX_ELEMENTS}")
        if self.dynamic_m:
            self.M.validate("M")
            if self.batch != 1:
                raise SpecError(f"batch: a range M is built for batch 1 only, got batch "
                                f"{self.batch}")
            if self.a_transposed and (self.M.multiple_of * DTYPE_BYTES.get(self.dtype, 1)) % 16:
                step = 16 // math.gcd(16, DTYPE_BYTES.get(self.dtype, 1))
                raise SpecError(f"M.multiple_of: layout {self.layout} stores A as K x M, whose "
                                f"row pitch must be a multiple of 16 bytes: multiple_of must be "
                                f"a multiple of {step} for {self.dtype}, got "
                                f"{self.M.multiple_of}")

    # Layout helpers: a transposed operand is stored with its rows and columns swapped.
    @property
    def a_transposed(self) -> bool:
        return self.layout[0] == "T"

    @property
    def b_transposed(self) -> bool:
        return self.layout[1] == "T"

    def stored_shape(self, operand: str) -> tuple[int, int]:
        """(rows, cols) of one matrix of `operand` as it lies in memory, row-major."""
        if operand == "A":
            return (self.K, self.M) if self.a_transposed else (self.M, self.K)
        if operand == "B":
            return (self.N, self.K) if self.b_transposed else (self.K, self.N)
        return (self.M, self.N)

    @property
    def is_fp8(self) -> bool:
        return self.dtype in FP8_DTYPES

    @property
    def is_int8(self) -> bool:
        return self.dtype in INT8_DTYPES

    @property
    def is_quantized(self) -> bool:
        """fp8 or int8 inputs (deepgen.dtypes.QUANTIZED_DTYPES): optional scales; wgmma
        (sm_90a), and for int8 mma_sync too (sm_80+)."""
        return self.dtype in QUANTIZED_DTYPES

    def operand_dtype(self, operand: str) -> str:
        if operand == "bias":  # fp8/int8 inputs: the output type's bias (as torch._scaled_mm)
            return self.epilogue.bias_dtype_for(self.out_dtype if self.is_quantized
                                                else self.dtype)
        if operand in SCALE_OPERANDS:
            return "f32"
        return self.out_dtype if operand == "C" else self.dtype

    def operands(self) -> tuple[str, ...]:
        """Named operands besides A, B, C: the epilogue's (bias), then the scales."""
        return self.epilogue.operands() + (SCALE_OPERANDS if self.scale != "none" else ())

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.M * self.N * self.K

    def to_dict(self) -> dict:
        """Plain JSON-able fields; the epilogue only when it is not the default, so that keys
        of specs written before the epilogue existed stay what they were."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.dynamic_m:
            d["M"] = self.M.to_dict()
        if self.scale == "none":  # keys of specs without scales stay what they were
            del d["scale"]
        if self.epilogue.is_default:
            del d["epilogue"]
        else:
            d["epilogue"] = self.epilogue.to_dict()
        return d

    def operand_shape(self, operand: str) -> tuple[int, ...]:
        """Elements of a named operand besides A/B/C: the bias is M (row) or N (col) long;
        a per-tensor scale 1, rowwise scale_a M and scale_b N; block scale_a (ceil(K/128), M),
        scale_b (ceil(N/128), ceil(K/128))."""
        if operand == "bias":
            return (self.M,) if self.epilogue.bias == "row" else (self.N,)
        if operand in SCALE_OPERANDS:
            if self.scale == "tensor":
                return (1,)
            if self.scale == "block":
                kb = -(-self.K // SCALE_BLOCK)
                return (kb, self.M) if operand == "scale_a" else (-(-self.N // SCALE_BLOCK), kb)
            return (self.M,) if operand == "scale_a" else (self.N,)
        return (self.batch, *self.stored_shape(operand))

    @classmethod
    def from_dict(cls, d: dict) -> "GemmSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"{unknown[0]}: not a GemmSpec field (fields: {sorted(known)})")
        return cls(**d)
