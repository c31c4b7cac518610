"""simt: CUDA-core FMAs, each thread a TM x TN register tile (NVIDIA and AMD).

Pipeline: the affine description, tiled to blocks/warps/threads, split-K, tiles promoted to
(double-buffered) shared memory, fragments prefetched, block swizzle, vectorized accesses;
all of it the shared passes of compiler/passes/."""
from __future__ import annotations

from deepgen.spec import GemmSpec

from ...config import TileConfig
from ...target import Target
from .. import common
from ..base import Strategy
from . import config as _c
from .config import SimtConfig
from .legacy import LEGACY_DTYPES, LEGACY_KEYS, LEGACY_SPEC_KEYS, from_legacy

PASSES = [
    "deepgen-gemm-to-affine",
    "deepgen-tile-gemm",
    "deepgen-split-k",
    "deepgen-promote-shared",
    "deepgen-pipeline",
    "deepgen-block-swizzle",
    "deepgen-vectorize",
]
# Flat lowering parameters that belong to other strategies: a legacy flat config for simt
# must leave them at these values.
FOREIGN = {"mma": "none", "async_copy": False, "smem_swizzle": False, "epilogue_smem": False}


class Simt(Strategy):
    name = "simt"
    config_class = SimtConfig
    config_module = _c
    passes = tuple(PASSES)
    summary = "CUDA-core FMAs on TM x TN register tiles per thread"
    legacy_keys = LEGACY_KEYS

    def serves(self, spec: GemmSpec, target: Target) -> bool:
        return True

    def default_config(self, spec: GemmSpec, target: Target) -> SimtConfig:
        return common.first_valid(self, _c.base_tiles(spec), spec, target,
                                  lambda base: _c.fit(base, spec, target))

    def complete(self, given: dict, spec: GemmSpec, target: Target) -> SimtConfig:
        base = self.default_config(spec, target)
        # the base for the given warp size (lanes filled to a 64-lane wavefront on AMD)
        cfg = _c.derive(base, given, target.warp_size)
        return _c.fit(cfg, spec, target, frozenset(given))

    def from_flat(self, tile: TileConfig) -> SimtConfig:
        from deepgen.spec import SpecError

        for name, value in FOREIGN.items():
            if getattr(tile, name) != value:
                raise SpecError(f"{name}: {'cp.async staging is' if name == 'async_copy' else 'is'}"
                                f" built for the tensor-core path (mma, strategy mma_sync) only; "
                                f"got {getattr(tile, name)!r} with mma='none'")
        return SimtConfig(**{f: getattr(tile, f) for f in SimtConfig.field_names()})


STRATEGY = Simt()

__all__ = ["STRATEGY", "SimtConfig", "PASSES", "LEGACY_KEYS", "LEGACY_SPEC_KEYS",
           "LEGACY_DTYPES", "from_legacy"]
