"""The one dtype registry: every table of element types in DeepGen reads this one.

A DType names an element type the way each layer spells it: DeepGen's name ("bf16"), its
size, torch's dtype attribute ("bfloat16"), MLIR's type ("bf16"), PTX's type (".bf16"), and
the tolerance a GEMM result of that output type is checked with against float64 (relative
Frobenius error; DESIGN.md). Adding a dtype touches this table; `compiled` says whether
DeepGen's kernels take it yet.

This module imports neither MLIR nor torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    name: str  # DeepGen's name, as in GemmSpec.dtype
    bytes: int
    torch: str  # attribute of the torch module: getattr(torch, d.torch)
    mlir: str  # MLIR type text: ir.Type.parse(d.mlir)
    ptx: str  # PTX type suffix (mma operand types, cvt)
    tolerance: float  # relative Frobenius error limit of a result of this output type
    compiled: bool = True  # DeepGen's kernels take it today
    storage: bool = True  # a tensor element type (tf32 is only a math mode of f32 data)
    output: bool = True  # the kernels can store C (and read a bias) of this type


DTYPES: dict[str, DType] = {d.name: d for d in (
    DType("f32", 4, "float32", "f32", "f32", 1e-5),
    DType("f16", 2, "float16", "f16", "f16", 1e-3),
    DType("bf16", 2, "bfloat16", "bf16", "bf16", 4e-3),
    # f32 data multiplied on TF32 tensor cores (GemmSpec.allow_tf32): a math mode, not storage
    DType("tf32", 4, "float32", "f32", "tf32", 1e-3, storage=False),
    # fp8 inputs (the wgmma strategy, layout NT; C is f32, f16 or bf16): the limit of the
    # result against float64 of the dequantized inputs (a * scale_a) @ (b * scale_b), so the
    # inputs' own rounding does not count, only the kernel's: fp8 wgmma's accumulator keeps
    # fewer bits than f32 (DeepSeek-V3 reports about 14), an error that grows with K, plus
    # the output's rounding. Measured on the H200 2026-12-02 (test_fp8_gpu.py, random normal
    # data): bf16 out 2.1e-3 at K = 4096 and 3.3e-3 at K = 14336 (torch._scaled_mm 1.7e-3,
    # its bf16 rounding alone), f16 out 5.8e-4 at K = 1040, f32 out 5.4e-4 (K = 4096 in
    # split-K slices of 1024) and 1.7e-4 (e5m2, K = 384). 6e-3 holds K <= 16384 with room
    # (applied as max(this, the output type's)); a larger K needs DeepGEMM's promotion of the
    # partial sums to f32 registers.
    DType("e4m3", 1, "float8_e4m3fn", "f8E4M3FN", "e4m3", 6e-3, output=False),
    DType("e5m2", 1, "float8_e5m2", "f8E5M2", "e5m2", 6e-3, output=False),
    # int8 inputs (w8a8; the wgmma strategy, layout NT): s32 accumulation on the tensor cores
    # (exact), converted to f32 in the epilogue (exact while |acc| < 2^24, e.g. K <= 1024 at
    # full-range +-127 inputs; beyond, one f32 rounding, 6e-8 relative), then the scales and
    # the chain in f32: only the f32 rounding of the scaling and the output's remain (applied
    # as max(this, the output type's)).
    DType("int8", 1, "int8", "i8", "s8", 1e-6, output=False),
)}

# Element types of A/B and of C (and of a bias) that the kernels take today.
INPUT_DTYPES = tuple(n for n, d in DTYPES.items() if d.compiled and d.storage)
OUTPUT_DTYPES = tuple(n for n in INPUT_DTYPES if DTYPES[n].output)
# Quantized inputs: only the wgmma strategy multiplies them (sm_90a, layout NT), optionally
# with scales (GemmSpec.scale); every other strategy rejects them by name.
FP8_DTYPES = ("e4m3", "e5m2")
INT8_DTYPES = ("int8",)
QUANTIZED_DTYPES = FP8_DTYPES + INT8_DTYPES  # fp8 or int8: wgmma m64nNk32, scales, NT only


def dtype(name: str) -> DType:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype: unknown {name!r}; known: {sorted(DTYPES)}") from None


def size(name: str) -> int:
    """Bytes per element."""
    return dtype(name).bytes


def torch_dtype(name: str):
    """The torch.dtype of a DeepGen dtype name (imports torch)."""
    import torch

    return getattr(torch, dtype(name).torch)


def name_of_torch(torch_dtype_) -> str | None:
    """DeepGen's name for a torch.dtype among the compiled storage types; None if none."""
    want = str(torch_dtype_).removeprefix("torch.")
    for n in INPUT_DTYPES:
        if DTYPES[n].torch == want:
            return n
    return None
