"""The one dtype registry: every table of element types in DeepGen reads this one.

A DType names an element type the way each layer spells it: DeepGen's name ("bf16"), its
size, torch's dtype attribute ("bfloat16"), MLIR's type ("bf16"), PTX's type (".bf16"), and
the tolerance a GEMM result of that output type is checked with against float64 (relative
Frobenius error; DESIGN.md). Adding a dtype touches this table; `compiled` says whether
DeepGen's kernels take it yet (fp8 and int8 are declared for a later issue).

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
    # fp8 inputs (the wgmma strategy, layout NT; C is f32, f16 or bf16): the tolerance is that
    # of the result against float64 of the dequantized inputs (the inputs' own rounding is
    # not counted, only the kernel's: f32 accumulation on the tensor cores and the output's
    # rounding); provisional until measured on the H200 (tests/gpu/test_fp8_gpu.py).
    DType("e4m3", 1, "float8_e4m3fn", "f8E4M3FN", "e4m3", 6e-2, output=False),
    DType("e5m2", 1, "float8_e5m2", "f8E5M2", "e5m2", 1.2e-1, output=False),
    DType("int8", 1, "int8", "i8", "s8", 0.0, compiled=False),
)}

# Element types of A/B and of C (and of a bias) that the kernels take today.
INPUT_DTYPES = tuple(n for n, d in DTYPES.items() if d.compiled and d.storage)
OUTPUT_DTYPES = tuple(n for n in INPUT_DTYPES if DTYPES[n].output)
# Quantized inputs: only the wgmma strategy multiplies them (sm_90a, layout NT), optionally
# with scales (GemmSpec.scale); every other strategy rejects them by name.
FP8_DTYPES = ("e4m3", "e5m2")


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
