"""deepgen.compiler: GemmSpec + TileConfig -> MLIR -> DeepGen passes -> KernelArtifact.

    art = compile_artifact(GemmSpec(4096, 4096, 4096), {"BM": 128, "BN": 128, ...}, "sm_90a")
    art.binary, art.assembly, art.resources, art.ir_stages["02-deepgen-tile-gemm"]

The compiler's product is a KernelArtifact (deepgen.runtime.artifact, the data contract): of
the runtime it reads that format and nothing else. A callable Kernel joins compiler and
runtime, so it is made at the package root: `deepgen.compile_gemm(M, N, K, config, ...)`
(deepgen/build.py) compiles and returns a deepgen.runtime.Kernel.
"""
from __future__ import annotations

from deepgen.spec import GemmSpec

from .config import TileConfig, default_config, validate
from .driver import CompileError, compile_artifact


def toolchain_versions() -> dict:
    from deepgen.toolchain import toolchain_versions as tv
    return tv()


__all__ = ["GemmSpec", "TileConfig", "CompileError", "compile_artifact", "default_config",
           "validate", "toolchain_versions"]
