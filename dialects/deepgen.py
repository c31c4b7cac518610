"""The module MLIR's Python bindings import for the `deepgen` dialect.

When the bindings wrap an operation of a dialect they first import `<prefix>.<namespace>` for
each dialect search prefix (`mlir.dialects`, then `deepgen.dialects`, which load_into appends),
and remember only a successful import. Without this module every deepgen op met while walking
the IR (tens of thousands per compile) retried a failing `import mlir.dialects.deepgen`:
about 0.05 s of a 1 s compile. The dialect is defined from IRDL (no Python op classes); its op
builders are in ops.py.
"""
