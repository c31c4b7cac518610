"""DeepGen's input error: raised before any MLIR runs or any kernel launches.

Its message names the field and the limit ("BM: must be a power of two, got 96"). Lives in a
module of its own so that every spec-level module (spec, epilogue, dtypes) can raise it
without importing the others. Imports neither MLIR nor torch."""


class SpecError(ValueError):
    """A GemmSpec, EpilogueSpec or config field is out of range; the message names the field
    and the limit."""
