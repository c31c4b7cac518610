"""deepgen.runtime: load compiled kernels and run them on torch tensors, without MLIR.

    k = deepgen.runtime.load("bundle/")       # a bundle written by Kernel.save / the compiler
    c = k(a, b)                               # see deepgen.runtime.kernel.Kernel
    deepgen.runtime.preload("bundle/")        # let deepgen.gemm use it without compiling

Nothing here imports deepgen.compiler, not even lazily (tests/test_layering.py checks it): an
artifact compiled on one machine runs on another that has neither MLIR nor the compiler.
This package's own import loads no submodule, so `import deepgen.runtime.artifact` (what the
compiler reads: the artifact format) loads that module alone. The names below are loaded on
first access; torch only with Kernel and load, the launcher extension on first launch.
"""
import importlib

_WHERE = {  # name -> the submodule that defines it
    "ArtifactError": "artifact", "KernelArtifact": "artifact", "Launch": "artifact",
    "cache_dir": "cache", "cached_artifact": "cache", "preload": "cache",
    "DriverError": "errors",
    "Kernel": "kernel", "load": "range_kernel", "RangeKernel": "range_kernel",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'deepgen.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # later lookups skip this
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
