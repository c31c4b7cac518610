"""Exceptions of the runtime. Defined in Python so that they exist without the launcher built;
the launcher (runtime/src/launcher.cpp) raises DriverError by looking it up here."""
from __future__ import annotations


class DriverError(RuntimeError):
    """A GPU driver call failed, or no driver could be opened.

    `call` is the driver function ("cuModuleLoadData", "dlopen", ...), `name` the driver's
    error name ("CUDA_ERROR_INVALID_VALUE"; "NO_DRIVER" when the library is missing) and `code`
    its numeric value (-1 when there is none)."""

    def __init__(self, message: str, call: str = "", name: str = "", code: int = -1):
        super().__init__(message)
        self.call = call
        self.name = name
        self.code = code
