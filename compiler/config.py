"""TileConfig: the flat lowering parameters that the shared passes (compiler/passes/) read from
the module's tile attribute, and the geometry helpers they share.

Users and the tuner do not write TileConfigs any more: they write a strategy's config
(compiler/strategies/: SimtConfig, MmaSyncConfig, ...), whose `lowering()` produces this. A
TileConfig, or a dict of its fields, is still read as a config: that is the format of tuned
databases and bundles written before strategies (compiler.strategies.resolve maps it). The
functions validate, default_config, as_config, shared_bytes and register_estimate below are
kept for callers of that era and delegate to the strategies.

Thread arrangement (the SIMT path). A block has warps_m x warps_n warps; a warp has
lanes_m x lanes_n threads; each thread owns a TM x TN register tile of C. Along M, a thread's
TM rows come in chunks of `warp_scatter_m` rows per warp pass, and within those in groups of
`thread_scatter_m` consecutive rows (the width of one shared-memory fragment load), so that
the threads of a warp read neighbouring vectors (no bank conflicts) while each keeps a
vector-wide slice. The same holds along N. Hence BM = warps_m * lanes_m * TM.

The legacy DeepGen tuning-config keys map onto these fields (see LEGACY_KEYS, the SIMT
strategy's).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from deepgen.spec import DTYPE_BYTES, GemmSpec, SpecError  # noqa: F401

from .target import Target, get_target  # noqa: F401


def check_fields(cls, d: dict, what: str) -> dict:
    """`d` with its values typed per `cls`'s fields; SpecError naming an unknown or
    mistyped field."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in d.items():
        if key not in known:
            raise SpecError(f"{key}: not a {what} field (fields: {list(known)})")
        want = {"bool": bool, "str": str}.get(str(known[key].type), int)
        if want is str and not isinstance(value, str):
            raise SpecError(f"{key}: must be a string, got {value!r}")
        if want is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise SpecError(f"{key}: must be an int, got {value!r}")
        if want is bool and not isinstance(value, (bool, int)):
            raise SpecError(f"{key}: must be a bool, got {value!r}")
        out[key] = bool(value) if want is bool else value
    return out


@dataclass(frozen=True)
class SimtFields:
    """The SIMT tiling fields (see the thread arrangement above): the SIMT strategy's
    config (SimtConfig) and the flat lowering record (TileConfig) both hold them."""

    BM: int = 128  # block tile rows (M)
    BN: int = 128  # block tile columns (N)
    BK: int = 8  # block tile depth (K) per main-loop step
    TM: int = 8  # thread tile rows
    TN: int = 8  # thread tile columns
    warps_m: int = 2  # warps per block along M
    warps_n: int = 4
    lanes_m: int = 8  # threads per warp along M
    lanes_n: int = 4
    warp_scatter_m: int = 4  # rows a warp covers per pass, per thread
    warp_scatter_n: int = 4
    thread_scatter_m: int = 4  # consecutive rows per thread = shared fragment vector width
    thread_scatter_n: int = 4
    load_width_a: int = 4  # elements per global vector load of A
    load_width_b: int = 4
    store_width: int = 4  # elements per global vector store of C
    fetch_contiguous: bool = True  # neighbouring threads fetch neighbouring vectors
    smem_pad: int = 0  # extra elements at the end of each shared-memory row
    shared_stages: int = 2  # 1 = single buffer, 2 = double-buffered shared memory
    register_prefetch: bool = False  # load fragments of step k+1 before the FMAs of step k
    kk_unroll: int = 0  # unroll factor of the inner K loop; 0 = fully unrolled
    split_k: int = 1  # number of K slices reduced after the main kernel
    block_swizzle: int = 1  # group size of the grouped block order (L2 reuse); 1 = row order
    local_split_k: int = 1  # legacy LOCAL_SPLIT_U (intra-block K split); only 1 is built
    reduce_c_contiguous: bool = False  # legacy REDUCE_C_CONTINUOUS, used with local_split_k

    @property
    def warp_tile(self) -> tuple[int, int]:
        return self.BM // self.warps_m, self.BN // self.warps_n

    @property
    def threads_m(self) -> int:
        return self.warps_m * self.lanes_m

    @property
    def threads_n(self) -> int:
        return self.warps_n * self.lanes_n

    @property
    def threads(self) -> int:
        return self.threads_m * self.threads_n


