"""MmaSyncConfig: the mma.sync strategy's fields, validation, estimates, default heuristic
and fitting (NVIDIA sm_80+, f16/bf16 with m16n8k16, tf32 with m16n8k8, int8 with m16n8k32:
s32 accumulation, layout NT only, optional per-tensor or rowwise scales).

A block has warps_m x warps_n warps, each owning a BM/warps_m x BN/warps_n warp tile of C made
of 16 x 8 MMA tiles; there is no per-thread tile (no TM/TN, lanes or scatters)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deepgen.spec import DTYPE_BYTES, GemmSpec

from ...config import EPILOGUE_PAD, MMA_DEPTH, MMA_SHAPES, TileConfig, k_contiguous
from ...target import Target
from .. import common
from ..base import StrategyConfig
from ..common import check

# the input types of each shape; the XOR swizzle is built for the 16-byte ldmatrix rows of the
# 16-bit and 8-bit shapes (tf32 fragments are single-word loads)
MMA_DTYPES = {"m16n8k16": ("f16", "bf16"), "m16n8k8": ("f32",), "m16n8k32": ("int8",)}
SWIZZLED_SHAPES = ("m16n8k16", "m16n8k32")
INT8_LAYOUT = "NT"  # ldmatrix transposes 16-bit elements only: int8 reads K-major A and B
WARP = 32  # mma.sync is a warp-wide instruction of NVIDIA's 32-lane warps


@dataclass(frozen=True)
class MmaSyncConfig(StrategyConfig):
    strategy: ClassVar[str] = "mma_sync"
    BM: int = 128  # block tile rows (M)
    BN: int = 128  # block tile columns (N)
    BK: int = 32  # block tile depth (K) per main-loop step: a multiple of the MMA depth
    warps_m: int = 2  # warps per block along M: warp tiles of BM/warps_m rows
    warps_n: int = 2
    mma: str = "m16n8k16"  # the MMA shape: m16n8k16 (f16/bf16), m16n8k8 (tf32), m16n8k32 (int8)
    load_width_a: int = 8  # elements per global vector load (or cp.async copy) of A
    load_width_b: int = 8
    store_width: int = 2  # elements per global vector store of C
    fetch_contiguous: bool = True  # neighbouring threads fetch neighbouring vectors
    smem_pad: int = 0  # extra elements at the end of each shared-memory row
    shared_stages: int = 3  # stages of the cp.async ring (2 to 4); 1 or 2 without async_copy
    register_prefetch: bool = False  # fragments of the next MMA step (and K tile) loaded early
    # copy tiles global -> shared with cp.async in a ring of shared_stages instead of staging
    # them through registers
    async_copy: bool = True
    # f16/bf16: shared tiles without padding, their 16-byte chunks XOR-swizzled by row so that
    # ldmatrix and cp.async touch 8 different bank groups
    smem_swizzle: bool = False
    # write C through shared memory, one 16-row slab of each warp tile at a time, so that the
    # global stores are store_width-element vectors along whole rows
    epilogue_smem: bool = False
    split_k: int = 1  # number of K slices reduced after the main kernel
    block_swizzle: int = 1  # group size of the grouped block order (L2 reuse); 1 = row order

    @property
    def threads(self) -> int:
        return self.warps_m * self.warps_n * WARP

    @property
    def warp_tile(self) -> tuple[int, int]:
        return self.BM // self.warps_m, self.BN // self.warps_n

    @property
    def depth(self) -> int:
        """K extent of one MMA instruction."""
        return MMA_DEPTH[self.mma]

    def lowering(self) -> TileConfig:
        # The SIMT-only parameters stay at TileConfig's defaults (the passes ignore them here).
        return TileConfig(**{f: getattr(self, f) for f in self.field_names()})


# -- validation -----------------------------------------------------------------------------


def tile_shapes(cfg: MmaSyncConfig, spec: GemmSpec) -> dict:
    """One shared stage of each operand: as it lies in global memory (16-byte copies cannot
    transpose; ldmatrix does): [rows][BK + pad] when contiguous along K, else [BK][rows + pad]."""
    return {op: ([rows, cfg.BK + cfg.smem_pad] if k_contiguous(spec, op)
                 else [cfg.BK, rows + cfg.smem_pad])
            for op, rows in (("A", cfg.BM), ("B", cfg.BN))}


def epilogue_slab_bytes(cfg: MmaSyncConfig) -> int:
    """[warps][16][warp tile columns + pad] f32: each warp's staging slab for epilogue_smem."""
    return cfg.warps_m * cfg.warps_n * 16 * (cfg.BN // cfg.warps_n + EPILOGUE_PAD) * 4


def estimates(cfg: MmaSyncConfig, spec: GemmSpec) -> dict:
    per_stage = sum(r * c for r, c in tile_shapes(cfg, spec).values())
    shared = cfg.shared_stages * per_stage * DTYPE_BYTES[spec.dtype]
    if cfg.epilogue_smem:  # reuses the tiles' memory after the loop
        shared = max(shared, epilogue_slab_bytes(cfg))
    staged = 0 if cfg.shared_stages < 2 or cfg.async_copy else common.staged_words(cfg, spec)
    wm, wn = cfg.warp_tile
    acc = (wm // 16) * (wn // 8) * 4
    frag = (wm // 16) * 4 + (wn // 8) * 2
    return {"shared_bytes": shared, "registers": acc + frag + staged + 24}


def validate(cfg: MmaSyncConfig, spec: GemmSpec, target: Target) -> None:
    if not spec.is_int8:
        common.check_not_fp8(spec, "mma_sync")
    common.check_ints(cfg, zero_ok=("smem_pad",))
    common.check_pow2(cfg, ("BM", "BN", "BK", "warps_m", "warps_n"))
    check(cfg.mma in MMA_SHAPES, "mma", f"must be one of {MMA_SHAPES}, got {cfg.mma!r}")
    check(target.is_nvidia and target.name >= "sm_80", "mma",
          f"mma.sync needs an NVIDIA GPU of sm_80 or later, got {target.name}")
    common.check_threads(cfg, target)
    if cfg.mma == "m16n8k8":
        check(spec.dtype == "f32" and spec.allow_tf32, "mma",
              f"m16n8k8 multiplies tf32: f32 inputs with allow_tf32=True, got dtype "
              f"{spec.dtype}, allow_tf32={spec.allow_tf32}")
    else:
        check(spec.dtype in MMA_DTYPES[cfg.mma], "mma",
              f"{cfg.mma} multiplies {' or '.join(MMA_DTYPES[cfg.mma])}, got dtype {spec.dtype}"
              + (" (int8: m16n8k32)" if spec.is_int8 else ""))
    if spec.is_int8:
        check(spec.layout == INT8_LAYOUT, "layout",
              f"int8 mma.sync reads only K-major operands (ldmatrix transposes 16-bit elements "
              f"only): layout {INT8_LAYOUT} (A stored M x K, B stored N x K), got {spec.layout}")
        check(spec.scale in ("none", "tensor", "rowwise"), "scale",
              f"int8 mma.sync applies per-tensor or rowwise scales, got {spec.scale!r}")
    check(cfg.BM % (cfg.warps_m * 16) == 0, "BM",
          f"must be a multiple of warps_m*16 = {cfg.warps_m * 16} (16-row MMA tiles), got {cfg.BM}")
    check(cfg.BN % (cfg.warps_n * 16) == 0, "BN",
          f"must be a multiple of warps_n*16 = {cfg.warps_n * 16} (pairs of 8-column MMA tiles), "
          f"got {cfg.BN}")
    check(cfg.BK % cfg.depth == 0, "BK", f"must be a multiple of the MMA depth {cfg.depth}, "
                                         f"got {cfg.BK}")
    if cfg.epilogue_smem:
        check(common.pow2(cfg.store_width) and (cfg.BN // cfg.warps_n) % cfg.store_width == 0,
              "store_width", f"must be a power of two dividing the warp tile's "
              f"{cfg.BN // cfg.warps_n} columns, got {cfg.store_width}")
    else:
        check(cfg.store_width in (1, 2), "store_width",
              f"an MMA accumulator holds 2 neighbouring columns: 1 or 2, got {cfg.store_width}")
    row_vec = 16 // DTYPE_BYTES[spec.dtype]  # shared rows stay 16-byte aligned (ldmatrix, cp.async)
    if cfg.smem_swizzle:
        check(cfg.mma in SWIZZLED_SHAPES, "smem_swizzle",
              f"the XOR swizzle is built for 16-bit and 8-bit tiles (mma "
              f"{' or '.join(SWIZZLED_SHAPES)}), got {cfg.mma}")
        check(cfg.smem_pad == 0, "smem_pad", f"must be 0 with smem_swizzle, got {cfg.smem_pad}")
    check(cfg.smem_pad % row_vec == 0, "smem_pad",
          f"shared rows must stay 16-byte aligned: a multiple of {row_vec}, got {cfg.smem_pad}")
    if cfg.async_copy:
        check(cfg.shared_stages >= 2, "shared_stages",
              f"async_copy pipelines at least 2 stages, got {cfg.shared_stages}")
        for op in ("a", "b"):
            w = getattr(cfg, f"load_width_{op}") * DTYPE_BYTES[spec.dtype]
            check(w in (4, 8, 16), f"load_width_{op}",
                  f"cp.async copies 4, 8 or 16 bytes; {w} bytes with async_copy")
    common.check_io(cfg, spec, target)
    common.check_stages(cfg, 4 if cfg.async_copy else 2,
                        " with async_copy" if cfg.async_copy else "")
    common.check_split_k(cfg, spec)
    common.check_resources(cfg, estimates(cfg, spec), target)


# -- default heuristic and fitting ----------------------------------------------------------

TF32 = dict(mma="m16n8k8", BK=32, smem_pad=4, shared_stages=3, epilogue_smem=True)
# swizzled tiles, fragments prefetched across K tiles, C through shared memory: each gained on
# the H100 (benchmarks/NOTES.md)
F16 = dict(mma="m16n8k16", smem_swizzle=True, register_prefetch=True, epilogue_smem=True)


# Few output tiles, and operands too narrow for cp.async (H200, tuning_configs/odd_shapes.json,
# results/tune_odd_shapes-h200-2026-12-02.json, the suite's odd shapes in 3 layouts): where
# 256 x 128 or 128 x 128 tiles leave SMs idle, 128 x 64 (1000x1234x777 TN: 82 TFLOP/s, 1.01x
# cuBLAS, against 55 on 256 x 128); register-staged copies run best on 8 warps of 16 x 32 over
# 64 x 64 (1000x1234x777 NN 52 against 19 TFLOP/s, NT 36 against 28; 127x4097x33 3.8-4.3
# against 3.3-3.9; 4097x33x1000 TN 14.3 against 6.7).
FEW_TILES = MmaSyncConfig(BM=128, BN=64, BK=64, warps_m=2, warps_n=2, shared_stages=3, **F16)
STAGED = MmaSyncConfig(BM=64, BN=64, BK=32, warps_m=4, warps_n=2, shared_stages=2, **F16)
# A narrow N with A K-major (the same tuning run): 128 x 32 x 64 tiles, split-K to fill the SMs
# (4097x33x1000 NN, staged, 8 warps: 1.16x cuBLAS against 0.69x for 64 x 128; NT, cp.async,
# 4 warps: 1.42x against 1.34x); TN (A MN-major) measured otherwise and keeps the rules above.
# Measured at N = 33 (a 32-column tile and a 1-column one); up to 48 the second tile is at
# most half full, beyond it a 64-column tile wastes less.
NARROW_MAX_N = 48
NARROW = MmaSyncConfig(BM=128, BN=32, BK=64, warps_m=2, warps_n=2, shared_stages=3, **F16)
NARROW_STAGED = NARROW.replace(warps_m=4, shared_stages=2)
# ... at half the depth where a K tile outruns K or split-K makes more than 2 slices: there its
# 64-deep tile spilled 8-96 bytes at 40-255 registers (ptxas -v, bf16 / f16 NN and NT, M in
# 1000, 4097, N in 1..47, K in 7, 33, 4097; 1000x7x4097 NN and 4097x33x7 NT are GPU sweep
# cases), where the 32-deep one spills nothing; at 4097x33x1000 (2 slices, no spill) the
# 64-deep tile stays: 12.6 against 10.3 TFLOP/s (results/gemm_suite-narrow-bk-h200-2026-12-03-
# s11.json)
NARROW_STAGED_MAX_SPLIT = 2


def staged_tile(spec: GemmSpec, fit) -> MmaSyncConfig:
    """The register-staged default (rows too narrow for cp.async): STAGED, or NARROW_STAGED
    for a narrow N, fitted by `fit`, at half its depth where NARROW_STAGED_MAX_SPLIT says."""
    if not narrow(spec):
        return fit(for_dtype(STAGED, spec))
    cfg = fit(for_dtype(NARROW_STAGED, spec))
    if spec.K < cfg.BK or cfg.split_k > NARROW_STAGED_MAX_SPLIT:
        cfg = fit(for_dtype(NARROW_STAGED, spec).replace(BK=cfg.BK // 2))
    return cfg


def narrow(spec: GemmSpec) -> bool:
    """The narrow-N rule applies (NARROW)."""
    return spec.N <= NARROW_MAX_N and not spec.a_transposed and not spec.allow_tf32


def output_tiles(cfg: MmaSyncConfig, spec: GemmSpec) -> int:
    return -(-spec.M // cfg.BM) * -(-spec.N // cfg.BN) * spec.batch


def base_tiles(spec: GemmSpec, sms: int | None = None) -> list[MmaSyncConfig]:
    """Candidate base tiles for a shape, preferred first (widths etc. are fitted later); with
    `sms`, large tiles that would leave multiprocessors idle give way to smaller ones.

    Measured on the H100: 128 x 256 x 32 with 2 x 4 warps of 64 x 64 reached 330 TFLOP/s on
    bf16 4096^3; smaller tiles where a large one does not fit, e.g. register-staged copies of
    unaligned operands that cannot use cp.async."""
    tiles = base_tiles_16bit(spec, sms)
    if not spec.is_int8:
        return tiles
    # int8, last: the smallest tile at one MMA of depth (BK 32), for rows too narrow for
    # cp.async, whose register-staged byte loads cost registers per element
    return [for_dtype(c, spec) for c in tiles] + [tiles[-1].replace(mma="m16n8k32", BK=32)]


def for_dtype(cfg: MmaSyncConfig, spec: GemmSpec) -> MmaSyncConfig:
    """A 16-bit tile of the rules here for `spec`'s inputs: int8 takes m16n8k32 at the same
    bytes of K per stage (twice the BK); the others as they are."""
    return cfg.replace(mma="m16n8k32", BK=2 * cfg.BK) if spec.is_int8 else cfg


def base_tiles_16bit(spec: GemmSpec, sms: int | None = None) -> list[MmaSyncConfig]:
    """base_tiles of f16/bf16 (and tf32) inputs."""
    C = MmaSyncConfig
    if spec.allow_tf32:  # tf32: half the depth per instruction, 4-element padding
        return [C(BM=128, BN=128, warps_m=2, warps_n=4, **TF32),
                C(BM=64, BN=64, warps_m=2, warps_n=2, **TF32)]
    small = [C(BM=128, BN=128, BK=64, warps_m=2, warps_n=2, shared_stages=3, **F16),
             C(BM=64, BN=128, BK=32, warps_m=2, warps_n=2, shared_stages=3, **F16),
             C(BM=64, BN=64, BK=32, warps_m=2, warps_n=2, shared_stages=3, **F16)]
    if spec.M <= 16:
        return [C(BM=16, BN=128, BK=32, warps_m=1, warps_n=4, shared_stages=3, **F16)] + small[1:]
    if narrow(spec):
        return [NARROW] + small[1:]
    big = C(BM=256, BN=128, BK=64, warps_m=4, warps_n=2, shared_stages=4, **F16)
    if spec.M >= 256 and spec.N >= 128 and (sms is None or output_tiles(big, spec) >= sms):
        return [big] + small
    if spec.M >= 128 and spec.N >= 128:
        if sms is not None and output_tiles(small[0], spec) < sms:
            return [FEW_TILES] + small
        return small
    return small[1:]


def fit(cfg: MmaSyncConfig, spec: GemmSpec, target: Target, given=frozenset()) -> MmaSyncConfig:
    """Fit widths, store width, split-K, block swizzle and the copy path to the shape; fields in
    `given` are the user's and stay as they are."""
    elt, out = DTYPE_BYTES[spec.dtype], DTYPE_BYTES[spec.out_dtype]
    changes = common.fit_load_widths(cfg, spec, target)
    # contiguous C columns per thread: an accumulator pair, or a whole 16-byte vector when C
    # goes through shared memory
    per_thread = 16 // out if cfg.epilogue_smem else 2
    changes["store_width"] = common.widest(spec.N, min(per_thread, target.max_vector_bytes // out))
    if cfg.epilogue_smem and changes["store_width"] * out < 8 and "epilogue_smem" not in given:
        # rows of C too narrow for wide vectors: staging gains nothing (and cost spills)
        changes.update(epilogue_smem=False, store_width=min(changes["store_width"], 2))
    changes.update(common.fit_grid(cfg, spec, target))
    widths = {o: changes[f"load_width_{o}"] if f"load_width_{o}" not in given
              else getattr(cfg, f"load_width_{o}") for o in ("a", "b")}
    use_async = cfg.async_copy if "async_copy" in given else \
        all(widths[o] * elt >= 4 for o in ("a", "b"))
    if use_async:
        changes["async_copy"] = True
        if spec.M % cfg.BM or spec.N % cfg.BN or spec.K % cfg.BK:
            # partial tiles: their guards take the registers the prefetched fragments need
            changes["register_prefetch"] = False
    else:  # rows too narrow for cp.async: tiles staged through registers, padded and without
        # fragment prefetch (swizzled element stores and prefetched fragments cost registers
        # that this path, holding the next tile, does not have)
        changes.update(async_copy=False, shared_stages=2, smem_swizzle=False, register_prefetch=False,
                       smem_pad=cfg.smem_pad if cfg.mma == "m16n8k8" else 16 // elt)
        if "smem_swizzle" in given and cfg.smem_swizzle:
            del changes["smem_pad"]
    return cfg.replace(**{k: v for k, v in changes.items() if k not in given})


def derive(base: MmaSyncConfig, given: dict) -> MmaSyncConfig:
    """Fields left out that follow from given ones before fitting: a tf32 shape or a padded
    tile turns the (16-bit / 8-bit) swizzle off; an unswizzled 16-bit tile keeps 16-byte rows."""
    cfg = base.replace(**given)
    if "smem_swizzle" not in given and (cfg.mma not in SWIZZLED_SHAPES or cfg.smem_pad):
        cfg = cfg.replace(smem_swizzle=False)
    if "mma" in given and given["mma"] != base.mma and "smem_pad" not in given:
        cfg = cfg.replace(smem_pad=4 if cfg.mma == "m16n8k8" else 0)
    return cfg
