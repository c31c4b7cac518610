"""deepgen.runtime: load compiled kernels and run them on torch tensors, without MLIR.

    k = deepgen.runtime.load("bundle/")       # a bundle written by Kernel.save / the compiler
    c = k(a, b)                               # see deepgen.runtime.kernel.Kernel
    deepgen.runtime.preload("bundle/")        # let deepgen.gemm use it without compiling

Importing this package imports neither MLIR nor torch; Kernel and load (which need torch) are
loaded on first access, the launcher extension on first launch.
"""
from .artifact import ArtifactError, KernelArtifact, Launch
from .cache import cache_dir, cached_artifact, preload
from .errors import DriverError

__all__ = ["ArtifactError", "DriverError", "Kernel", "KernelArtifact", "Launch", "cache_dir",
           "cached_artifact", "load", "preload"]


def __getattr__(name: str):
    if name in ("Kernel", "load"):
        from . import kernel

        globals().update(Kernel=kernel.Kernel, load=kernel.load)  # later lookups skip this
        return getattr(kernel, name)
    raise AttributeError(f"module 'deepgen.runtime' has no attribute {name!r}")