@dataclass(frozen=True)
class TileConfig(SimtFields):
    # Tensor cores: "none" = SIMT FMAs; "m16n8k16" = mma.sync on f16/bf16, "m16n8k8" on tf32,
    # "m16n8k32" on int8 (warp tiles of BM/warps_m x BN/warps_n; TM, TN and the scatter fields
    # then do not apply).
    mma: str = "none"
    # Tensor-core path: copy tiles global -> shared with cp.async in a ring of shared_stages
    # (2 to 4) instead of staging them through registers.
    async_copy: bool = False
    # Tensor-core path, f16/bf16: shared tiles without padding, their 16-byte chunks XOR-swizzled
    # by row (deepgen-vectorize's swizzle_col) so that ldmatrix and cp.async touch 8 different bank groups.
    smem_swizzle: bool = False
    # Tensor-core path: write C through shared memory, one 16-row slab of each warp tile at a
    # time, so that the global stores are store_width-element vectors along whole rows.
    epilogue_smem: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TileConfig":
        if "strategy" in d:  # a strategy config's dict: its lowering parameters
            from .strategies import from_dict
            return from_dict(d).lowering()
        return cls(**check_fields(cls, d, "TileConfig"))

    def replace(self, **changes) -> "TileConfig":
        return dataclasses.replace(self, **changes)


def as_config(cfg, spec: GemmSpec, target: Target):
    """Any accepted config input -> a validated strategy config (compiler.strategies.resolve)."""
    from .strategies import resolve
    return resolve(cfg, spec, target)


# ---------------------------------------------------------------------------------------------
# Validation


# mma.sync shapes and their K depth: f16/bf16 m16n8k16, tf32 m16n8k8, int8 m16n8k32 (s32
# accumulator); each is 32 bytes of K per row of A but tf32's (8 x 4).
MMA_DEPTH = {"m16n8k16": 16, "m16n8k8": 8, "m16n8k32": 32}
MMA_SHAPES = tuple(MMA_DEPTH)


def mma_depth(cfg: TileConfig) -> int:
    """K extent of one MMA instruction."""
    return MMA_DEPTH[cfg.mma]


def k_contiguous(spec: GemmSpec, operand: str) -> bool:
    """Whether the operand's memory is contiguous along K (row-major A, column-major B)."""
    return (operand == "A") != (spec.b_transposed if operand == "B" else spec.a_transposed)


def tile_shapes(cfg: TileConfig, spec: GemmSpec) -> dict:
    """Shape of one shared-memory stage of each operand tile (rows padded by smem_pad).

    SIMT reads fragments along M/N, so tiles are stored K-major: [BK][BM]. The tensor-core
    path copies tiles as they lie in global memory (16-byte copies cannot transpose) and lets
    ldmatrix transpose: [BM][BK] when the operand is contiguous along K."""
    shapes = {}
    for op, rows in (("A", cfg.BM), ("B", cfg.BN)):
        if cfg.mma != "none" and k_contiguous(spec, op):  # (async copies cannot transpose)
            shapes[op] = [rows, cfg.BK + cfg.smem_pad]
        else:
            shapes[op] = [cfg.BK, rows + cfg.smem_pad]
    return shapes


EPILOGUE_PAD = 8  # f32 words past each 16-row slab row: the accumulator writes avoid conflicts


def epilogue_slab_shape(cfg: TileConfig) -> list[int]:
    """[warps][16][warp tile columns + pad] f32: each warp's staging slab for epilogue_smem."""
    return [cfg.warps_m * cfg.warps_n, 16, cfg.BN // cfg.warps_n + EPILOGUE_PAD]


def epilogue_slab_bytes(cfg: TileConfig) -> int:
    w, r, c = epilogue_slab_shape(cfg)
    return w * r * c * 4


def fetch_vectors(cfg: TileConfig, operand: str) -> int:
    """Global vectors each thread loads per K step for operand A or B."""
    rows = cfg.BM if operand == "A" else cfg.BN
    width = cfg.load_width_a if operand == "A" else cfg.load_width_b
    return rows * cfg.BK // (cfg.threads * width)


def shared_bytes(cfg, spec: GemmSpec) -> int:
    """Shared memory the kernel takes (the config's strategy estimates it)."""
    from .strategies import estimates
    return estimates(cfg, spec)["shared_bytes"]


def register_estimate(cfg, spec: GemmSpec) -> int:
    """Rough 32-bit registers per thread (the config's strategy estimates it)."""
    from .strategies import estimates
    return estimates(cfg, spec)["registers"]


def validate(cfg, spec: GemmSpec, target: Target | str = "sm_90a") -> None:
    """Raise SpecError naming the first field that breaks a limit of the spec or the target
    (the config's strategy validates; `cfg` a strategy config or a flat TileConfig)."""
    from .strategies import validate as check
    check(cfg, spec, target)


def default_config(spec: GemmSpec, target: Target | str = "sm_90a"):
    """The default heuristic's strategy config for the shape (compiler.strategies)."""
    from .strategies import default_config as pick
    return pick(spec, target)


# Legacy DeepGen tuning-config keys: the SIMT strategy's (compiler/strategies/simt/legacy.py),
# re-exported under their old import path.
from .strategies.simt.legacy import (LEGACY_DTYPES, LEGACY_KEYS, LEGACY_SPEC_KEYS,  # noqa: E402,F401
                                     from_legacy)
