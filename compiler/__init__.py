"""deepgen.compiler: GemmSpec + TileConfig -> MLIR -> DeepGen passes -> PTX/cubin.

    kernel = deepgen.compile_gemm(4096, 4096, 4096, {"BM": 128, "BN": 128, ...}, dtype="f32")
    kernel.ptx, kernel.registers, kernel.ir("02-deepgen-tile-gemm"), kernel(a, b)
"""
from __future__ import annotations

from deepgen.spec import GemmSpec

from .config import TileConfig, default_config, validate
from .driver import CompileError, compile_artifact


def compile_gemm(M: int, N: int, K: int, tile_cfg: TileConfig | dict | None = None, *,
                 dtype: str = "f32", out_dtype: str | None = None, layout: str = "NN",
                 batch: int = 1, target: str = "sm_90a", epilogue: str = "none",
                 keep_ir: bool = True):
    """Compile C = alpha * op(A) @ op(B) + beta * C to a Kernel (see deepgen.runtime.Kernel).

    `tile_cfg` is a TileConfig, a dict of its fields (BM, BN, BK, TM, TN, ...), or None for
    the default heuristic. Every field is validated before any MLIR is built."""
    from deepgen.runtime.kernel import Kernel

    spec = GemmSpec(M=M, N=N, K=K, batch=batch, dtype=dtype, out_dtype=out_dtype, layout=layout)
    return Kernel(compile_artifact(spec, tile_cfg, target, epilogue=epilogue, keep_ir=keep_ir))


def toolchain_versions() -> dict:
    from deepgen.toolchain import toolchain_versions as tv
    return tv()


__all__ = ["GemmSpec", "TileConfig", "CompileError", "compile_gemm", "compile_artifact",
           "default_config", "validate", "toolchain_versions"]
