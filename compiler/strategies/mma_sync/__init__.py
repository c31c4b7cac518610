"""mma_sync: tensor cores through warp-wide mma.sync (NVIDIA sm_80+: f16/bf16 m16n8k16, tf32
m16n8k8, int8 m16n8k32 with an s32 accumulator and optional scales, layout NT), ldmatrix
fragments, tiles copied with cp.async in a ring of stages.

Pipeline: the shared passes of compiler/passes/, with this strategy's own software pipeline
(deepgen-mma-sync-pipeline: the cp.async ring, ./ring.py) in place of SIMT's double buffer."""
from __future__ import annotations

from deepgen.spec import GemmSpec, SpecError

from ...config import TileConfig
from ...target import Target
from .. import common
from ..base import Strategy
from . import config as _c
from .config import MMA_SHAPES, MmaSyncConfig

PASSES = [
    "deepgen-gemm-to-affine",
    "deepgen-tile-gemm",
    "deepgen-split-k",
    "deepgen-promote-shared",
    "deepgen-mma-sync-pipeline",
    "deepgen-block-swizzle",
    "deepgen-vectorize",
]
# ptxas -O<n> for this strategy's kernels. Warp tiles of 64x64 hold 128 f32 accumulators per
# thread and reach ptxas's 255-register limit, where -O3 takes ~0.55 s of a ~1 s compile (bf16
# 4096^3, 256x128x64) and -O2 ~0.3 s for the same PTX. The GPU A/B (H200 2026-12-02,
# results/ptxas_ab-h200-2026-12-02.json: the same PTX at -O3 and -O2, 5 interleaved rounds,
# every kernel checked against float64): 4 warps of 64 x 64 (128x128x64, 2x2 warps) run
# 2.5-4.6% faster at -O2 (-O3 spills 8 bytes in the main loop, -O2 nothing) and assemble in
# half the time; 8 warps of 64 x 64 (256x128x64) run 3% slower at -O2; the others tie.
# So -O2 for the first, -O3 for the rest. PTXAS_OPT_LEVEL, when set, forces one level for
# every mma_sync kernel (benchmarks/compile_time.py's A/B; read at each compile).
PTXAS_OPT_LEVEL: int | None = None
FOUR_WARPS_OF_64X64_OPT_LEVEL = 2
DEFAULT_OPT_LEVEL = 3
# Flat lowering parameters of the SIMT thread tile: they do not apply to mma_sync.
FOREIGN = ("TM", "TN", "lanes_m", "lanes_n", "warp_scatter_m", "warp_scatter_n",
           "thread_scatter_m", "thread_scatter_n", "kk_unroll", "local_split_k",
           "reduce_c_contiguous")


class MmaSync(Strategy):
    name = "mma_sync"
    config_class = MmaSyncConfig
    config_module = _c
    passes = tuple(PASSES)
    summary = "tensor cores: mma.sync warp tiles, ldmatrix, cp.async ring (sm_80+; int8 too)"

    def serves(self, spec: GemmSpec, target: Target) -> bool:
        return (target.is_nvidia and target.name >= "sm_80"
                and (spec.dtype in ("f16", "bf16") or spec.allow_tf32
                     or (spec.is_int8 and spec.layout == _c.INT8_LAYOUT
                         and spec.scale in ("none", "tensor", "rowwise"))))

    def default_config(self, spec: GemmSpec, target: Target) -> MmaSyncConfig:
        def fit(base):
            return _c.fit(base, spec, target)

        cfg = common.first_valid(self, _c.base_tiles(spec, target.multiprocessors), spec,
                                 target, fit)
        if not cfg.async_copy and cfg.BM > 16 and not spec.allow_tf32:
            # register-staged copies: 8 warps on 64 x 64, or 128 x 32 for a narrow N
            # (config.STAGED, NARROW_STAGED, measured)
            try:
                staged = _c.staged_tile(spec, fit)
                self.validate(staged, spec, target)
                return staged
            except SpecError:
                pass
        return cfg

    def complete(self, given: dict, spec: GemmSpec, target: Target) -> MmaSyncConfig:
        cfg = _c.derive(self.default_config(spec, target), given)
        return _c.fit(cfg, spec, target, frozenset(given))

    def ptxas_opt_level(self, cfg: MmaSyncConfig) -> int:
        if PTXAS_OPT_LEVEL is not None:
            return PTXAS_OPT_LEVEL
        if cfg.warp_tile == (64, 64) and cfg.threads == 4 * 32:
            return FOUR_WARPS_OF_64X64_OPT_LEVEL
        return DEFAULT_OPT_LEVEL

    def load_passes(self) -> None:
        from . import ring  # noqa: F401  (registers deepgen-mma-sync-pipeline)

    def from_flat(self, tile: TileConfig) -> MmaSyncConfig:
        # TM, TN, lanes and the scatters never applied with mma: dropped
        return MmaSyncConfig(**{f: getattr(tile, f) for f in MmaSyncConfig.field_names()})


STRATEGY = MmaSync()

__all__ = ["STRATEGY", "MmaSyncConfig", "MMA_SHAPES", "PASSES"]
