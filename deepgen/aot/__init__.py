"""Ahead of time (issue 17): `precompile` compiles the range table of (N, K) shapes into the
kernel cache or a bundle directory (`preload_bundles` registers one on a host without MLIR);
`export` writes range kernels as a C library (cubins, header, driver-API loader, CMake).
Imports neither MLIR nor torch at import time."""
from .export import ExportError, export, write_export
from .precompile import gemm_name, precompile, preload_bundles, range_specs

__all__ = ["ExportError", "export", "gemm_name", "precompile", "preload_bundles", "range_specs",
           "write_export"]
