"""WgmmaConfig: the wgmma strategy's fields, validation, estimates and default config
(NVIDIA sm_90a, f16/bf16 inputs, or f32 inputs multiplied as tf32 where the spec allows TF32;
f32 accumulation).

A block is one producer warpgroup (warpgroup 0: one elected thread issues the TMA loads of A
and B into a ring of `stages` 128-byte-swizzled shared tiles, tracked by mbarriers) and
`consumers` consumer warpgroups (warpgroups 1..consumers), each owning BM/consumers rows of the
BM x BN block tile and issuing m64nBNk16 wgmma for each 64-row slab of them, the accumulator
in registers. With warp_specialized, the producer lowers its registers (setmaxnreg
producer_registers) and the consumers raise theirs (consumer_registers).

Modes: "cooperative" (all consumers on one BM x BN tile, BM/consumers rows each) and
"pingpong" (two consumer warpgroups, each on its own BM x BN tile of a persistent CTA's walk:
they take turns on the tensor cores through ordered named barriers, so that one's epilogue
runs under the other's mainloop, CUTLASS sm90's ping-pong schedule).

What is built (the rest is named by validate as not built yet): both modes, clusters 1x1, 2x1
(B multicast) and 1x2 (A multicast; both cooperative, not persistent), a grid in grouped order
(group_m), non-persistent or persistent (one CTA per SM taking tiles pid, pid + grid, ...; the
producer runs on into the next tile while the consumers store this one), BK of one 128-byte
swizzle span (64 16-bit elements), every layout (an MN-major operand, A stored K x M or B
stored K x N, takes wgmma's transpose bit), split_k slices of K along grid z (not with the
persistent grid or clusters; their sum by a second launch or, reduce "cluster", within a
cluster of the slices' CTAs), swap_ab (C^T = B^T A^T for small M), the epilogue per thread
("direct") or through shared memory and TMA stores ("tma": 16-bit C; not with split_k or
swap_ab).

tf32 (f32 inputs, spec.allow_tf32): TMA copies the f32 operands into shared memory unchanged and
wgmma reads them as tf32 (the tensor cores drop the low mantissa bits, as cuBLAS with TF32
does). wgmma's tf32 form reads only K-major operands (no transpose bits), so only layout NT
(A stored M x K, B stored N x K) is built; the 128-byte swizzle span holds 32 f32, so BK = 32,
and each wgmma is m64nNk8 (4 per K tile and slab, 32 bytes of K apart as k16 steps of 16-bit
types are).

fp8 (e4m3, e5m2 inputs; f32 accumulation; C f32, f16 or bf16): wgmma's fp8 form reads only
K-major operands too, so layout NT alone; the 128-byte span holds 128 of them (BK = 128), and
each wgmma is m64nNk32 (4 per K tile and slab, again 32 bytes of K apart). The spec's scales
(GemmSpec.scale: per tensor, or rowwise) multiply the accumulator before the epilogue chain
(kernel.py); split-K partials are stored scaled (the scales are linear), so the shared reduce
needs none. The default for fp8 (fp8_config) is the 16-bit rule's tile and mode at the same
bytes per stage.

int8 (w8a8: int8 inputs, C f32, f16 or bf16): wgmma m64nNk32 .s32.s8.s8, K-major operands
only (layout NT), BK = 128 as fp8, the same defaults; the accumulator is s32 (exact), turned
into f32 (cvt.rn.f32.s32: exact while |acc| < 2^24) where the epilogue reads it, then the
scales and the chain as fp8's. Integer wgmma takes N of 8, 16, 24 or a multiple of 16 up to
256 (INT8_WGMMA_N).

Block scales (fp8, GemmSpec.scale "block": DeepSeek-V3's 1 x 128 blocks of A, 128 x 128 of B,
DeepGEMM's scheme): BK = 128 is one scale block, so per K tile a consumer issues the tile's
wgmma into one of two temporary accumulators (scale-d 0 on its first) and, while they run, adds
the previous tile's temp x scale_a[kb, row] x scale_b[n0 / 128, kb] into its main f32
accumulator (FMA: the partial sums are promoted to f32 registers every 128 of K, which bounds
the error fp8 wgmma's narrower accumulator adds). Two K tiles per trip of the K loop
(issue_ahead): the second is issued before the first is waited for (wait_group 1), the trip's
end drains (wait_group 0); each stage is released once its wgmma are done. A consumer holds the
three accumulators (main + 2 temporaries) of slabs x BN / 2 registers each, at most
BLOCK_MAX_ACCUMULATORS in all (cooperative BM = 128 with 2 consumers: BN up to 136); with
temporaries 1 (DeepGEMM's schedule: wait, promote, issue the next K tile into the same
registers, the other consumer's wgmma running meanwhile) twice the BN (BLOCK_WIDE: 192); with
temp_parts 2 as well the temporary holds half the tile's columns, each K tile issued, waited
for and promoted in two parts: BN 256 (128 x 256 tiles: as fast as 128 x 192 at large K on
DeepGEMM's shapes, slower at K = 1536 and N = 2112; results/fp8_block_bench-h200-2026-12-03-
s12-wide256.json; an opt-in config, no default). A tile
lies in at most two blocks of B's scales (BN dividing 128, or e.g. 136, 160, 192: per chunk of
gcd(BN, 128) columns a select of the block's scale); cooperative mode, no swap_ab; split_k only
with reduce "cluster" and equal slices (each slice promotes its own K tiles, the cluster adds
the slices' f32 sums through distributed shared memory); 2x1 clusters as cooperative ones,
non-persistent or persistent (a cluster walks pairs of vertically adjacent tiles together,
the ring carried on from pair to pair; tail_split: the last round's tiles on two halves of K
by both CTAs of a cluster, summed the same way; narrow_column: a last tile column at most half
full walked with BN / 2 wgmma, two pairs of it by each cluster the full columns leave a pair
short). block_config is the default.
smem_scales (the default where M % 4 == 0): scale_a staged in shared memory by the producer,
per stage one TMA box of the K tile's BM values (scale_a as a rank-2 (ceil(K/128), M) array:
M a multiple of 4 for its 16-byte row pitch; rows past M read zeros and are never stored),
read by the consumers from shared memory (each warp releases the stage once it read them); not
with a BN that neither divides 128 nor is a multiple of 32."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from deepgen.dtypes import FP8_DTYPES, INT8_DTYPES, QUANTIZED_DTYPES
from deepgen.spec import DTYPE_BYTES, GemmSpec, SpecError

from ...target import Target
from .. import common
from ..base import StrategyConfig
from ..common import check

WARPGROUP = 128  # threads: 4 consecutive warps issue one wgmma together
WGMMA_M = 64  # rows of one wgmma (per warpgroup)
WGMMA_K = 16  # depth of one wgmma for 16-bit inputs
TF32_WGMMA_K = 8  # depth of one tf32 wgmma: 8 x 4 bytes, the same 32 bytes of a K-major row
FP8_WGMMA_K = 32  # depth of one fp8 (e4m3/e5m2) or int8 wgmma: 32 x 1 byte
# the N of an integer (s8) wgmma: 8, 16, 24, then multiples of 16 (PTX ISA, wgmma shapes)
INT8_WGMMA_N = (8, 16, 24) + tuple(range(32, 257, 16))
MAX_WGMMA_N = 256
SWIZZLE = 128  # bytes: the shared tiles' swizzle span (TMA and wgmma descriptors)
TMA_MAX_BOX = 256  # elements per box dimension
TMA_STRIDE_ALIGN = 16  # bytes: TMA needs every stride (row pitch) a multiple of 16 bytes
MAX_STAGES = 16  # deep rings stream narrow decode tiles (a few KiB a stage)
BARRIER_BYTES = 8
REGISTER_FILE = 65536  # 32-bit registers per SM
SM_SHARED = 228 * 1024  # shared memory per SM, shared by its resident CTAs
CTA_RESERVED_SHARED = 1024  # bytes the system reserves per resident CTA
MODES = ("cooperative", "pingpong")
# split_k's sum of the slices: "workspace" (each CTA stores its f32 partials to the workspace,
# a second launch, deepgen-split-k's reduce, sums them) or "cluster" (the split_k CTAs of a
# tile form a thread-block cluster along grid z, stash their partials in their own shared
# memory and each sums 1/split_k of the tile from all of them through distributed shared
# memory, in slice order, and stores it through the epilogue: one launch, no workspace)
REDUCES = ("workspace", "cluster")
MAX_CLUSTER = 8  # CTAs of a portable cluster
RASTERS = ("row",)
BUILT_LAYOUTS = ("NT", "NN", "TN", "TT")  # A or B MN-major: wgmma's transpose bits (16-bit)
PREFERRED_LAYOUTS = ("NT", "NN")  # where the default heuristic takes every measured rule
EPILOGUES = ("direct", "tma")
# the TMA epilogue's sub-tile columns: 16-bit outputs, rows of 32, 64 or 128 bytes (the TMA
# store box's inner dimension and its swizzle span: stmatrix's 16-byte rows conflict-free)
EPILOGUE_NS = (16, 32, 64)
EPILOGUE_BUFFERS = 2  # per consumer warpgroup: one fills while the other's TMA store reads
TMA_EPILOGUE_OUT = ("bf16", "f16")  # stmatrix stores 16-bit elements


@dataclass(frozen=True)
class WgmmaConfig(StrategyConfig):
    strategy: ClassVar[str] = "wgmma"
    BM: int = 128  # block tile rows: consumers x (a multiple of 64)
    BN: int = 128  # block tile columns: the wgmma N (multiple of 8 up to 256; 16 for NN)
    BK: int = 64  # block tile depth: one 128-byte swizzle span of 16-bit elements
    stages: int = 4  # shared-memory stages of the TMA ring
    consumers: int = 1  # consumer warpgroups (each on BM/consumers rows)
    # "cooperative": consumers on one tile; "pingpong": each consumer on its own BM x BN tile
    mode: str = "cooperative"
    warp_specialized: bool = True  # setmaxnreg: producer lowers, consumers raise registers
    producer_registers: int = 40
    consumer_registers: int = 232
    # thread-block cluster: 2 CTAs on vertically adjacent tiles (2x1) share B, or on
    # horizontally adjacent tiles (1x2) share A, each loading half of the shared operand's
    # tile and multicasting it to both (2x2 not built)
    cluster_m: int = 1
    cluster_n: int = 1
    persistent: bool = False  # one CTA per SM walking the tiles (static round robin)
    raster: str = "row"  # tile order of the grid
    group_m: int = 8  # grouped order: tiles of group_m block rows are walked column by column
    # K slices over grid z (batch * split_k CTAs along z), each a contiguous run of K tiles;
    # the f32 partials go to the workspace W and deepgen-split-k's reduce applies the epilogue
    split_k: int = 1
    # CTAs resident per SM (the kernel's minctasm): 2 lets one CTA's epilogue and ring fill
    # run under the other's wgmma, when both fit in shared memory and the register file
    ctas_per_sm: int = 1
    # C^T = B^T A^T: B feeds wgmma's A operand (the BM rows of a tile run over N) and A its B
    # operand (the BN columns run over M): a small M becomes wgmma's N (n8..n256) while N
    # fills wgmma's 64-row M; the epilogue stores the transposed accumulator into C
    swap_ab: bool = False
    reduce: str = "workspace"  # split_k's sum of the slices (REDUCES)
    # the tile's way out (EPILOGUES): "direct" (each thread stores its pairs of registers to
    # C with guarded 2-vector stores) or "tma" (through shared memory: stmatrix into a
    # 64 x epilogue_n sub-tile buffer, two per consumer warpgroup, each sent out by one TMA
    # store that clips partial tiles, overlapped with the next sub-tile)
    epilogue: str = "direct"
    epilogue_n: int = 32  # "tma": columns of a sub-tile (EPILOGUE_NS; a swizzle span)
    # block scales: the producer brings each K tile's BM scale_a values into shared memory
    # with the stage's A and B (one TMA box, counted in the stage's transaction bytes); the
    # consumers read their rows' scales there instead of from global memory
    smem_scales: bool = False
    # block scales, two consumers: consumer 1 issues its first K tile only once consumer 0's
    # has completed, so that their groups take turns on the tensor cores (each one's wait,
    # promotion and next issue under the other's group) instead of draining together
    stagger: bool = False
    # block scales: the consumer's K loop takes two K tiles per trip and issues the second
    # before the first is waited for (wait_group 1), so the warpgroup's tensor-core queue
    # drains (wait_group 0: nothing may be in flight across a back edge) once per trip;
    # False: after every K tile (session 5's schedule)
    issue_ahead: bool = True
    # block scales: the temporary accumulators a consumer issues its K tiles into. 2: K tile
    # t's wgmma runs while t - 1's temporary is promoted (issue_ahead); 1 (DeepGEMM's
    # schedule): wait, promote, then issue the next into the same registers, the other
    # consumer's wgmma running meanwhile; main + 1 temporary leaves room for BN up to 200
    temporaries: int = 2
    # block scales with temporaries 1: the temporary holds BN / temp_parts columns, and each K
    # tile is issued, waited for and promoted part by part (the stage released after the
    # last), so main + temporary fit BN 256 (128 + 64 registers): fewer bytes of A and B per
    # product than 128 x 192, and N = 4096, 7168, 24576 in whole tile columns
    temp_parts: int = 1
    # block scales: each tile's rows of scale_b (its K tiles' values, one or two 128-column
    # blocks) prefetched into L1 (prefetch.global.L1, a line per lane) when the tile starts,
    # so the K loop's per-K-tile loads of scale_b hit L1 rather than wait on L2 (DeepGEMM
    # stages them in shared memory per tile)
    prefetch_scales: bool = False
    # block scales, persistent 2x1 clusters: where the last round of pairs leaves at least
    # half the clusters idle (pairs mod clusters = L, 2 L <= clusters), its 2 L tiles go to
    # 2 L clusters, both CTAs of one on one tile's two halves of K, summed through
    # distributed shared memory (the round takes half the time); elsewhere no change
    tail_split: bool = False
    # block scales, persistent 2x1 clusters: where N's last tile column is at most half full
    # and the walk of the full columns leaves some clusters a pair short, those take the last
    # column's pairs, two each, with BN / 2 wgmma (half the work a pair: the rounds even out;
    # kernel.pair_strip); elsewhere (and in place of tail_split there) no change
    narrow_column: bool = False
    # block scales: yield hints on every other FFMA of the promotion runs that ptxas left
    # without any (compiler/sass_yield.py; an edit of control bits in the cubin), so that the
    # other warps' wgmma issue interleaves with a warp's promotion (DeepGEMM's FFMA
    # interleaving)
    ffma_yield: bool = False

    @property
    def threads(self) -> int:
        return WARPGROUP * (1 + self.consumers)

    @property
    def rows_per_consumer(self) -> int:
        """Rows of the tile one consumer warpgroup computes (ping-pong: the whole tile)."""
        return self.BM if self.mode == "pingpong" else self.BM // self.consumers

    @property
    def cluster_ctas(self) -> int:
        """CTAs of a multicast cluster (cluster_m x cluster_n: 1, or 2 sharing an operand)."""
        return self.cluster_m * self.cluster_n

    @property
    def walks_pairs(self) -> bool:
        """Persistent 2x1 clusters (block scales): each cluster walks pairs of vertically
        adjacent tiles."""
        return self.persistent and self.cluster_m == 2

    @property
    def cluster_reduce(self) -> bool:
        """split_k slices summed within a cluster (no workspace, no second launch)."""
        return self.split_k > 1 and self.reduce == "cluster"

    @property
    def workspace_reduce(self) -> bool:
        """split_k slices stored to the workspace and summed by the reduce launch."""
        return self.split_k > 1 and self.reduce == "workspace"

    @property
    def slabs(self) -> int:
        """64-row wgmma slabs per consumer warpgroup (accumulators per thread)."""
        return self.rows_per_consumer // WGMMA_M

    @property
    def accumulator_registers(self) -> int:
        """Accumulator registers per consumer thread: BN/2 per slab (m64nBN over 128)."""
        return self.slabs * self.BN // 2

    def lowering(self):
        raise NotImplementedError("wgmma builds its kernel directly: no flat lowering")


@dataclass(frozen=True)
class Operands:
    """Which of the spec's operands feeds wgmma's A operand (the tile's BM rows) and which its
    B operand (BN columns), the problem's extent along each, and whether each is K-major in
    memory (a K-major A stored (rows, K); B stored (cols, K))."""
    a: str
    b: str
    rows: int
    cols: int
    a_k_major: bool
    b_k_major: bool


def is_tf32(spec: GemmSpec) -> bool:
    """f32 inputs multiplied on the tensor cores as tf32 (the spec allows TF32)."""
    return spec.dtype == "f32" and spec.allow_tf32


def is_fp8(spec: GemmSpec) -> bool:
    """fp8 inputs (e4m3, e5m2): wgmma m64nNk32, K-major operands only."""
    return spec.dtype in FP8_DTYPES


def is_int8(spec: GemmSpec) -> bool:
    """int8 inputs: wgmma m64nNk32 .s32.s8.s8 (s32 accumulator), K-major operands only."""
    return spec.dtype in INT8_DTYPES


def is_quantized(spec: GemmSpec) -> bool:
    """fp8 or int8 inputs: one byte each, BK 128, layout NT, optional scales."""
    return spec.dtype in QUANTIZED_DTYPES


def accumulator_dtype(spec: GemmSpec) -> str:
    """The wgmma accumulator's element type: s32 for int8 inputs, else f32."""
    return "s32" if is_int8(spec) else "f32"


def int8_bn(bn: int) -> int:
    """`bn` rounded up to an N integer wgmma takes (INT8_WGMMA_N)."""
    return next(n for n in INT8_WGMMA_N if n >= bn)


def wgmma_dtype(spec: GemmSpec) -> str:
    """The wgmma input type: tf32 for f32 data, else the spec's 16-bit or fp8 type."""
    return "tf32" if is_tf32(spec) else spec.dtype


def wgmma_k(spec: GemmSpec) -> int:
    """The K of one wgmma: k8 for tf32, k16 for 16-bit types, k32 for fp8 and int8 (32 bytes
    of K each)."""
    if is_quantized(spec):
        return FP8_WGMMA_K
    return TF32_WGMMA_K if is_tf32(spec) else WGMMA_K


def span_k(spec: GemmSpec) -> int:
    """BK: the elements of one 128-byte swizzle span (64 16-bit, 32 f32)."""
    return SWIZZLE // DTYPE_BYTES[spec.dtype]


def dtype_problem(spec: GemmSpec) -> str | None:
    """Why wgmma cannot multiply this spec's inputs (None when it can): f16/bf16, or f32 as
    tf32 when TF32 is allowed (tf32's layout, NT only, is checked with the operands)."""
    if spec.dtype in ("f16", "bf16") or is_tf32(spec) or is_quantized(spec):
        return None
    return (f"the wgmma strategy multiplies f16, bf16, fp8 (e4m3, e5m2), int8, or f32 as tf32 "
            f"(allow_tf32=True), "
            f"got {spec.dtype}{' without allow_tf32' if spec.dtype == 'f32' else ''}")


def operands(cfg: WgmmaConfig, spec: GemmSpec) -> Operands:
    if cfg.swap_ab:  # wgmma A = B^T (N x K: K-major when B is stored (N, K)), wgmma B = A^T
        return Operands("B", "A", spec.N, spec.M, spec.b_transposed, not spec.a_transposed)
    return Operands("A", "B", spec.M, spec.N, not spec.a_transposed, spec.b_transposed)


def k_tiles(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    return -(-spec.K // cfg.BK)


def slice_tiles(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    """K tiles per split-K slice (the last slice takes what is left)."""
    return -(-k_tiles(cfg, spec) // cfg.split_k)


def tile_bytes(cfg: WgmmaConfig, spec: GemmSpec) -> tuple[int, int]:
    """Bytes of one stage's A and B tiles."""
    elt = DTYPE_BYTES[spec.dtype]
    return cfg.BM * cfg.BK * elt, cfg.BN * cfg.BK * elt


def partial_bytes(cfg: WgmmaConfig) -> int:
    """Shared bytes of a tile's f32 partial sums (cluster reduce, or tail_split's halves;
    they reuse the ring)."""
    return cfg.BM * cfg.BN * 4 if cfg.cluster_reduce or cfg.tail_split else 0


def data_bytes(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    """Shared bytes before the barriers: the ring's stages, or the partials where larger,
    then the TMA epilogue's sub-tile buffers (epilogue_bytes), then the staged scale_a
    (scale_bytes)."""
    return scale_offset(cfg, spec) + scale_bytes(cfg)


def scale_offset(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    """Shared byte offset of the staged scale_a (smem_scales): after the ring and the TMA
    epilogue's buffers (1024-byte aligned)."""
    return ring_bytes(cfg, spec) + epilogue_bytes(cfg, spec)


def scale_bytes(cfg: WgmmaConfig) -> int:
    """Shared bytes of the staged scale_a (smem_scales): BM f32 per stage (0 without)."""
    return cfg.stages * cfg.BM * SCALE_BYTES if cfg.smem_scales else 0


def ring_bytes(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    """Shared bytes of the ring's stages, or of the partials where larger (the TMA epilogue's
    buffers follow: 1024-byte aligned, as every stage size is)."""
    return max(cfg.stages * sum(tile_bytes(cfg, spec)), partial_bytes(cfg))


def epilogue_bytes(cfg: WgmmaConfig, spec: GemmSpec) -> int:
    """Shared bytes of the TMA epilogue's sub-tile buffers: EPILOGUE_BUFFERS per consumer
    warpgroup of WGMMA_M x epilogue_n output elements (0 for the direct epilogue)."""
    if cfg.epilogue != "tma":
        return 0
    return (cfg.consumers * EPILOGUE_BUFFERS * WGMMA_M * cfg.epilogue_n
            * DTYPE_BYTES[spec.out_dtype])


def estimates(cfg: WgmmaConfig, spec: GemmSpec) -> dict:
    shared = data_bytes(cfg, spec) + 2 * cfg.stages * BARRIER_BYTES
    acc = cfg.accumulator_registers
    return {"shared_bytes": shared, "registers": acc + 40, "accumulator_registers": acc}


def tma_problem(spec: GemmSpec) -> str | None:
    """Why TMA cannot load this spec's operands (None when it can)."""
    elt = DTYPE_BYTES[spec.dtype]
    for op in ("A", "B"):
        rows, cols = spec.stored_shape(op)
        if (cols * elt) % TMA_STRIDE_ALIGN:
            return (f"TMA needs 16-byte-aligned row strides: rows of {op} (layout "
                    f"{spec.layout}) hold {cols} {spec.dtype} elements = {cols * elt} bytes, not "
                    f"a multiple of {TMA_STRIDE_ALIGN}")
    return None


# block scales: accumulator registers per consumer thread, main + temporaries of slabs x BN / 2
# each (main + 2 temporaries of 136 columns: 204; at 240 registers ptxas spills with more)
BLOCK_MAX_ACCUMULATORS = 204


def straddle_blocks(bn: int) -> int:
    """How many 128-row blocks of B's scales a tile of `bn` columns at n0 = t x bn may span
    (its offsets within a block are multiples of gcd(bn, 128)): 1 where bn divides 128."""
    return 1 + -(-(128 - math.gcd(bn, 128) + bn - 128) // 128) if 128 % bn else 1


SCALE_BYTES = 4  # an f32 scale


def _validate_block(cfg: WgmmaConfig, spec: GemmSpec) -> None:
    """Block scales: what the main loop's per-K-tile promotion is built for."""
    check(is_fp8(spec), "scale",
          f"block scales are built for fp8 (e4m3, e5m2) inputs, got {spec.dtype}")
    check(not spec.dynamic_m, "scale", "block scales with a range of M: not built")
    check(cfg.mode == "cooperative", "mode",
          f"block scales: mode 'cooperative' (ping-pong's 128 x 128 per warpgroup would need "
          f"256 accumulator registers, main + temporary), got {cfg.mode!r}")
    if cfg.split_k > 1:  # each slice promotes its own K tiles; the cluster sums the slices
        check(cfg.reduce == "cluster", "reduce",
              f"block scales with split_k: reduce 'cluster' (the slices' promoted f32 sums "
              f"added within the cluster), got {cfg.reduce!r}")
        tiles = k_tiles(cfg, spec)
        check(tiles % cfg.split_k == 0, "split_k",
              f"block scales with split_k: the K loop is unrolled for one count, so the "
              f"{tiles} K tiles must divide into split_k equal slices, got {cfg.split_k}")
    check(not cfg.swap_ab, "swap_ab", "block scales with swap_ab: not built")
    check(128 % cfg.BN == 0 or straddle_blocks(cfg.BN) <= 2, "BN",
          f"block scales: a tile's columns must lie in at most two 128-row blocks of B's "
          f"scales: BN dividing 128, or one whose tiles start at offsets (multiples of gcd(BN, "
          f"128)) that leave room for it, e.g. 96, 112, 136), got {cfg.BN}")
    check(cfg.temporaries in (1, 2), "temporaries",
          f"block scales' temporary accumulators: 1 or 2, got {cfg.temporaries}")
    check(cfg.temp_parts in (1, 2), "temp_parts",
          f"block scales' temporary in 1 or 2 column parts of the tile, got {cfg.temp_parts}")
    if cfg.temp_parts > 1:
        check(cfg.temporaries == 1, "temp_parts",
              f"a temporary of BN / {cfg.temp_parts} columns is built for temporaries 1 "
              f"(wait, promote, issue the next part into the same registers), got temporaries "
              f"{cfg.temporaries}")
        check(cfg.BN % (8 * cfg.temp_parts) == 0, "temp_parts",
              f"each part is a wgmma of BN / {cfg.temp_parts} columns, a multiple of 8: BN must "
              f"be a multiple of {8 * cfg.temp_parts}, got {cfg.BN}")
    temp_regs = cfg.temporaries * cfg.accumulator_registers // cfg.temp_parts
    regs = cfg.accumulator_registers + temp_regs
    check(regs <= BLOCK_MAX_ACCUMULATORS, "BN",
          f"block scales keep a main and {cfg.temporaries} temporary accumulator(s) of slabs x "
          f"BN / 2 registers per consumer thread (a temporary of BN / temp_parts columns): at "
          f"most {BLOCK_MAX_ACCUMULATORS} in all, got {cfg.accumulator_registers} + {temp_regs} "
          f"= {regs} (BM {cfg.BM}, BN {cfg.BN}, {cfg.consumers} consumer(s), temp_parts "
          f"{cfg.temp_parts}; temporaries 1 takes twice the BN of 2, temp_parts 2 more)")


def staged_scales_problem(cfg: WgmmaConfig, spec: GemmSpec) -> str | None:
    """Why block scales' scale_a cannot be staged in shared memory (smem_scales) with this
    config (None when it can): validate's error, and where complete() and block_config leave
    the staging out."""
    if 128 % cfg.BN and math.gcd(cfg.BN, 128) < 32:
        return (f"staged scale_a with tiles across two blocks of B's scales at offsets finer "
                f"than 32 columns (gcd(BN, 128) = {math.gcd(cfg.BN, 128)}, BN {cfg.BN}) gave "
                f"rows of wrong results at random on the H200 (BN 136, persistent; results/"
                f"fp8_block_bn136_smem-h200-2026-12-02.log; BN 160 and 192 pass): BN must "
                f"divide 128 or be a multiple of 32, or smem_scales false")
    if spec.M % 4:
        return (f"TMA loads scale_a ((ceil(K/128), M) f32) by rows of a 16-byte pitch: M must "
                f"be a multiple of 4, got M = {spec.M}")
    return None


def tma_epilogue_problem(cfg: WgmmaConfig, spec: GemmSpec) -> tuple[str, str] | None:
    """(field, why) where the TMA epilogue cannot serve this spec and config (None when it
    can): 16-bit C, C's row pitch a multiple of 16 bytes (TMA), one tile per CTA's output
    (no split-K or swap_ab: their stores are not built through it)."""
    out = spec.out_dtype
    if out not in TMA_EPILOGUE_OUT:
        return "epilogue", (f"'tma' stores {'/'.join(TMA_EPILOGUE_OUT)} outputs (stmatrix "
                            f"writes 16-bit elements), got out_dtype {out}")
    pitch = spec.N * DTYPE_BYTES[out]
    if pitch % TMA_STRIDE_ALIGN:
        return "epilogue", (f"'tma' needs C's row pitch a multiple of {TMA_STRIDE_ALIGN} "
                            f"bytes: N = {spec.N} {out} elements = {pitch} bytes")
    for field, on, what in (("split_k", cfg.split_k > 1, f"split_k {cfg.split_k}"),
                            ("swap_ab", cfg.swap_ab, "swap_ab")):
        if on:
            return field, f"{what} with epilogue 'tma': not built (use epilogue 'direct')"
    if cfg.epilogue_n not in EPILOGUE_NS or cfg.BN % cfg.epilogue_n:
        return "epilogue_n", (f"'tma' sub-tile columns: one of {EPILOGUE_NS} dividing BN = "
                              f"{cfg.BN}, got {cfg.epilogue_n}")
    return None


def _validate_epilogue(cfg: WgmmaConfig, spec: GemmSpec) -> None:
    check(cfg.epilogue in EPILOGUES, "epilogue",
          f"must be one of {EPILOGUES}, got {cfg.epilogue!r}")
    if cfg.epilogue == "tma":
        problem = tma_epilogue_problem(cfg, spec)
        if problem is not None:
            check(False, *problem)


def multicast_half_problem(cfg: WgmmaConfig, spec: GemmSpec, field: str, operand: str,
                           k_major: bool, shape: str) -> str | None:
    """Why the CTAs of a 2-CTA cluster cannot each load half of the shared operand's tile
    (`field` rows, BN of B for 2x1, BM of A for 1x2) and multicast it (None when they can):
    K-major, each half is `field`/2 rows, a multiple of the 8 rows of a 128-byte swizzle atom;
    MN-major, the tile is boxes of one 128-byte span (64 16-bit elements), split evenly."""
    extent = getattr(cfg, field)
    span = SWIZZLE // DTYPE_BYTES[spec.dtype]
    halves = extent // 2 if k_major else extent // span
    if halves % (8 if k_major else 2) == 0:
        return None
    return (f"a {shape} cluster multicasts half of {operand} from each CTA: {field}/2 must be "
            f"a multiple of 8 ({operand} K-major: the rows of a swizzle atom) or {field} a "
            f"multiple of {2 * span} ({operand} MN-major: boxes of {span}), got {extent}")


def register_cap(cfg: WgmmaConfig) -> int:
    """Registers per thread a CTA is launched with at most: the register file over the
    threads of ctas_per_sm CTAs, in steps of 8, at most 248 (255 per thread)."""
    return min(REGISTER_FILE // (cfg.threads * cfg.ctas_per_sm), 255) // 8 * 8


def validate(cfg: WgmmaConfig, spec: GemmSpec, target: Target) -> None:
    common.check_ints(cfg, zero_ok=())
    check(target.name == "sm_90a", "strategy",
          f"wgmma needs sm_90a (wgmma.mma_async, setmaxnreg), got target {target.name}"
          f"{f' (fp8 {spec.dtype} inputs are built by wgmma alone)' if is_fp8(spec) else ''}"
          f"{' (int8 inputs off sm_90a: the mma_sync strategy, mma.sync m16n8k32, layout NT)' if is_int8(spec) else ''}")
    problem = dtype_problem(spec)
    check(problem is None, "dtype", problem or "")
    ops = operands(cfg, spec)
    check(spec.layout in BUILT_LAYOUTS, "layout",
          f"must be one of {BUILT_LAYOUTS}, got {spec.layout}")
    if is_tf32(spec):  # no transpose bits for tf32: both operands must be K-major in memory
        check(ops.a_k_major and ops.b_k_major, "layout",
              f"tf32 wgmma reads only K-major operands (A stored M x K, B stored N x K: layout "
              f"NT), got layout {spec.layout}")
    if is_fp8(spec):  # likewise: fp8 wgmma has no transpose bits
        check(spec.layout == "NT", "layout",
              f"fp8 ({spec.dtype}) wgmma reads only K-major operands: layout NT (A stored M x "
              f"K, B stored N x K as nn.Linear's weight; torch._scaled_mm's b is its (K, N) "
              f"column-major view), got layout {spec.layout}")
    if is_int8(spec):  # integer wgmma: no transpose bits either
        check(spec.layout == "NT", "layout",
              f"int8 wgmma reads only K-major operands: layout NT (A stored M x K, B stored N "
              f"x K as nn.Linear's weight; deepgen.gemm's b is its (K, N) column-major view "
              f"w.t()), got layout {spec.layout}")
    if spec.scale == "tensor":  # acc * scales folded into alpha (kernel._scaled_alpha)
        check(spec.epilogue.steps[:1] == ("alpha_beta",), "epilogue",
              f"scales apply to the accumulator before the chain: its first step must be "
              f"alpha_beta, got {str(spec.epilogue)!r}")
    if spec.scale == "block":
        _validate_block(cfg, spec)
    for field in ("issue_ahead", "temporaries", "temp_parts"):
        check(getattr(cfg, field) == getattr(WgmmaConfig, field) or spec.scale == "block",
              field, f"schedules block scales' K loop (scale 'block'), got scale "
              f"{spec.scale!r}")
    check(cfg.temporaries == 2 or not cfg.issue_ahead, "issue_ahead",
          "issues a K tile while the previous one's temporary is promoted: it needs "
          "temporaries 2, got temporaries 1 (give issue_ahead false)")
    check(not cfg.ffma_yield or spec.scale == "block", "ffma_yield",
          f"interleaves block scales' promotion FFMAs (scale 'block'), got scale "
          f"{spec.scale!r}")
    check(not cfg.prefetch_scales or spec.scale == "block", "prefetch_scales",
          f"prefetches block scales' scale_b (scale 'block'), got scale {spec.scale!r}")
    check(not cfg.smem_scales or spec.scale == "block", "smem_scales",
          f"stages block scales' scale_a in shared memory (scale 'block'), got scale "
          f"{spec.scale!r}")
    check(not cfg.tail_split or (spec.scale == "block" and cfg.walks_pairs), "tail_split",
          f"splits the last round of block scales' persistent 2x1 clusters (scale 'block', "
          f"persistent, cluster_m 2), got scale {spec.scale!r}, persistent {cfg.persistent}, "
          f"cluster_m {cfg.cluster_m}")
    check(not cfg.narrow_column or (spec.scale == "block" and cfg.walks_pairs),
          "narrow_column", f"walks the last tile column of block scales' persistent 2x1 "
          f"clusters narrow (scale 'block', persistent, cluster_m 2), got scale "
          f"{spec.scale!r}, persistent {cfg.persistent}, cluster_m {cfg.cluster_m}")
    check(not cfg.stagger or (spec.scale == "block" and cfg.consumers == 2), "stagger",
          f"staggers block scales' two consumer warpgroups (scale 'block', consumers 2), got "
          f"scale {spec.scale!r} with {cfg.consumers} consumer(s)")
    staging = staged_scales_problem(cfg, spec) if cfg.smem_scales else None
    check(staging is None, "smem_scales", staging)
    if spec.scale != "none":
        check(cfg.split_k == 1 or getattr(cfg, "reduce", "workspace") == "cluster", "split_k",
              f"split_k {cfg.split_k} with scales: the workspace reduce applies none (not "
              f"built); use split_k 1")
    problem = tma_problem(spec)
    check(problem is None, "layout", problem or "")
    check(cfg.mode in MODES, "mode", f"must be one of {MODES}, got {cfg.mode!r}")
    if cfg.mode == "pingpong":
        # two warpgroups alternate on tiles of one CTA's walk: the walk must be persistent
        # (a non-persistent CTA has one tile), one CTA per SM, no cluster
        check(cfg.consumers == 2, "consumers",
              f"mode 'pingpong' takes turns between 2 consumer warpgroups, got {cfg.consumers}")
        check(cfg.persistent, "persistent",
              "mode 'pingpong' walks a persistent CTA's tiles (two at a time): set "
              "persistent=True")
        for field in ("cluster_m", "cluster_n"):
            check(getattr(cfg, field) == 1, field,
                  f"mode 'pingpong' with clusters: not built (1x1 only), got "
                  f"{cfg.cluster_m}x{cfg.cluster_n}")
        check(cfg.ctas_per_sm == 1, "ctas_per_sm",
              f"mode 'pingpong' overlaps two tiles in one CTA per SM: 1, got {cfg.ctas_per_sm}")
        check(not cfg.swap_ab, "swap_ab", "mode 'pingpong' with swap_ab: not built")
    check(cfg.raster in RASTERS, "raster", f"must be one of {RASTERS}, got {cfg.raster!r}")
    for field in ("cluster_m", "cluster_n"):
        check(getattr(cfg, field) in (1, 2), field,
              f"1 or 2 (clusters 1x1, 2x1 and 1x2 are built), got {getattr(cfg, field)}")
    check(cfg.cluster_ctas <= 2, "cluster_n",
          f"cluster_m x cluster_n <= 2 (1x1, 2x1 and 1x2 are built), got "
          f"{cfg.cluster_m}x{cfg.cluster_n}")
    if cfg.cluster_ctas > 1:
        # persistent 2x1 pairs: built for block scales (a cluster walks pairs of tiles)
        check(not cfg.persistent or (spec.scale == "block" and cfg.cluster_m == 2),
              "persistent", "clusters with the persistent grid: built for block-scaled fp8 "
              "in 2x1 clusters only")
        # the shared operand: B's BN rows (2x1) or A's BM rows (1x2), half from each CTA
        shared = (("BN", ops.b, ops.b_k_major, "2x1") if cfg.cluster_m == 2
                  else ("BM", ops.a, ops.a_k_major, "1x2"))
        problem = multicast_half_problem(cfg, spec, *shared)
        check(problem is None, shared[0], problem or "")
    check(cfg.split_k >= 1, "split_k", f"must be >= 1, got {cfg.split_k}")
    if cfg.split_k > 1:
        tiles, per = k_tiles(cfg, spec), slice_tiles(cfg, spec)
        check((cfg.split_k - 1) * per < tiles, "split_k",
              f"{cfg.split_k} slices of {per} K tiles leave the last one empty: K={spec.K} has "
              f"{tiles} tiles of BK={cfg.BK}")
        check(not cfg.persistent and cfg.cluster_ctas == 1, "split_k",
              f"split_k {cfg.split_k} with the persistent grid or clusters: not built (one "
              f"K slice per CTA along grid z)")
    check(cfg.reduce in REDUCES, "reduce", f"must be one of {REDUCES}, got {cfg.reduce!r}")
    if cfg.cluster_reduce:
        check(cfg.split_k <= MAX_CLUSTER, "split_k",
              f"reduce 'cluster': the split_k CTAs of a tile form one cluster, at most "
              f"{MAX_CLUSTER} (portable), got {cfg.split_k}")
    check(cfg.consumers in (1, 2), "consumers",
          f"1 or 2 consumer warpgroups, got {cfg.consumers}")
    if cfg.mode == "pingpong":
        check(cfg.BM % WGMMA_M == 0, "BM",
              f"mode 'pingpong': one warpgroup's tile rows, a multiple of {WGMMA_M} (a wgmma "
              f"covers {WGMMA_M} rows), got {cfg.BM}")
    else:
        check(cfg.BM % (cfg.consumers * WGMMA_M) == 0, "BM",
              f"must be a multiple of consumers x {WGMMA_M} = {cfg.consumers * WGMMA_M} (a "
              f"wgmma covers {WGMMA_M} rows per warpgroup), got {cfg.BM}")
    check(cfg.BM <= TMA_MAX_BOX, "BM",
          f"A's TMA box has BM rows: at most {TMA_MAX_BOX}, got {cfg.BM}")
    # NN: B's tile is BK rows of BN columns, loaded as boxes of one 128-byte swizzle span
    n_step = 8 if ops.b_k_major else SWIZZLE // DTYPE_BYTES[spec.dtype]
    check(cfg.BN % n_step == 0 and n_step <= cfg.BN <= MAX_WGMMA_N, "BN",
          f"the wgmma N: a multiple of {n_step} from {n_step} to {MAX_WGMMA_N}"
          f"{f' (layout {spec.layout}: B MN-major, boxes of one swizzle span)' if n_step > 8 else ''}"
          f"{' (swap_ab: BN runs over M)' if cfg.swap_ab else ''}, got {cfg.BN}")
    if is_int8(spec):
        check(cfg.BN in INT8_WGMMA_N, "BN",
              f"int8 wgmma's N: 8, 16, 24 or a multiple of 16 up to {MAX_WGMMA_N}, got {cfg.BN}")
    elt = DTYPE_BYTES[spec.dtype]
    check(cfg.BK * elt == SWIZZLE, "BK",
          f"one {SWIZZLE}-byte swizzle span: {SWIZZLE // elt} {spec.dtype} elements (the TMA "
          f"box's inner dimension equals the 128-byte swizzle width), got {cfg.BK}")
    check(2 <= cfg.stages <= MAX_STAGES, "stages", f"must be 2 to {MAX_STAGES}, got {cfg.stages}")
    check(cfg.group_m >= 1, "group_m", f"must be >= 1, got {cfg.group_m}")
    for field in ("producer_registers", "consumer_registers"):
        v = getattr(cfg, field)
        check(24 <= v <= 256 and v % 8 == 0, field,
              f"setmaxnreg takes a multiple of 8 from 24 to 256, got {v}")
    check(cfg.ctas_per_sm in (1, 2), "ctas_per_sm", f"1 or 2, got {cfg.ctas_per_sm}")
    ctas = cfg.ctas_per_sm
    if cfg.warp_specialized:
        # setmaxnreg moves registers only within a CTA: the raised and lowered counts must fit
        # in what the CTA was launched with (a setmaxnreg.inc that no one frees registers for
        # waits forever: 128x64 with two consumers at 104 and two CTAs per SM hung)
        cap = register_cap(cfg)
        need = WARPGROUP * (cfg.producer_registers + cfg.consumers * cfg.consumer_registers)
        check(need <= cfg.threads * cap, "consumer_registers",
              f"{ctas} CTA(s) per SM: {WARPGROUP} x ({cfg.producer_registers} + {cfg.consumers} "
              f"x {cfg.consumer_registers}) = {need} registers exceed the {cfg.threads} x {cap} "
              f"= {cfg.threads * cap} a CTA of {cfg.threads} threads holds (setmaxnreg moves "
              f"registers only within a CTA)")
    _validate_epilogue(cfg, spec)
    est = estimates(cfg, spec)
    if ctas > 1:
        need = ctas * (est["shared_bytes"] + CTA_RESERVED_SHARED)
        check(need <= SM_SHARED, "ctas_per_sm",
              f"{ctas} CTAs x ({est['shared_bytes']} + {CTA_RESERVED_SHARED}) = {need} bytes of "
              f"shared memory exceed the {SM_SHARED} of an SM (fewer stages or a smaller tile)")
    check(est["shared_bytes"] <= target.max_shared_bytes_per_block, "stages",
          f"{cfg.stages} stages of {sum(tile_bytes(cfg, spec))} bytes (+ barriers"
          f"{f', + {epilogue_bytes(cfg, spec)} of TMA epilogue buffers' if cfg.epilogue == 'tma' else ''}"
          f"{f', + {scale_bytes(cfg)} of staged scale_a' if cfg.smem_scales else ''}) = "
          f"{est['shared_bytes']} bytes exceed the {target.max_shared_bytes_per_block} bytes of "
          f"shared memory per block of {target.name}")
    limit = (cfg.consumer_registers if cfg.warp_specialized
             else REGISTER_FILE // (cfg.threads * ctas) // 8 * 8)
    check(est["accumulator_registers"] + 24 <= min(limit, 255), "BN",
          f"{cfg.slabs} slab(s) x BN/2 = {est['accumulator_registers']} accumulator registers "
          f"per thread leave too few of the {min(limit, 255)} a consumer thread has")


# Where the default heuristic takes wgmma (sm_90a, f16/bf16, layouts it builds,
# TMA-alignable), by the output tiles a tile shape gives, measured on the H200
# (benchmarks/NOTES.md; results/wgmma_bench-h200-2026-12-01*.json, run 4 for the mid sizes):
#   >= 128 tiles of 128x256: 128x256, 2 consumers (4096^3 0.90x cuBLAS, 1024x4096^2 0.90x,
#                            8192^3 1.04x; mma_sync 0.6x)
#   >= 100 tiles of 128x128: 128x128, 1 consumer (128x14336x4096: 0.94x; mma_sync 0.72x)
#   >= 128 tiles of 64x128:  64x128 (1024^3: 0.79x; mma_sync with split-K 0.38x)
# and none below M = 128 or with fewer tiles (128x4096x4096: mma_sync's split-K 0.71x beats
# wgmma's 0.64x without split-K). Layouts TN and TT (A MN-major, 2026-12-02 run 1: 4096^3
# 128x256 c2 0.94x / 0.92x cuBLAS, mma_sync 0.58x) take the first rule only (the one measured).
PREFERRED_MIN_M = 128
_PREFERRED_TILES = ((128, 256, 2, 128), (128, 128, 1, 100), (64, 128, 1, 128))
MN_MAJOR_A_TILES = _PREFERRED_TILES[:1]
# swap_ab (swap_config: BM 128, BN = M, one CTA per SM, split_k to one wave) at decode sizes,
# measured on the H200 2026-12-02 (results/wgmma_bench-h200-2026-12-02-swap.json, run 1):
# M = 8..128 by (N, K) in (4096, 4096), (14336, 4096), (4096, 14336), (28672, 4096),
# (8192, 8192), NT and NN: 0.84-1.03x cuBLAS (geomean about 0.98x) where the default ran
# 0.53-0.92x (mma_sync; wgmma tiles at M = 128 with N >= 8192); two CTAs per SM were slower
# (0.77-1.02x), and at M = 128 with N = 4096 swap_ab beat split-K without it (0.88x vs 0.85x).
# Run 2 (results/wgmma_bench-h200-2026-12-02-defaults.json): the decode suite's other (N, K)
# 0.85-1.13x where the default before ran 0.41-0.96x, except where the first tile rule already
# applies (128 x 57344 x 8192: 128x256 c2 1.02x, swap_ab 0.98x): that rule stays first.
# M = 2..4 (BN 8, the missing rows of A zero-filled by TMA) where gemv ran 0.60-0.91 of the
# streaming bandwidth and swap_ab at M = 8 0.76-1.07 on the same weights
# (results/decode_suite-h200-2026-12-02-final2.json); measured at M = 2, 3, 4 in
# results/decode_m2to4-h200-2026-12-02.json: swap_ab at least as fast as gemv on 86 of 96
# points (M = 2, 3, 4; bf16, f16; NT, NN: geometric mean 1.05-1.09x cuBLAS against gemv's
# 0.85-1.00x), the rest M = 2, 3 against N = 28672 or 57344 (1.7 or more waves of 128-row
# tiles), where gemv streams 2-4% faster: there gemv keeps M < SWAP_GEMV_M
SWAP_M = (2, 128)
SWAP_GEMV_M = 4
SWAP_GEMV_MAX_N = 16384
SWAP_MIN_NK = 4096


def _tiles(spec: GemmSpec, bm: int, bn: int) -> int:
    return -(-spec.M // bm) * -(-spec.N // bn) * spec.batch


def preferred_tile(spec: GemmSpec) -> tuple[int, int, int] | None:
    """(BM, BN, consumers) the default heuristic takes for `spec`, or None (not wgmma)."""
    if spec.M < PREFERRED_MIN_M:
        return None
    rules = _PREFERRED_TILES if spec.layout in PREFERRED_LAYOUTS else MN_MAJOR_A_TILES
    for bm, bn, consumers, min_tiles in rules:
        if _tiles(spec, bm, bn) >= min_tiles:
            return bm, bn, consumers
    return None


def preferred_swap(spec: GemmSpec) -> bool:
    """Whether the default takes swap_ab (swap_config): a decode-sized M against a large
    weight matrix, in the layouts and sizes measured."""
    if spec.M < SWAP_GEMV_M and spec.N > SWAP_GEMV_MAX_N:
        return False
    return (SWAP_M[0] <= spec.M <= SWAP_M[1] and spec.N >= SWAP_MIN_NK
            and spec.K >= SWAP_MIN_NK and spec.batch == 1 and spec.layout in PREFERRED_LAYOUTS
            and preferred_tile(spec) != _PREFERRED_TILES[0][:3])


PREFERRED_DTYPES = ("f16", "bf16")
# tf32 (layout NT, the only one its wgmma reads), measured on the H200 2026-12-02
# (results/wgmma_bench-h200-2026-12-02-tf32.json, 5 interleaved rounds, every kernel checked):
# 4096^3 128x256x32 c2 343 TFLOP/s = 0.96x cuBLAS with TF32 (persistent 0.96x, 256x128 0.94x,
# 128x128 s6 0.89x; mma_sync's default 118, 0.33x): the large-tile rule only, where measured.


def preferred(spec: GemmSpec) -> bool:
    if is_quantized(spec):  # no other strategy multiplies fp8 or int8
        return True
    if is_tf32(spec):
        return spec.layout == "NT" and preferred_tile(spec) == _PREFERRED_TILES[0][:3]
    if spec.dtype not in PREFERRED_DTYPES:
        return False
    return preferred_swap(spec) or preferred_tile(spec) is not None


# Ping-pong where the large tile's K loop is short: two warpgroups on their own 128 x 128
# tiles of a persistent CTA, 7 stages, one's epilogue (and the next tile's ring fill) under the
# other's mainloop. Measured on the H200 (benchmarks/NOTES.md 2026-12-02, layout NN, 5
# interleaved rounds; results/wgmma_bench-h200-2026-12-02-pingpong*.json) against the
# cooperative 128x256: K = 2048-4096 faster or level (2048^3 0.93x cuBLAS vs 0.83x,
# 2048x14336x4096 0.96x vs 0.90x, 4096x14336x4096 0.98x vs 0.91x, 4096^3 0.92x vs 0.90x);
# K = 14336 slower (0.94-0.95x vs 0.98x: 128 x 128 tiles move a third more bytes per flop
# from L2 and shared memory, and the per-tile costs it hides are small there); 8192^3 level.
PINGPONG_MAX_K = 4096
PINGPONG = dict(BM=128, BN=128, consumers=2, mode="pingpong", persistent=True, stages=7)
PINGPONG_LAYOUTS = ("NT", "NN")  # measured; TN/TT (A MN-major) not yet
PINGPONG_DTYPES = ("f16", "bf16")  # measured; tf32 not yet
# Measured on the H200 by `deepgen tune tuning_configs/wgmma_suite_small.json` (bf16 NN,
# results/tune_wgmma_suite_small-h200-2026-12-02.json): a short K loop (K = 512, 8 K tiles a
# tile) runs ping-pong best in 4 stages (64 x 512^3: 0.83x cuBLAS, 7 stages 0.76x), a long one
# in 7 (2048^3: 0.96x, 4 stages 0.90x; 2048x4096x4096 0.90x, 6 stages 0.89x)
PINGPONG_SHORT_K = 512
PINGPONG_SHORT_K_STAGES = 4
# and the mid-size tile rule (preferred_tile's 64 x 128) as ping-pong of 64 x 128 per
# warpgroup in 6 stages: 1024^3 0.92x, where the cooperative 64 x 128 in 4 stages ran 0.81x
# (in 6 stages, persistent: 0.87x)
MID_PINGPONG = dict(BM=64, BN=128, consumers=2, mode="pingpong", persistent=True, stages=6)
# and past PINGPONG_MAX_K up to WIDE_PINGPONG_MAX_K, ping-pong of 128 x 192 per warpgroup in
# 5 stages (40 KiB each): fewer bytes per flop than 128 x 128, and at 8192^3 2752 tiles = 20.85
# waves of 132 where 128 x 256 makes 2048 = 15.5 (the last wave half idle). Measured on the
# H200 2026-12-02 (5 interleaved rounds): 8192^3 NN 1.01x / NT 1.00x cuBLAS
# (results/wgmma_bench-h200-2026-12-02-q8k.json), bf16 NN 1.04x / f16 NN 1.01x (-kbig.json),
# where the cooperative 128 x 256 ran 0.93-0.96x and ping-pong 128 x 128 0.93-0.97x; at
# K = 14336 (2048 and 4096 x 4096 x 14336) the cooperative 128 x 256 stays: 0.93-0.94x, where
# 128 x 192 ran 0.87-0.88x and 128 x 128 0.90x (longer K loops: the epilogue it hides is a
# smaller share, the bytes per flop a larger one). Only with many tiles (8192^3: 2048 of
# 128 x 256): a decode-sized M (128 x 57344 x 8192, one row of tiles) keeps the 128 x 256
WIDE_PINGPONG = dict(BM=128, BN=192, consumers=2, mode="pingpong", persistent=True, stages=5)
WIDE_PINGPONG_MAX_K = 8192
WIDE_PINGPONG_MIN_TILES = 1024


# The TMA epilogue (epilogue "tma": stmatrix into shared sub-tiles, TMA stores), measured on
# the H200 2026-12-02 against the direct epilogue (results/wgmma_bench-h200-2026-12-02-
# tmastore.json, bf16 NN, 5 interleaved rounds, every kernel checked): ping-pong 128 x 128
# with 64-column sub-tiles in 6 stages (its buffers take the 7th stage's shared memory):
# 4096^3 0.96x cuBLAS where the direct epilogue in 7 stages ran 0.92x (in 6: 0.94x),
# 2048x14336x4096 0.98x vs 0.96x (6 stages: 0.96x); the cooperative 128 x 256 at K = 14336
# with 32-column sub-tiles: 2048x4096x14336 0.99x vs 0.94x, 4096x4096x14336 1.00x vs 0.97x
# (64 columns: 0.96x, 0.99x); ping-pong 128 x 192 at 8192^3 level (1.01x either way: direct
# kept). With these defaults (-tmastore2.json, every suite point whose kernel they changed,
# NN, against the direct epilogue before them): bf16 4096^3 0.97x vs 0.92x, 2048^3 1.01x vs
# 0.92x, 8x2048^3 0.99x vs 0.94x, 2048x4096x4096 0.97x vs 0.93x, 2048x14336x4096 1.00x vs
# 0.97x, 4096x14336x4096 0.98x vs 0.97x, 2048x4096x14336 0.99x vs 0.95x, 4096x4096x14336
# 0.99x vs 0.96x; f16 0.95-1.03x vs 0.92-0.98x (4096x14336x4096 level at 0.95x). Where C
# cannot take it (f32 out, a row pitch not a multiple of 16 bytes) the direct epilogue
# stays (tma_epilogue_problem).
PINGPONG_TMA = {"epilogue": "tma", "epilogue_n": 64, "stages": 6}
COOPERATIVE_TMA = {"epilogue": "tma", "epilogue_n": 32}


def with_tma_epilogue(cfg: WgmmaConfig, spec: GemmSpec, fields: dict) -> WgmmaConfig:
    """`cfg` with the TMA epilogue's `fields` where it serves the spec, else `cfg`."""
    tma = cfg.replace(**fields)
    return tma if tma_epilogue_problem(tma, spec) is None else cfg


def default_config(spec: GemmSpec, target: Target, tma_epilogue: bool = True) -> WgmmaConfig:
    """Ping-pong where measured (the layout and dtype in PINGPONG_LAYOUTS, _DTYPES): PINGPONG
    where `preferred_tile` is the large 128x256 tile and K <= PINGPONG_MAX_K (4 stages for
    K <= PINGPONG_SHORT_K; above, the TMA epilogue: PINGPONG_TMA), WIDE_PINGPONG for it up
    to K = WIDE_PINGPONG_MAX_K (with at least WIDE_PINGPONG_MIN_TILES of 128x256), the
    cooperative 128x256 with the TMA epilogue (COOPERATIVE_TMA) past that K, MID_PINGPONG
    for its mid-size 64x128 tile (not at decode sizes, which swap_ab serves); else the
    cooperative default (cooperative_default); fp8: fp8_config (int8 too). Without
    `tma_epilogue`, the direct epilogue throughout (the rules before it)."""
    if is_quantized(spec):
        return fp8_config(spec, target)
    tile = preferred_tile(spec)
    if spec.layout in PINGPONG_LAYOUTS and spec.dtype in PINGPONG_DTYPES:
        if tile == (128, 256, 2) and spec.K <= PINGPONG_MAX_K:
            if spec.K <= PINGPONG_SHORT_K:
                return WgmmaConfig(**PINGPONG).replace(stages=PINGPONG_SHORT_K_STAGES)
            if not tma_epilogue:
                return WgmmaConfig(**PINGPONG)
            return with_tma_epilogue(WgmmaConfig(**PINGPONG), spec, PINGPONG_TMA)
        if (tile == (128, 256, 2) and spec.K <= WIDE_PINGPONG_MAX_K
                and _tiles(spec, 128, 256) >= WIDE_PINGPONG_MIN_TILES):
            return WgmmaConfig(**WIDE_PINGPONG)
        if tile == (128, 256, 2) and spec.K > WIDE_PINGPONG_MAX_K and tma_epilogue:
            return with_tma_epilogue(cooperative_default(spec, target), spec, COOPERATIVE_TMA)
        if tile == (64, 128, 1) and not preferred_swap(spec):
            return WgmmaConfig(**MID_PINGPONG)
    return cooperative_default(spec, target)


# Fields that name the kernel's shape: given without `mode`, they complete the cooperative
# default of the spec, so that {"BN": 256, "consumers": 2} still means the cooperative
# 128x256 where the default is ping-pong (whose 128 x 256 per warpgroup would not fit)
_COOPERATIVE_FIELDS = ("BM", "BN", "consumers", "persistent", "cluster_m", "ctas_per_sm",
                       "split_k", "swap_ab")


def complete(given: dict, spec: GemmSpec, target: Target) -> WgmmaConfig:
    """The config of the fields `given` over the spec's default (default_config), or over
    its cooperative default where the default is ping-pong, `mode` is not given and a field
    of _COOPERATIVE_FIELDS is; the default's TMA epilogue dropped (the direct one) where
    `epilogue` is not given and the given fields leave it invalid (split_k, swap_ab, a BN
    its sub-tile does not divide, more stages than fit beside its buffers); with block scales
    and a BN not dividing 128, its staged scale_a where `smem_scales` is not given, and its
    tail_split where `tail_split` is not given and the walk is not of persistent 2x1
    clusters; with temporaries 1, issue_ahead false where it is not given; where `stages` is
    not given and the default's do not fit the given tile's shared memory even without the
    TMA epilogue's buffers, as many as fit with them."""
    cfg = default_config(spec, target)
    if (cfg.mode == "pingpong" and "mode" not in given
            and any(f in given for f in _COOPERATIVE_FIELDS)):
        cfg = cooperative_default(spec, target)
    cfg = cfg.replace(**given)
    if cfg.smem_scales and "smem_scales" not in given and staged_scales_problem(cfg, spec):
        cfg = cfg.replace(smem_scales=False)  # the default's staged scale_a: not with this BN
    if cfg.temporaries == 1 and "issue_ahead" not in given:
        cfg = cfg.replace(issue_ahead=False)  # (it needs a second temporary)
    for walk in ("tail_split", "narrow_column"):  # the default's: for persistent 2x1 clusters
        if getattr(cfg, walk) and walk not in given and not cfg.walks_pairs:
            cfg = cfg.replace(**{walk: False})

    def fits(c):
        return estimates(c, spec)["shared_bytes"] <= target.max_shared_bytes_per_block

    if "stages" not in given and not fits(cfg.replace(epilogue="direct")):
        while cfg.stages > 2 and not fits(cfg):  # a given tile needs fewer (BN 192)
            cfg = cfg.replace(stages=cfg.stages - 1)
    if cfg.epilogue == "tma" and "epilogue" not in given:
        try:
            validate(cfg, spec, target)
        except SpecError:
            return cfg.replace(epilogue="direct", epilogue_n=WgmmaConfig.epilogue_n)
    return cfg


def cooperative_default(spec: GemmSpec, target: Target) -> WgmmaConfig:
    """swap_config where `preferred_swap`; the measured tile of `preferred_tile` (128x256x64
    with two consumer warpgroups for large problems, 128x128 or 64x128 with one for mid
    sizes), 4 stages; otherwise 128x128x64 with one consumer (step 1 of issue 14), with
    smaller N tiles for narrow problems; tf32: tf32_config; fp8: fp8_config's cooperative
    tile."""
    if is_tf32(spec):
        return tf32_config(spec)
    if is_quantized(spec):
        return fp8_config(spec, target, cooperative=True)
    if preferred_swap(spec):
        return decode_default(spec, target)
    tile = preferred_tile(spec)
    if tile is not None:
        bm, bn, consumers = tile
        return WgmmaConfig(BM=bm, BN=bn, consumers=consumers, stages=4)
    step = 8 if spec.b_transposed else 64
    bn = 128 if spec.N >= 128 else max(step, -(-spec.N // step) * step)
    return WgmmaConfig(BN=bn)


def tf32_config(spec: GemmSpec) -> WgmmaConfig:
    """The default tf32 config (the default heuristic takes it where `preferred` says: NT with
    enough 128x256 tiles, measured): BK 32 (one swizzle span of f32), two consumer warpgroups on 128x256 where the problem has
    enough tiles of it for the SMs (the 16-bit rule), else 128 x min(128, N rounded to 8);
    4 stages (48 KiB each at 128x256: 192 KiB, within the 227 KiB of a block; also with a
    given BN of 256, which keeps the default's stages)."""
    bn = 256 if spec.M >= PREFERRED_MIN_M and _tiles(spec, 128, 256) >= _PREFERRED_TILES[0][3] \
        else min(128, max(8, -(-spec.N // 8) * 8))
    return WgmmaConfig(BM=128, BN=bn, BK=span_k(spec), consumers=2, stages=4)


# fp8 e4m3 NT, per-tensor scales, bf16 out, measured on the H200 2026-12-02 against
# torch._scaled_mm (results/fp8_bench-h200-2026-12-02*.json, 5 interleaved rounds): ping-pong
# 128x128 s7 1.035x at 4096^3 and 1.001x at 8192^3 (cooperative 128x256 s4 0.95x there);
# at K = 14336 (2048x4096x14336) the cooperative 128x256 s4 persistent 1.068x, non-persistent
# 1.057x, ping-pong 1.032x. With these defaults (run 2, 7 rounds): 4096^3 1.031x, 8192^3
# 1.019x, 2048x4096x14336 1.058x, 16x4096x4096 (swap_ab, split_k 1 with scales) 0.997x; run 3
# (-run3.json, 7 rounds): 1.020x, 1.019x, 1.068x, 0.992x; rowwise scales at 4096^3 0.876x
# (torch._scaled_mm's rowwise; the scale loads per element in the epilogue).
FP8_PINGPONG_MAX_K = 8192


def fp8_config(spec: GemmSpec, target: Target, cooperative: bool = False) -> WgmmaConfig:
    """The fp8 and int8 default (_fp8_config; int8: its BN rounded up to an N integer wgmma
    takes, int8_bn)."""
    if spec.scale == "block":
        return block_config(spec, target)
    cfg = _fp8_config(spec, target, cooperative)
    if is_int8(spec) and cfg.BN not in INT8_WGMMA_N:
        cfg = cfg.replace(BN=int8_bn(cfg.BN))
    return cfg


def block_config(spec: GemmSpec, target: Target) -> WgmmaConfig:
    """Block-scaled fp8: cooperative 128 x 128 with 2 consumers (64 rows each: 64 main + 2 x
    64 temporary accumulator registers per thread), 6 stages of 32 KiB, persistent, the
    registers split 24 (producer) / 240 (consumers) as FlashAttention-3's (at 40 / 232 ptxas
    spills 8 bytes at M = 256); 64 rows with one consumer, 8 stages, where M <= 64, its
    consumer at 240 (256 threads launch with 240 each). BN 64 where M <= BLOCK_NARROW_MAX_M:
    twice the CTAs for a row or two of tiles; above, persistent 2x1 clusters (B multicast to
    pairs of tile rows: BLOCK_CLUSTER_MIN_M), their last round split (tail_split, where it
    applies: BLOCK_TAIL_SPLIT), in 128 x 192 tiles with one temporary (BLOCK_WIDE) where
    those make a wave. scale_a staged in shared memory by the producer wherever M % 4 == 0
    (smem_scales). One row of 128-row tiles whose tiles fit one wave: a
    tile per CTA, 7 stages (BLOCK_ONE_WAVE_STAGES). 128-row tiles of fewer than
    BLOCK_PERSISTENT_MIN_K_TILES K tiles: a tile per CTA. The TMA epilogue where C takes it
    (BLOCK_TMA). Tiles that fill at most half the SMs: 2 K slices (split_k 2, summed in a
    cluster: BLOCK_SPLIT_MIN_K_TILES). On the wide tiles, consumer 1 staggered behind
    consumer 0 where the pairs' walk is at most BLOCK_STAGGER_MAX_ROUNDS rounds of tiles."""
    bn = 64 if spec.M <= BLOCK_NARROW_MAX_M else 128
    if spec.M <= 64:
        cfg = WgmmaConfig(BM=64, BN=bn, BK=span_k(spec), consumers=1, stages=8,
                          persistent=True, consumer_registers=240)
    else:
        cfg = WgmmaConfig(BM=128, BN=bn, BK=span_k(spec), consumers=2, stages=6,
                          persistent=True, producer_registers=24, consumer_registers=240,
                          cluster_m=2 if spec.M >= BLOCK_CLUSTER_MIN_M else 1)
        if k_tiles(cfg, spec) < BLOCK_PERSISTENT_MIN_K_TILES:
            cfg = cfg.replace(persistent=False)  # (ptxas spills in the persistent walk)
        elif (cfg.cluster_m == 2
              and _tiles(spec, cfg.BM, BLOCK_WIDE["BN"]) >= target.multiprocessors):
            cfg = cfg.replace(**BLOCK_WIDE)  # wider tiles (a wave of them), one temporary
        if spec.M <= 128 and spec.batch * -(-spec.N // bn) <= target.multiprocessors:
            # one wave of tiles: persistence only costs (the walk, a stage); one row of
            # tiles, so group_m changes nothing in the order (1: as measured)
            cfg = cfg.replace(stages=BLOCK_ONE_WAVE_STAGES, persistent=False, group_m=1)
    k_count = k_tiles(cfg, spec)
    if (cfg.cluster_m == 1 and 2 * _tiles(spec, cfg.BM, cfg.BN) <= target.multiprocessors
            and k_count % 2 == 0 and k_count >= BLOCK_SPLIT_MIN_K_TILES):
        # half the SMs idle: two K slices
        cfg = cfg.replace(split_k=2, reduce="cluster", persistent=False)
    few_rounds = _tiles(spec, cfg.BM, cfg.BN) <= BLOCK_STAGGER_MAX_ROUNDS * target.multiprocessors
    cfg = cfg.replace(ffma_yield=BLOCK_FFMA_YIELD,
                      stagger=cfg.walks_pairs and cfg.temporaries == 1 and few_rounds,
                      smem_scales=staged_scales_problem(cfg, spec) is None,
                      tail_split=BLOCK_TAIL_SPLIT and cfg.walks_pairs,
                      narrow_column=(BLOCK_NARROW_COLUMN and cfg.walks_pairs
                                     and k_count >= BLOCK_NARROW_MIN_K_TILES))
    return with_tma_epilogue(cfg, spec, BLOCK_TMA)


# Block scales with persistent 2x1 clusters: 128 x 192 tiles with one temporary accumulator
# (DeepGEMM's schedule: each consumer waits for its K tile's wgmma, promotes, then issues the
# next, the other consumer's wgmma running meanwhile; main + temporary = 192 registers), 5
# stages of 40 KiB, where they make a wave. Measured on the H200 2026-12-02 against the 128 x
# 128 default with two temporaries (results/fp8_block_bench-h200-2026-12-02-s9-wide.json, 7
# rotated rounds, every kernel checked against float64 with C poisoned), M = 4096, TFLOP/s:
# N x K = 7168 x 16384 1078 -> 1170, 24576 x 1536 907 -> 1020, 2112 x 7168 1041 -> 1111,
# 8192 x 7168 1077 -> 1143, 3072 x 7168 1100 -> 1152, 14336 x 4096 1054 -> 1120; 2048 x 7168
# x 7168 1111 -> 1111; 4096 x 4096 x 7168 1088 -> 1069 with the last column (64 of 192) walked
# as a strip, 1083 -> 1103 with the last round split instead (-s9-tail4096.json; pair_strip
# now takes the split where it ends sooner)
BLOCK_WIDE = {"BN": 192, "temporaries": 1, "issue_ahead": False, "stages": 5}
# Block scales: yield hints on the promotion FFMAs (WgmmaConfig.ffma_yield), off: measured on
# the H200 (results/fp8_block_bench-h200-2026-12-03-s11-ffma.json, 7 rotated rounds, each kernel
# checked against float64), M = 4096, default -> ffma_yield: 1097 -> 1102, 1030 -> 966, 1163 ->
# 1128, 1127 -> 1084 TFLOP/s at (N, K) = (2112, 7168), (24576, 1536), (7168, 16384), (4096, 7168)
BLOCK_FFMA_YIELD = False
# Block scales on the wide tiles (BLOCK_WIDE): consumer 1 staggered (WgmmaConfig.stagger) where
# the pairs' walk is at most 3 rounds of tiles. Measured on the H200 (results/fp8_block_bench-h200-
# 2026-12-03-s11-stagger.json, 9 rotated rounds, each kernel checked against float64),
# default -> stagger, TFLOP/s: at most 3 rounds 4096x2112x7168 1134 -> 1150, 2048x4096x7168
# 1075 -> 1085, 3072x2112x7168 1231 -> 1234, 4096x2112x1536 872 -> 888 (at 4096x2112x7168
# +0.1% to +3% in 12 earlier runs, 7 of them on these tiles, and -0.9% in the final run:
# -s11-final.json); more rounds 4096x24576x1536 1054 -> 995, 4096x4096x7168 1147 -> 1113,
# 2048x7168x16384 1143 -> 1113, 4096x7168x16384 1163 -> 1167, 8192x2112x7168 1158 -> 1154
BLOCK_STAGGER_MAX_ROUNDS = 3


# Block scales, one row of 128-row tiles in one wave (M = 128 at N = 2112, 7168, 4096:
# 33-112 tiles), measured on the H200 (results/fp8_block_bench-h200-2026-12-02-s6-m128.json,
# 5 interleaved rounds, each kernel checked against float64): non-persistent in 7 stages over
# the persistent 6-stage default 185 -> 197, 609 -> 647, 318 -> 344 TFLOP/s; at N = 24576
# (384 tiles) persistent stays ahead (413 vs 383)
BLOCK_ONE_WAVE_STAGES = 7


# Block scales at M <= 128 (DeepGEMM's M = 64 and 128 shapes), measured on the H200
# (results/fp8_block_bench-h200-2026-12-02-final.json, 5 interleaved rounds, each kernel
# checked against float64 with C poisoned): BN 64 over 128, M = 64: 66 -> 77, 203 -> 215,
# 221 -> 265, 121 -> 127 TFLOP/s ((N, K) = (2112, 7168), (24576, 1536), (7168, 16384),
# (4096, 7168)); M = 128: 117 -> 141, 348 -> 366, 417 -> 460, 214 -> 259
BLOCK_NARROW_MAX_M = 128
# Persistent 2x1 clusters from two rows of 128-row tiles (results/fp8_block_bench-h200-
# 2026-12-02-cpers.json, M = 4096, 5 interleaved rounds, each kernel checked against float64):
# 816 -> 876, 777 -> 827, 952 -> 978, 996 -> 964 TFLOP/s at (N, K) = (2112, 7168), (24576,
# 1536), (7168, 16384), (4096, 7168): geomean 880 -> 909 (each B tile crosses L2 once per
# pair of tile rows; the non-persistent clusters lost the cross-tile overlap, 582-974); with
# scale_a staged in shared memory (smem_scales, -s5.json): 862 -> 920, 784 -> 796, 954 ->
# 1009, 927 -> 1023 (one ld.shared per row instead of a global load per thread and K tile);
# at M = 64 and 128 too (-s5-final.json): 77 -> 104, 221 -> 237, 261 -> 353, 139 -> 195 and
# 146 -> 166, 368 -> 376, 504 -> 608, 260 -> 313 TFLOP/s over DeepGEMM's (N, K)
BLOCK_CLUSTER_MIN_M = 129
# tail_split, measured on the H200 2026-12-02 (each kernel checked against float64): 4096 x
# 2112 x 7168 (4 rounds of 66 pairs and 8 left) 983 -> 1029 TFLOP/s (results/fp8_block_bench-
# h200-2026-12-02-s7-final.json, tail_off against the default, 5 interleaved rounds; in an
# experiment outside benchmarks/, not committed: 938 -> 1026, and 1000 x 2112 x 1536, 1 round
# and 2 left, 363 -> 378)
BLOCK_TAIL_SPLIT = True
# narrow_column, measured on the H200 2026-12-02 (each kernel checked against float64 with C
# poisoned): 4096 x 2112 x 7168 (16 full columns: 256 pairs, 3 rounds and 58 left; the 16
# strip pairs to the 8 clusters a pair short: 4 rounds, where tail_split's halves made 4.5)
# 1046 -> 1086 TFLOP/s (results/fp8_block_bench-h200-2026-12-02-s8.json, narrow_off against
# the default, 5 interleaved rounds); in an experiment outside benchmarks/ (results/
# fp8_block_narrow_experiment-h200-2026-12-02-s8.json, 9 rounds, the order rotated) 1029 ->
# 1065, and 4096 x 2112 x 1536 772 -> 854
BLOCK_NARROW_COLUMN = True
# from 5 K tiles a tile: at 4 (4096 x 2112 x 512) ptxas spills 8 bytes with the strip's code
BLOCK_NARROW_MIN_K_TILES = 5
# Tiles that fill at most half the SMs: two K slices of a tile summed in a 2-CTA cluster
# (split_k 2, reduce "cluster"), measured on the H200 2026-12-02 against one slice (results/
# fp8_block_bench-h200-2026-12-02-s7.json, 5 interleaved rounds, every kernel checked against
# float64): M = 64, (N, K) = (2112, 7168) 122 -> 138 TFLOP/s, (4096, 7168) 199 -> 210; M = 128:
# 200 -> 254, 340 -> 396. In an experiment outside benchmarks/ (not committed) four or eight
# slices ran slower than two (115, 103; 195, 168 at 64 and 128 x 2112 x 7168), and so did two
# where the tiles alone fill the SMs (64 x 7168 x 16384: 112 tiles, 344 -> 312). Measured
# from K = 7168 (56 K tiles)
BLOCK_SPLIT_MIN_K_TILES = 16
# Two or three K tiles a tile (K <= 384): ptxas spills 4-16 bytes in the persistent walk of
# 128-row tiles (with either epilogue at three; with the TMA one at two), not in one tile per
# CTA, so those take a tile per CTA
BLOCK_PERSISTENT_MIN_K_TILES = 4
# The TMA epilogue for block scales (with_tma_epilogue: 16-bit C whose row pitch TMA takes),
# 32-column sub-tiles, measured on the H200 2026-12-02 against the direct epilogue (results/
# fp8_block_bench-h200-2026-12-02-s7-tma.json, 5 interleaved rounds, every kernel checked
# against float64): M = 4096, 910 -> 937, 771 -> 939, 1035 -> 1037, 1017 -> 1082 TFLOP/s at
# (N, K) = (2112, 7168), (24576, 1536), (7168, 16384), (4096, 7168): the stores leave the
# consumers at once, so the next tile's K loop runs under them (most at K = 1536: 12 K tiles
# a tile); M = 128: 196 -> 201, 376 -> 450, 653 -> 656, 341 -> 349; M = 64: 114 -> 108, 238 ->
# 249, 346 -> 346, 194 -> 195. 64-column sub-tiles in 5 stages ran 948, 940, 1055, 1067, but
# ptxas spills 4-8 bytes with them at K = 512 (M = N = 256)
BLOCK_TMA = {"epilogue": "tma", "epilogue_n": 32}


def _fp8_config(spec: GemmSpec, target: Target, cooperative: bool = False) -> WgmmaConfig:
    """The fp8 default: the 16-bit rules at the same bytes per stage (a 128-byte span of K:
    BK = 128 fp8 against 64 bf16, so the stage sizes, stage counts and tiles carry over):
    swap_config at decode sizes (preferred_swap; split_k 1 with scales), where the large
    tile rule applies ping-pong 128 x 128 in 7 stages up to K = FP8_PINGPONG_MAX_K (not with
    `cooperative`) and the cooperative 128 x 256 (persistent beyond that K), the measured
    tile of preferred_tile in 4 stages, else 128 x min(128, N rounded to 8)."""
    bk = span_k(spec)
    if preferred_swap(spec):  # split-K: not with scales (validate)
        cfg = swap_config(spec, target)
        return cfg if spec.scale == "none" else cfg.replace(split_k=1)
    tile = preferred_tile(spec)
    if tile == _PREFERRED_TILES[0][:3]:
        if spec.K <= FP8_PINGPONG_MAX_K and not cooperative:
            return WgmmaConfig(**PINGPONG, BK=bk)
        return WgmmaConfig(BM=128, BN=256, BK=bk, consumers=2, stages=4,
                           persistent=spec.K > FP8_PINGPONG_MAX_K)
    if tile is not None:
        bm, bn, consumers = tile
        return WgmmaConfig(BM=bm, BN=bn, BK=bk, consumers=consumers, stages=4)
    return WgmmaConfig(BN=min(128, max(8, -(-spec.N // 8) * 8)), BK=bk)


# swap_ab rings: stages of one BM x BK tile of B and one BN x BK tile of A, as many as fit in
# this many bytes (a decode GEMM streams B: the bytes in flight per SM are what it runs on)
SWAP_RING_BYTES = 160 * 1024
SWAP_MAX_STAGES = 8  # and at most this many (the deep ring below: DECODE_RING_BYTES)


def swap_config(spec: GemmSpec, target: Target, bm: int = 128,
                ctas_per_sm: int = 1) -> WgmmaConfig:
    """swap_ab for a small M: BM rows of N per tile (one consumer), BN = M rounded up to the
    wgmma N step (8; 64 where A, wgmma's B operand, is MN-major; at most 128), the deepest ring within
    SWAP_RING_BYTES (or the CTA's share of the SM's shared memory with ctas_per_sm 2, its
    consumers then at 216 registers), split_k fitted to the SMs (fit_split_k)."""
    step = 8 if not spec.a_transposed else SWIZZLE // DTYPE_BYTES[spec.dtype]
    # at most 128 columns: two 64-row slabs of n128 are 128 accumulator registers per thread
    bn = min(128, max(step, -(-spec.M // step) * step))
    cfg = WgmmaConfig(BM=bm, BN=bn, BK=span_k(spec), consumers=1, swap_ab=True,
                      ctas_per_sm=ctas_per_sm)
    if ctas_per_sm > 1:
        cfg = cfg.replace(consumer_registers=216)
    budget = min(SWAP_RING_BYTES, SM_SHARED // ctas_per_sm - CTA_RESERVED_SHARED
                 - 2 * MAX_STAGES * BARRIER_BYTES)
    cfg = cfg.replace(stages=max(2, min(SWAP_MAX_STAGES, budget // sum(tile_bytes(cfg, spec)))))
    return fit_split_k(cfg, spec, target)


# swap_ab's split-K summed in 2-CTA clusters (reduce "cluster"), measured on the H200
# 2026-12-02 (benchmarks/results/decode_explore-h200-2026-12-02.json, bf16 NT, M = 8..128,
# 5 interleaved rounds, cold weights): split 2 in clusters beats split 2 through the workspace
# and its reduce launch (N = 6144, 8192 with K = 4096..28672: 0.94-1.05x cuBLAS -> 0.97-1.07x
# at M <= 32, 0.79-0.96x -> 0.83-1.01x at M = 64, 128); clusters of 4 or 8 CTAs run a
# second wave on the H200 (0.5-0.9x); where 128-row tiles took split 4 (N = 4096), 64-row
# tiles in clusters of 2 fill the SMs instead (M <= 32: 1.03-1.12x -> 1.05-1.22x; M = 64, 128
# with K = 4096: 0.86x -> 0.91-0.92x), except at M >= 64 with K > 8192 (1.00-1.06x -> 0.94-1.04x).
SWAP_CLUSTER_SPLIT = 2
SWAP_BM64_MAX_K = 8192  # the 64-row tiles without a split (below) up to this K
# Decode rules past those (results/decode_suite-h200-2026-12-02-cand.json and -cand-b.json:
# bf16 M = 8..128, NT and NN, candidates timed beside the default and cuBLAS, 5 interleaved
# rounds; the ratios below are that run's, default -> rule):
# - a ring as deep as the block's shared memory holds (DECODE_RING_BYTES, up to MAX_STAGES)
#   where a CTA streams one narrow tile: 64-row swap_ab tiles of a few KiB a stage ran
#   best at 13-16 stages, where 8 left them short of the bandwidth;
# - M <= 32 where 64-row tiles alone make 100..132 CTAs (N = 8192) and K <= 8192: those, no
#   split (8192 x 8192: 0.97-0.98x -> 1.00-1.01x; NN 1.00x -> 1.01x);
# - 32 < M <= 128, layout NT, K <= 8192, N up to NARROW_MAX_BN x SMs: the narrow
#   non-swapped tile (narrow_config): 64 rows (M <= 64) or 128 with 2 consumers, N / SMs
#   columns rounded up to 16 (one wave, no split): M = 64: 0.92-1.00x -> 0.98-1.05x
#   (N = 4096..28672), M = 128: 0.78-0.98x -> 0.92-1.01x;
# - the same sizes in layout NN (B MN-major: BN multiples of 64, no narrow tile) where
#   64-row swap_ab tiles make one wave (N <= 8448): those, no split (M = 64: 0.92-0.96x ->
#   0.95-1.03x, M = 128: 0.81-0.92x -> 0.95-1.04x);
# - 32 < M <= 128 where the 128-row swap_ab tiles would split K more than twice (N = 4096,
#   K = 14336): 64-row tiles split 2 in clusters with the deep ring (NT 1.05x / 1.00x ->
#   1.11x / 1.04x at M = 64 / 128, NN 1.05x / 0.99x -> 1.11x / 1.03x).
# Then measured beside the full suite (results/decode_suite-h200-2026-12-02-x.json, bf16 NT,
# 5 interleaved rounds, every kernel checked against float64; not yet in a full-suite run):
# - M > 64 where the narrow tile is at least NARROW_MC_MIN_BN columns: 64-row tiles of
#   2 x BN in 2x1 clusters (each CTA loads half of B's tile and multicasts it to both, so B
#   crosses L2 once per tile, A's rows are split): 128 x 6144 / 8192 / 10240 x K 0.93x /
#   0.91x / 0.97x -> 0.95x / 0.95x / 1.03x;
# - M <= 32 where 128-row swap_ab tiles make between one and two waves (N = 28672: 224
#   tiles): two CTAs per SM (all resident at once, the ring in half the shared memory),
#   1.02-1.06x -> 1.08-1.09x (NT; NN not measured).
DECODE_RING_BYTES = 224 * 1024
NARROW_M = (33, 128)
NARROW_MAX_K = 8192
NARROW_MAX_BN = 224  # 2 slabs x 112 accumulator registers per consumer (M <= 64: 1 slab)
NARROW_LAYOUTS = ("NT",)  # B K-major: BN in steps of 8 (NN: 64)
NARROW_MC_MIN_BN = 48
SWAP_TWO_CTA_LAYOUTS = ("NT",)  # measured
SWAP_ONE_WAVE_MIN_TILES = 100


def deep_ring(cfg: WgmmaConfig, spec: GemmSpec) -> WgmmaConfig:
    """`cfg` with as many stages as DECODE_RING_BYTES hold (at most MAX_STAGES)."""
    return cfg.replace(stages=max(2, min(MAX_STAGES,
                                         DECODE_RING_BYTES // sum(tile_bytes(cfg, spec)))))


def narrow_config(spec: GemmSpec, target: Target) -> WgmmaConfig | None:
    """The narrow non-swapped decode tile where its rule applies (see above), else None:
    BM 64 with one consumer (M <= 64) or 128 with two, BN = N / SMs rounded up to 16, the deep
    ring, no split; M > 64 with BN >= NARROW_MC_MIN_BN: 64-row tiles of 2 x BN in 2x1
    clusters multicasting B."""
    if not (NARROW_M[0] <= spec.M <= NARROW_M[1] and spec.layout in NARROW_LAYOUTS
            and spec.K <= NARROW_MAX_K and spec.batch == 1):
        return None
    bn = -(-spec.N // target.multiprocessors // 16) * 16
    if bn > NARROW_MAX_BN:
        return None
    if spec.M > 64 and NARROW_MC_MIN_BN <= bn and 2 * bn <= MAX_WGMMA_N:
        return deep_ring(WgmmaConfig(BM=64, BN=2 * bn, BK=span_k(spec), cluster_m=2), spec)
    bm = 64 if spec.M <= 64 else 128
    return deep_ring(WgmmaConfig(BM=bm, BN=bn, BK=span_k(spec), consumers=bm // WGMMA_M), spec)


def decode_default(spec: GemmSpec, target: Target) -> WgmmaConfig:
    """The default where `preferred_swap`: the narrow non-swapped tile (narrow_config) where
    it applies, else swap_default."""
    return narrow_config(spec, target) or swap_default(spec, target)


def swap_default(spec: GemmSpec, target: Target) -> WgmmaConfig:
    """The default swap_ab config: swap_config (128 rows of N per tile, split_k to one wave);
    at M <= 32 with one to two waves of those tiles, two CTAs per SM; with K <= SWAP_BM64_MAX_K, 64-row tiles without a split, the deep ring, where they alone
    make one wave of at least SWAP_ONE_WAVE_MIN_TILES (M <= 32) or any wave (M > 32); a
    split of 2 summed within 2-CTA clusters; a larger split replaced by 64-row tiles split in
    2 in clusters (M > 32: with the deep ring), as measured (SWAP_CLUSTER_SPLIT, above)."""
    cfg = swap_config(spec, target)
    tiles = -(-spec.N // cfg.BM) * spec.batch
    if (spec.M <= 32 and spec.layout in SWAP_TWO_CTA_LAYOUTS
            and target.multiprocessors < tiles <= 2 * target.multiprocessors):
        return swap_config(spec, target, ctas_per_sm=2)  # one wave of two CTAs per SM
    if spec.K <= SWAP_BM64_MAX_K:
        tiles = -(-spec.N // 64) * spec.batch
        least = SWAP_ONE_WAVE_MIN_TILES if spec.M <= 32 else 1
        if least <= tiles <= target.multiprocessors:
            return deep_ring(cfg.replace(BM=64, split_k=1), spec)
    if cfg.split_k == 1:
        return cfg
    if cfg.split_k <= SWAP_CLUSTER_SPLIT:
        return cfg.replace(reduce="cluster")
    rows = fit_split_k(cfg.replace(BM=64, reduce="cluster"), spec, target,
                       max_split=SWAP_CLUSTER_SPLIT)
    return rows if spec.M <= 32 else deep_ring(rows, spec)


def fit_split_k(cfg: WgmmaConfig, spec: GemmSpec, target: Target,
                min_slice_tiles: int = 4, max_split: int | None = None) -> WgmmaConfig:
    """The largest split_k (at most `max_split`) that keeps the grid within one wave (tiles x
    split_k <= SMs x ctas_per_sm), slices of at least `min_slice_tiles` K tiles and no empty
    last slice."""
    ops = operands(cfg, spec)
    tiles = -(-ops.rows // cfg.BM) * -(-ops.cols // cfg.BN) * spec.batch
    total = k_tiles(cfg, spec)
    wave = target.multiprocessors * cfg.ctas_per_sm
    split = max(1, min(wave // tiles, total // min_slice_tiles, max_split or total))
    while split > 1 and (split - 1) * -(-total // split) >= total:
        split -= 1
    return cfg.replace(split_k=split)
