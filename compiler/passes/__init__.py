"""DeepGen's passes: Python-defined MLIR passes registered by name.

A pass is a function `run(module: ir.Operation) -> None` that rewrites the module in place and
raises PassError (with the offending op) when the IR is not what it expects. `add_to` wraps it
for `PassManager.add`, turning a PassError into an MLIR diagnostic plus a pass failure, so
pipelines report DeepGen's errors exactly like upstream ones.

The SIMT pipeline, in order (each pass's module says what it does):
    deepgen-gemm-to-affine  -> deepgen-tile-gemm -> deepgen-split-k -> deepgen-promote-shared
    -> deepgen-pipeline -> deepgen-block-swizzle -> deepgen-vectorize
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Callable



class PassError(Exception):
    def __init__(self, op, message: str):
        super().__init__(message)
        self.op = op.operation if op is not None and hasattr(op, "operation") else op


@dataclass(frozen=True)
class PassInfo:
    name: str
    run: Callable
    summary: str


REGISTRY: dict[str, PassInfo] = {}


def register(name: str, summary: str):
    def deco(fn):
        REGISTRY[name] = PassInfo(name, fn, summary)
        return fn
    return deco


def add_to(pm, name: str) -> None:
    info = REGISTRY[name]

    def callback(op, pass_):
        try:
            with op.location:  # default location for ops and types the pass creates
                info.run(op)
        except PassError as e:
            loc = e.op.location if e.op is not None else op.location
            loc.emit_error(f"{name}: {e}")
            pass_.signal_pass_failure()
        except Exception as e:  # a bug in the pass: report it, never kill the process
            op.location.emit_error(f"{name}: internal error: {type(e).__name__}: {e}\n"
                                   + traceback.format_exc(limit=4))
            pass_.signal_pass_failure()

    pm.add(callback, name=name, argument=name)


def _load_all() -> None:
    # Importing the modules registers their passes (order is the pipeline order).
    from . import (gemm_to_affine, tile_gemm, split_k, promote_shared,  # noqa: F401
                   pipeline, block_swizzle, vectorize)


_load_all()
