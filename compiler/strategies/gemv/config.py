"""GemvConfig: the gemv strategy's fields, validation, estimates and default heuristic.

The kernel (./kernel.py) streams B once with 16-byte loads on CUDA cores, for the smallest M
(decode-sized GEMMs: its cost is reading the weights). Two forms, by how B lies in memory:

- K-contiguous B (layout NT, the nn.Linear case, and TT): each warp owns `rows` rows of B
  (output columns n); lane l reads `vec` consecutive K elements at (u * 32 + l) * vec for
  u < unroll, every load of a step issued before any use; the M x rows partial dot products
  stay in f32 registers and are reduced across the lanes with xor shuffles at the end.
- N-contiguous B (NN, TN): each lane owns `rows` vectors of `vec` consecutive columns (at a
  stride of 32 * vec), a warp 32 * vec * rows columns; it walks `unroll` rows of B (K) per
  step; A[m, k] is one broadcast load per warp. No cross-lane reduction. `k_warps` of the
  block's warps share columns and split the block's K slice; their sums meet in shared
  memory (in a fixed order), so a block streams a deep K slice and fewer slices (split_k)
  are needed to fill the GPU.

`split_k` slices K over grid z (batch * split_k blocks along z); the slices' f32 partials go
to the workspace W and the deterministic reduce kernel of deepgen-split-k applies the
epilogue. Without a split the kernel applies the epilogue chain itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deepgen.spec import DTYPE_BYTES, GemmSpec

from ...config import k_contiguous
from ...target import Target
from .. import common
from ..base import StrategyConfig
from ..common import check

WARP = 32
MAX_M = 32  # the M x rows accumulators live in registers
MAX_ACCUMULATORS = 64  # f32 accumulators per thread (K-contiguous: M * rows)


@dataclass(frozen=True)
class GemvConfig(StrategyConfig):
    strategy: ClassVar[str] = "gemv"
    rows: int = 2  # K-contiguous B: rows of B (outputs n) per warp; else vectors per lane
    warps: int = 4  # warps per block
    split_k: int = 1  # K slices over grid z, reduced deterministically by a second kernel
    vec: int = 8  # elements per global load of B (16 bytes for f16/bf16 at 8)
    unroll: int = 4  # K-contiguous: vectors per row and lane per step; else rows of K per step
    k_warps: int = 1  # N-contiguous B: warps on the same columns, each on part of the K slice

    @property
    def threads(self) -> int:
        return self.warps * WARP

    def lowering(self) -> "GemvConfig":
        """The module's tile attribute: this config itself (no flat TileConfig applies)."""
        return self

    def outputs_per_block(self, spec: GemmSpec) -> int:
        """Columns n of C one block covers."""
        if k_contiguous(spec, "B"):
            return self.warps * self.rows
        # (max: an invalid k_warps is named by validate, not a division by zero here)
        return max(1, self.warps // self.k_warps) * WARP * self.vec * self.rows

    def k_step(self, spec: GemmSpec) -> int:
        """K elements one warp consumes per step of its loop."""
        if k_contiguous(spec, "B"):
            return WARP * self.vec * self.unroll
        return self.unroll

    def k_chunk(self, spec: GemmSpec) -> int:
        """K elements per slice: a multiple of the whole-vector step (see kernel.py)."""
        unit = WARP * self.vec if k_contiguous(spec, "B") else self.unroll * self.k_warps
        per = -(-spec.K // self.split_k)
        return -(-per // unit) * unit

    def warp_k_chunk(self, spec: GemmSpec) -> int:
        """K elements of a slice each of the k_warps warps takes (whole steps)."""
        return self.k_chunk(spec) // self.k_warps

    def grid(self, spec: GemmSpec) -> list[int]:
        return [-(-spec.N // self.outputs_per_block(spec)), 1, spec.batch * self.split_k]


def estimates(cfg: GemvConfig, spec: GemmSpec) -> dict:
    """Registers per thread: accumulators, the loads of one step in flight (B, and A's vectors
    or scalars), addresses; no shared memory."""
    elt = DTYPE_BYTES[spec.dtype]
    words = max(1, cfg.vec * elt // 4)  # 32-bit registers per loaded vector
    if k_contiguous(spec, "B"):
        acc = spec.M * cfg.rows
        loads = (cfg.unroll * cfg.rows + spec.M) * words  # B of a step, A of one vector
        convert = (spec.M + cfg.rows) * cfg.vec if elt < 4 else 0
    else:
        acc = spec.M * cfg.rows * cfg.vec
        loads = cfg.unroll * (cfg.rows * words + spec.M)
        convert = cfg.rows * cfg.vec if elt < 4 else 0
    return {"shared_bytes": k_warp_sums_bytes(cfg, spec),
            "registers": acc + loads + min(convert, 32) + 24}


def k_warp_sums_bytes(cfg: GemvConfig, spec: GemmSpec) -> int:
    """Shared memory for the f32 sums of the k_warps - 1 warps that hand theirs to the first."""
    if cfg.k_warps == 1:
        return 0
    return (cfg.k_warps - 1) * cfg.warps // cfg.k_warps * spec.M * cfg.rows * WARP * cfg.vec * 4


def validate(cfg: GemvConfig, spec: GemmSpec, target: Target) -> None:
    common.check_not_fp8(spec, "gemv")
    common.check_ints(cfg, zero_ok=())
    common.check_pow2(cfg, ("vec", "warps"))
    check(target.is_nvidia, "strategy", f"gemv is built for NVIDIA GPUs (32-lane warp "
                                        f"shuffles), got {target.name}")
    common.check_threads(cfg, target)
    check(spec.dtype in ("f16", "bf16", "f32") and not spec.allow_tf32, "dtype",
          f"gemv multiplies f16, bf16 or f32 (no tf32) on CUDA cores, got {spec.dtype}"
          f"{' with allow_tf32' if spec.allow_tf32 else ''}")
    check(spec.M <= MAX_M, "M", f"gemv keeps the M rows' sums in registers: M <= {MAX_M}, "
                                f"got {spec.M}")
    elt = DTYPE_BYTES[spec.dtype]
    check(cfg.vec * elt <= target.max_vector_bytes, "vec",
          f"{cfg.vec} x {spec.dtype} exceeds the {target.max_vector_bytes}-byte vector limit")
    contig = spec.stored_shape("B")[1]  # K (K-contiguous B) or N
    check(contig % cfg.vec == 0, "vec",
          f"rows of B in memory hold {contig} elements, not a multiple of vec={cfg.vec} "
          "(vector loads would be misaligned); use a narrower vec")
    if k_contiguous(spec, "B"):
        check(spec.M * cfg.rows <= MAX_ACCUMULATORS, "rows",
              f"M x rows = {spec.M} x {cfg.rows} accumulators exceed {MAX_ACCUMULATORS} per "
              "thread; use fewer rows")
    else:
        check(spec.M * cfg.rows * cfg.vec <= 2 * MAX_ACCUMULATORS, "rows",
              f"M x rows x vec = {spec.M} x {cfg.rows} x {cfg.vec} accumulators exceed "
              f"{2 * MAX_ACCUMULATORS} per thread; use fewer rows or a narrower vec")
    check(cfg.warps % cfg.k_warps == 0, "k_warps",
          f"must divide warps={cfg.warps}, got {cfg.k_warps}")
    check(cfg.k_warps == 1 or not k_contiguous(spec, "B"), "k_warps",
          f"splitting K among a block's warps is built for N-contiguous B (layouts NN, TN); "
          f"with K-contiguous B (layout {spec.layout}) lanes split K already: use 1, got "
          f"{cfg.k_warps}")
    unit = WARP * cfg.vec if k_contiguous(spec, "B") else cfg.unroll * cfg.k_warps
    slices = -(-spec.K // unit)
    check(cfg.split_k <= slices, "split_k",
          f"{cfg.split_k} slices exceed the {slices} K pieces of {unit} elements of K={spec.K}")
    if cfg.split_k > 1:
        chunk = cfg.k_chunk(spec)
        check((cfg.split_k - 1) * chunk < spec.K, "split_k",
              f"{cfg.split_k} slices of {chunk} leave the last one empty at K={spec.K}")
    common.check_resources(cfg, estimates(cfg, spec), target)


# -- default heuristic ----------------------------------------------------------------------

# The default heuristic (strategies.choose) takes gemv up to this M for f16/bf16 with layouts
# NT and NN, measured on the H200 (decode_suite):
# - NT (2026-12-01, 8 Llama (N, K) each): gemv beat the mma_sync default on all of them at
#   M <= 4 (0.9-1.25x cuBLAS against 0.43-0.71x); at M = 8 it won 5 of 8 (geometric mean
#   +10%), at M = 16 none.
# - NN (2026-12-02, results/decode_suite-h200-2026-12-02-nn-kwarps.json, (N, K) of the
#   suite's LLM shapes): gemv with k_warps beat mma_sync at M <= 4 (M = 1: 0.99-1.10x
#   cuBLAS against 0.65-0.86x; M = 4: 0.79-0.92x against 0.62-0.82x).
# TN, TT and f32: not measured.
DEFAULT_MAX_M = 4
DEFAULT_LAYOUTS = ("NT", "NN")


def preferred(spec: GemmSpec, target: Target) -> bool:
    return (target.is_nvidia and spec.M <= DEFAULT_MAX_M and spec.layout in DEFAULT_LAYOUTS
            and spec.dtype in ("f16", "bf16"))



def default(spec: GemmSpec, target: Target) -> GemvConfig:
    """Widest aligned vectors; rows and unroll so that a lane keeps about 8 vectors of B in
    flight within the register budget; K split until the grid has about 2 blocks per SM."""
    elt = DTYPE_BYTES[spec.dtype]
    contig = spec.stored_shape("B")[1]
    vec = common.widest(contig, target.max_vector_bytes // elt)
    if k_contiguous(spec, "B"):  # 8 vectors of B per lane in flight
        # H200, bf16 NT, 8 Llama shapes each (benchmarks/NOTES.md): rows 1 x unroll 8 best at
        # M = 1, 2 x 4 at M = 2 and 4, 4 x 2 at M = 8 and 16
        rows = 1 if spec.M == 1 else 2 if spec.M <= 4 else 4
        while spec.M * rows > MAX_ACCUMULATORS and rows > 1:  # validate's limit
            rows //= 2
        unroll = 8 // rows
        warps, k_warps = 4, 1
        # A stored transposed (TT): a lane builds its vec elements of each of the M rows of A
        # from scalar loads, M x vec values live at once: narrower vectors for larger M
        while spec.a_transposed and spec.M * vec > 64 and vec > 1:
            vec //= 2
    else:  # M x vec accumulators per lane: narrower vectors for the largest M
        # H200, bf16 NN (benchmarks/NOTES.md): all of a block's warps on one column block,
        # splitting its K slice: 16 warps x unroll 8 best at M = 1 and 2 (unroll 16 within
        # 2% at M = 1, but 512 threads leave 128 registers: a K tail's guarded step spills),
        # 8 x 16 at M = 4
        rows = 1
        warps = k_warps = 16 if spec.M <= 2 else 8
        unroll = 8 if spec.M <= 2 else 16 if spec.M <= 4 else 4
        while spec.M * vec > 2 * MAX_ACCUMULATORS:
            vec //= 2
    cfg = GemvConfig(rows=rows, warps=warps, split_k=1, vec=vec, unroll=unroll, k_warps=k_warps)
    budget = min(192, target.registers_per_sm // cfg.threads - 16)  # headroom for a K tail
    while estimates(cfg, spec)["registers"] > budget and cfg.rows * cfg.unroll > 1:
        cfg = cfg.replace(**({"rows": cfg.rows // 2} if cfg.rows > 1
                             else {"unroll": cfg.unroll // 2}))
    return fit_split(cfg, spec, target)


def fit_split(cfg: GemvConfig, spec: GemmSpec, target: Target) -> GemvConfig:
    """split_k doubled while the grid has fewer than about 2 blocks per SM and every slice
    keeps at least one whole step of the loop (and none is left empty)."""
    blocks = cfg.grid(spec)[0] * spec.batch
    step = cfg.k_step(spec)
    split = 1
    while blocks * split * 2 <= 2 * target.multiprocessors and spec.K >= split * 2 * step:
        nxt = cfg.replace(split_k=split * 2)
        if (nxt.split_k - 1) * nxt.k_chunk(spec) >= spec.K:
            break
        split *= 2
    return cfg.replace(split_k=split)
