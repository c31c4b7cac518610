"""Block-scaled fp8 GPU correctness cases (tests/gpu/test_fp8_block_gpu.py; make_bundle.py
compiles them into DIR/fp8_block/<name>): GemmSpec.scale "block" (1 x 128 scales of A along
K, 128 x 128 of B), e4m3 and e5m2, layout NT: the default (cooperative 128 x 128, 2
consumers, persistent) on DeepGEMM shapes (a partial last block of N at N = 2112), the M <= 64
default (64 x 128, 1 consumer), partial tiles with K not a multiple of 128 (the last scale
block partly zero-filled), BN 64 (two tiles per block of B), bias + relu f32 out, alpha and
beta with C read, non-persistent, 1 and 2 K tiles (the promotion pipeline's short forms),
BN 136 (tiles across two blocks of B's scales), stagger (the second consumer a K tile behind), a
2x1 cluster, two CTAs per SM; the opt-in smem_scales (scale_a staged in shared memory by the
producer's TMA; M a multiple of 4: a partial last tile row and K block, the 64-row M <= 64
tile) and persistent 2x1 clusters (the default above M = 128: a cluster walking pairs of tile
rows, several pairs each; an odd count of tile rows: the spare CTA past M; its last round
split in halves of K, tail_split; its last, narrow tile column walked by the clusters a pair
short, narrow_column), and both together.

Each case: (name, spec fields, wgmma config fields given, alpha, beta)."""
from __future__ import annotations


def _epi(bias=None, activation=None, alpha_beta=True) -> dict:
    from deepgen.epilogue import EpilogueSpec
    return EpilogueSpec.of(bias=bias, activation=activation, alpha_beta=alpha_beta).to_dict()


