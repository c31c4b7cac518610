"""DeepGen: a GEMM kernel compiler and autotuner for GPUs on upstream MLIR.

`import deepgen` stays cheap: it imports neither torch nor MLIR. `deepgen.gemm` (which needs
torch) is loaded on first access. The torch ops torch.ops.deepgen.* are defined as soon as
torch is imported, before or after deepgen (see _register_torch_ops_after_torch).

Layering: deepgen.compiler makes KernelArtifacts (deepgen.runtime.artifact is all it reads of
the runtime); deepgen.runtime runs them and never imports the compiler; what needs both
(compile_gemm returning a Kernel, the kernel cache's key, validating tuned configs) is here
at the package root, in deepgen/build.py, and deepgen.gemm (deepgen/api.py) uses it.
"""
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _v

try:
    __version__ = _v("deepgen-mlir")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "compile_gemm", "explain", "export", "gemm", "optimize",
           "precompile", "profile", "set_dynamic_m"]


def __getattr__(name: str):
    # Loaded on first access (torch for gemm, MLIR for compile_gemm), then kept in globals().
    if name == "gemm":
        from .api import gemm as value
    elif name == "explain":
        from .explain import explain as value
    elif name == "optimize":
        from .routing import optimize as value
    elif name == "profile":
        from .profiler import profile as value
    elif name == "compile_gemm":
        from .build import compile_gemm as value
    elif name == "set_dynamic_m":
        from .range_table import set_dynamic_m as value
    elif name == "precompile":
        from .aot import precompile as value
    elif name == "export":
        from .aot import export as value
    else:
        raise AttributeError(f"module 'deepgen' has no attribute {name!r}")
    globals()[name] = value
    return value


def _gemm():
    # On the ops' first call (deepgen.api imports torch_op itself): deepgen.gemm's body,
    # without its autograd routing.
    from .api import _body

    return _body


def _register_torch_ops() -> None:
    try:
        from deepgen.runtime import torch_op

        torch_op.register(_gemm)
    except Exception as e:  # noqa: BLE001  (never break the user's `import torch`)
        warnings.warn(f"deepgen: could not define torch.ops.deepgen ({type(e).__name__}: {e})")


class _AfterTorchImport(importlib.abc.MetaPathFinder):
    """Runs _register_torch_ops right after `torch` finishes importing, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")  # found by the finders after this one
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register_torch_ops()

        spec.loader.exec_module = exec_then_register
        return spec


def _register_torch_ops_after_torch() -> None:
    if "torch" in sys.modules:
        _register_torch_ops()
    elif not any(isinstance(f, _AfterTorchImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTorchImport())


_register_torch_ops_after_torch()
