"""The deepgen dialect: IRDL definition, builder helpers and Python-side verification."""
from __future__ import annotations

from pathlib import Path

IRDL_FILE = Path(__file__).with_name("deepgen.irdl.mlir")


def load_into(context) -> None:
    """Register the deepgen dialect (from IRDL) in `context`; idempotent per context."""
    from mlir import ir
    from mlir.dialects import irdl

    if getattr(context, "_deepgen_loaded", False):
        return
    _add_search_prefix()
    with context:
        irdl.load_dialects(ir.Module.parse(IRDL_FILE.read_text()))
    try:
        context._deepgen_loaded = True
    except AttributeError:  # nanobind objects may refuse new attributes; loading twice is harmless
        pass


def _add_search_prefix() -> None:
    """Let the bindings find deepgen.dialects.deepgen for the deepgen dialect (see there)."""
    from mlir._mlir_libs._mlir import globals as mlir_globals

    if __name__ not in mlir_globals.dialect_search_modules:
        mlir_globals.append_dialect_search_prefix(__name__)