def cases() -> list:
    b = dict(dtype="e4m3", out_dtype="bf16", layout="NT", scale="block")
    plain = dict(b, epilogue=_epi(alpha_beta=False))  # the chain without alpha_beta
    # 128 x 128 tiles with two temporaries (the default before BLOCK_WIDE; still where 128 x
    # 192 tiles make less than a wave): the walks built on them, pinned
    t128 = {"BN": 128, "temporaries": 2, "issue_ahead": True, "stages": 6}
    w256 = {"BN": 256, "temporaries": 1, "temp_parts": 2, "stages": 4}
    return [
        ("block-4096x2112x7168", dict(b, M=4096, N=2112, K=7168), {}, 1.0, 0.0),
        ("block-128x24576x1536", dict(b, M=128, N=24576, K=1536), {}, 1.0, 0.0),
        ("block-64x4096x7168", dict(b, M=64, N=4096, K=7168), {}, 1.0, 0.0),
        # one row of 128-row tiles in one wave: the default is non-persistent, 7 stages (M
        # partial: 100 of 128 rows; staged scale_a)
        ("block-100x2112x1040-one-wave", dict(b, M=100, N=2112, K=1040), {}, 1.0, 0.0),
        ("block-4096x7168x16384", dict(b, M=4096, N=7168, K=16384), {}, 1.0, 0.0),
        ("block-1000x1000x4000-bn64-bias-relu-f32",
         dict(b, M=1000, N=1000, K=4000, out_dtype="f32", epilogue=_epi("col", "relu")),
         {"BN": 64, "persistent": False}, 1.0, 0.0),
        ("block-e5m2-f16-alpha-beta", dict(b, M=300, N=392, K=1040, dtype="e5m2",
                                           out_dtype="f16"), {"persistent": False}, 2.0, 0.5),
        # the promotion's pipeline: 2 K tiles (no loop, the last tile), 1 (prologue alone)
        ("block-two-k-tiles", dict(b, M=256, N=256, K=208), {}, 1.0, 0.0),
        ("block-one-k-tile", dict(b, M=200, N=256, K=96), {}, 1.0, 0.0),
        # a 2x1 cluster (B multicast): 3 tile rows, the pair's second CTA of the last past M
        ("block-320x384x1040-cluster2", dict(b, M=320, N=384, K=1040),
         {"cluster_m": 2, "persistent": False}, 1.0, 0.0),
        # two CTAs per SM of 64 x 128 (one consumer each), persistent, partial last tiles
        ("block-1000x2112x7168-bm64-2ctas", dict(b, M=1000, N=2112, K=7168),
         {"BM": 64, "consumers": 1, "ctas_per_sm": 2, "stages": 4, "producer_registers": 24,
          "consumer_registers": 232}, 1.0, 0.0),
        # smem_scales: scale_a by TMA into each stage (M % 4 == 0), read from shared memory
        ("block-1000x2112x7168-smem-scales", dict(b, M=1000, N=2112, K=7168),
         {"smem_scales": True}, 1.0, 0.0),
        ("block-60x4096x1040-smem-scales", dict(b, M=60, N=4096, K=1040),
         {"smem_scales": True}, 1.0, 0.0),
        ("block-300x392x1040-smem-scales-alpha-beta", dict(b, M=300, N=392, K=1040,
                                                           out_dtype="f16"),
         {"smem_scales": True, "persistent": False}, 2.0, 0.5),
        # tiles across two blocks of B's scales (BN 136: a per-8-column choice of
        # scale_b), scale_a from global memory (staged, it gave wrong rows when persistent:
        # rejected), non-persistent (persistent, ptxas spills here); alpha, beta
        ("block-1000x2112x1040-bn136", dict(b, M=1000, N=2112, K=1040),
         {"BN": 136, "cluster_m": 1, "persistent": False}, 1.0, 0.0),
        ("block-301x392x1040-bn136-alpha-beta", dict(b, M=301, N=392, K=1040, out_dtype="f16"),
         {"BN": 136, "cluster_m": 1, "persistent": False}, 2.0, 0.5),
        # stagger: consumer 1 a K tile behind consumer 0 (the default's clusters and staged
        # scales; odd M: scale_a from global memory; non-persistent, BN 136)
        ("block-4096x2112x7168-stagger", dict(b, M=4096, N=2112, K=7168), {"stagger": True},
         1.0, 0.0),
        ("block-1101x392x1040-stagger", dict(b, M=1101, N=392, K=1040), {"stagger": True},
         1.0, 0.0),
        ("block-300x392x1040-stagger-bn136", dict(b, M=300, N=392, K=1040),
         {"stagger": True, "BN": 136, "cluster_m": 1, "persistent": False}, 2.0, 0.5),
        # persistent 2x1 clusters: 16 pairs of tile rows x 17 columns over 66 clusters
        ("block-4096x2112x7168-cluster2-pers", dict(b, M=4096, N=2112, K=7168),
         {**t128, "cluster_m": 2}, 1.0, 0.0),
        # 9 tile rows (the last pair's second CTA past M), 4 columns, 9 K tiles, odd M
        ("block-1101x392x1040-cluster2-pers", dict(b, M=1101, N=392, K=1040),
         {"cluster_m": 2}, 1.0, 0.0),
        # both: partial tiles, several pairs per cluster; two K tiles
        ("block-4000x2112x1536-cluster2-pers-smem", dict(b, M=4000, N=2112, K=1536),
         {"cluster_m": 2, "smem_scales": True}, 1.0, 0.0),
        # tail_split: the last round's tiles (4096 x 2112: 8 pairs of 66 clusters; 1000 x 2112
        # x 1536: 2 pairs, partial tile rows) on two halves of K, summed through DSMEM
        ("block-4096x2112x7168-tail-split", dict(b, M=4096, N=2112, K=7168),
         {**t128, "tail_split": True, "narrow_column": False}, 1.0, 0.0),
        ("block-1000x2112x1536-tail-split-alpha-beta", dict(b, M=1000, N=2112, K=1536,
                                                             out_dtype="f16"),
         {"tail_split": True}, 2.0, 0.5),
        # narrow_column (the default at 4096 x 2112 above): the last tile column's pairs,
        # 64 wide, two each for the clusters a pair short (4000: partial last tile rows;
        # 2560 x 2080: 10 strip pairs for 38 clusters a pair short, a 32-column strip, 9 K
        # tiles)
        ("block-4000x2112x1536-narrow-alpha-beta", dict(b, M=4000, N=2112, K=1536,
                                                         out_dtype="f16"),
         {**t128, "narrow_column": True}, 2.0, 0.5),
        ("block-2560x2080x1152-narrow", dict(b, M=2560, N=2080, K=1152),
         {**t128, "narrow_column": True}, 1.0, 0.0),
        # f32 C: the direct epilogue's stores of the narrow tiles
        ("block-4096x2112x1536-narrow-f32", dict(b, M=4096, N=2112, K=1536, out_dtype="f32"),
         t128, 1.0, 0.0),
        # the wide tiles (BLOCK_WIDE, BN 192 with one temporary: the default at 4096 x 2112
        # above and here): f32 C through the direct epilogue; partial tile rows, 9 K tiles
        # (the last partial), alpha and beta; a strip 96 wide (N = 3904: 20 full columns,
        # 320 pairs over 66 clusters, 10 a pair short take the last column's 16 pairs)
        ("block-4096x2112x1536-wide-f32", dict(b, M=4096, N=2112, K=1536, out_dtype="f32"),
         {}, 1.0, 0.0),
        ("block-2000x7168x1040-wide-alpha-beta", dict(b, M=2000, N=7168, K=1040,
                                                       out_dtype="f16"), {}, 2.0, 0.5),
        ("block-4096x3904x1536-wide-strip", dict(b, M=4096, N=3904, K=1536),
         {"BN": 192, "temporaries": 1, "stages": 5}, 1.0, 0.0),
        # 128 x 256 tiles, the temporary in two 128-column parts (temp_parts 2): persistent
        # pairs with partial tile rows and columns (N = 2000: the last column 208 wide, its
        # second part across the last, partial block of B's scales), 9 K tiles (the last
        # partial), alpha and beta; the narrow strip (BN 128 in 64-column parts) and the
        # last round split in halves of K; and non-persistent with scale_a from global memory
        ("block-4000x2000x1040-wide256-alpha-beta", dict(b, M=4000, N=2000, K=1040,
                                                          out_dtype="f16"),
         {**w256}, 2.0, 0.5),
        ("block-4096x2112x1536-wide256-strip", dict(b, M=4096, N=2112, K=1536),
         {**w256, "narrow_column": True}, 1.0, 0.0),
        ("block-1000x4096x7168-wide256-tail-split", dict(b, M=1000, N=4096, K=7168),
         {**w256, "tail_split": True, "narrow_column": False}, 1.0, 0.0),
        ("block-301x520x1040-wide256-global-scales", dict(b, M=301, N=520, K=1040),
         {**w256, "persistent": False, "cluster_m": 1, "smem_scales": False}, 1.0, 0.0),
        # prefetch_scales: each tile's scale_b rows into L1 at its start (NOT YET RUN on a
        # GPU when added, session 12): the M = 64 default (split-K through the cluster), the
        # persistent wide default (strip, stagger), tiles across two blocks of B's scales
        # with scale_a from global memory, and the last round split in halves of K
        ("block-64x2112x7168-prefetch", dict(b, M=64, N=2112, K=7168),
         {"prefetch_scales": True}, 1.0, 0.0),
        ("block-4096x2112x7168-prefetch", dict(b, M=4096, N=2112, K=7168),
         {"prefetch_scales": True}, 1.0, 0.0),
        ("block-301x392x1040-bn136-prefetch-alpha-beta", dict(b, M=301, N=392, K=1040,
                                                              out_dtype="f16"),
         {"BN": 136, "cluster_m": 1, "persistent": False, "prefetch_scales": True}, 2.0, 0.5),
        ("block-1000x2112x1536-tail-split-prefetch", dict(b, M=1000, N=2112, K=1536),
         {"tail_split": True, "prefetch_scales": True}, 1.0, 0.0),
        # the wide default with consumer 1 staggered (at most 3 rounds: BLOCK_STAGGER_MAX_
        # ROUNDS): 8 pairs of tile rows x 22 columns (the last 64 wide) over 66 clusters,
        # partial tile rows, alpha and beta
        ("block-2000x4096x1536-wide-stagger-alpha-beta", dict(b, M=2000, N=4096, K=1536,
                                                               out_dtype="f16"), {}, 2.0, 0.5),
        # split_k: K slices summed in a cluster (the default where the tiles fill at most
        # half the SMs: block-64x4096x7168 above); 3 slices, odd M, alpha and beta
        ("block-100x2112x1152-split3-alpha-beta", dict(b, M=100, N=2112, K=1152,
                                                        out_dtype="f16"),
         {"split_k": 3, "reduce": "cluster", "persistent": False}, 2.0, 0.5),
        # (persistent given: the default walks a tile per CTA below 4 K tiles; the direct
        # epilogue: with the TMA one ptxas spills 4 bytes here)
        ("block-1100x392x208-cluster2-pers-smem", dict(b, M=1100, N=392, K=208),
         {"cluster_m": 2, "smem_scales": True, "persistent": True, "epilogue": "direct"},
         1.0, 0.0),
        # the chain without alpha_beta (what deepgen.gemm compiles for a block call with
        # alpha 1, beta 0, session 13): the wide persistent default (strip, TMA epilogue),
        # K = 1536, the one-wave partial default, f32 C through the direct epilogue, the
        # M = 64 split-K default (the cluster reduce's store)
        ("block-4096x2112x7168-plain", dict(plain, M=4096, N=2112, K=7168), {}, 1.0, 0.0),
        ("block-4096x24576x1536-plain", dict(plain, M=4096, N=24576, K=1536), {}, 1.0, 0.0),
        ("block-100x2112x1040-one-wave-plain", dict(plain, M=100, N=2112, K=1040), {}, 1.0,
         0.0),
        ("block-1000x1000x4000-f32-plain", dict(plain, M=1000, N=1000, K=4000,
                                                out_dtype="f32"), {}, 1.0, 0.0),
        ("block-64x4096x7168-plain", dict(plain, M=64, N=4096, K=7168), {}, 1.0, 0.0),
    ]


def compile_case(spec_fields: dict, given: dict, target: str = "sm_90a"):
    from deepgen.compiler import compile_artifact
    from deepgen.spec import GemmSpec

    return compile_artifact(GemmSpec(**spec_fields), {"strategy": "wgmma", **given}, target,
                            keep_ir=False)
