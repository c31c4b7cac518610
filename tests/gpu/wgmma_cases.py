"""The wgmma strategy's GPU correctness cases (tests/gpu/test_wgmma_gpu.py; make_bundle.py
compiles them into DIR/wgmma/<name>): NT, NN, TN and TT, f16 and bf16, one and two consumer
warpgroups (128x128, 128x256, 256x128), whole and partial tiles (TMA zero fill, guarded
stores), odd N, K below one tile, batch, alpha/beta with C read, bias and activations, f32
output, 2 to 6 stages, persistent grids (one and two CTAs per SM), 2x1 clusters with multicast,
split-K (uneven slices, batch, odd N, the epilogue chain in the shared reduce or summed
within a cluster of the slices' CTAs), swap_ab (small
M as wgmma's N, with and without split-K, bias of either kind, TT through B MN-major), wgmma's A
operand MN-major (layouts TN and TT, NN and TN swapped: its transpose bit), tf32 (f32 inputs
with allow_tf32, layout NT: tf32_cases),
ping-pong (two warpgroups on their own tiles, taking turns: odd and even tile counts per CTA,
a CTA whose second warpgroup has no tile), the TMA epilogue (tma_store_cases).

Each case: (name, spec fields, wgmma config fields given (the rest completed by the
strategy), alpha, beta)."""
from __future__ import annotations

C2_WIDE = {"BN": 256, "consumers": 2}
C2_TALL = {"BM": 256, "consumers": 2}
# 128x128 with one consumer, spelled out: the default tile moves with the shape (preferred_tile)
C1 = {"BM": 128, "BN": 128, "consumers": 1}
PP = {"mode": "pingpong", "consumers": 2, "persistent": True}


def _epi(bias=None, activation=None) -> dict:
    from deepgen.epilogue import EpilogueSpec
    return EpilogueSpec.of(bias=bias, activation=activation).to_dict()


def cases() -> list:
    out = []
    for dtype in ("f16", "bf16"):
        for layout in ("NT", "NN", "TN", "TT"):
            for tag, given in (("128x128", C1), ("128x256c2", C2_WIDE), ("256x128c2", C2_TALL)):
                out.append((f"wgmma-{dtype}-{layout}-{tag}-512",
                            dict(M=512, N=512, K=512, dtype=dtype, layout=layout), given,
                            1.0, 0.0))
            out.append((f"wgmma-{dtype}-{layout}-partial",
                        dict(M=1000, N=520, K=1000, dtype=dtype, layout=layout), {}, 1.0, 0.0))
    nt = dict(dtype="bf16", layout="NT")
    out += [
        ("wgmma-NT-odd-n", dict(nt, M=127, N=129, K=40), {}, 1.0, 0.0),
        ("wgmma-NT-k8", dict(nt, M=64, N=64, K=8), {"BN": 64}, 1.0, 0.0),
        ("wgmma-NT-n8", dict(nt, M=300, N=8, K=200), {"BN": 8}, 1.0, 0.0),
        ("wgmma-NT-batch3-f16", dict(M=200, N=136, K=520, batch=3, dtype="f16", layout="NT"),
         {}, 1.0, 0.0),
        ("wgmma-NN-batch2-c2-beta", dict(M=256, N=512, K=192, batch=2, dtype="f16",
                                         layout="NN"), C2_WIDE, 2.0, 1.0),
        ("wgmma-NT-alpha-beta", dict(nt, M=384, N=256, K=256), {}, 1.5, -0.5),
        ("wgmma-NT-biascol-gelu-c2", dict(nt, M=300, N=520, K=200,
                                          epilogue=_epi("col", "gelu_tanh")), C2_WIDE, 1.0, 0.0),
        ("wgmma-NN-biasrow-silu", dict(M=130, N=192, K=96, dtype="f16", layout="NN",
                                       epilogue=_epi("row", "silu")), {}, 1.0, 0.5),
        ("wgmma-NT-f32out-c2", dict(nt, M=512, N=384, K=1024, out_dtype="f32"), C2_TALL,
         1.0, 0.0),
        ("wgmma-NT-stages2", dict(nt, M=256, N=256, K=1024), {"stages": 2}, 1.0, 0.0),
        ("wgmma-NT-stages6-noreg", dict(nt, M=256, N=256, K=2048),
         {"stages": 6, "warp_specialized": False}, 1.0, 0.0),
        ("wgmma-NT-group1", dict(nt, M=1024, N=1024, K=256), {"group_m": 1, **C1}, 1.0, 0.0),
        # 2x1 clusters: B multicast from both CTAs of a pair (odd tile rows: a spare CTA)
        ("wgmma-NT-cluster2-partial", dict(nt, M=1000, N=520, K=1000),
         {"cluster_m": 2, **C2_WIDE}, 1.0, 0.0),
        ("wgmma-NN-cluster2-odd-rows-batch2", dict(M=600, N=384, K=256, batch=2, dtype="f16",
                                                   layout="NN"), {"cluster_m": 2}, 1.0, 0.5),
        ("wgmma-NT-cluster2-tall", dict(nt, M=768, N=264, K=512), {"cluster_m": 2, **C2_TALL},
         1.0, 0.0),
        # persistent: more tiles than CTAs, so each CTA walks several (ring state carried)
        ("wgmma-NT-persistent-batch2", dict(nt, M=2000, N=1000, K=200, batch=2),
         {"persistent": True, **C1}, 1.0, 0.0),
        ("wgmma-NN-persistent-c2-beta", dict(M=2048, N=2048, K=320, dtype="f16", layout="NN"),
         {"persistent": True, **C2_WIDE}, 0.5, 2.0),
        ("wgmma-NT-persistent-2cta", dict(nt, M=4096, N=2048, K=128),
         {"persistent": True, "ctas_per_sm": 2, "stages": 3, "consumer_registers": 216, **C1},
         1.0, 0.0),
        # split-K: partials to W, deepgen-split-k's reduce applies alpha/beta/C and the chain
        ("wgmma-NT-splitk4", dict(nt, M=128, N=1024, K=1024), {"split_k": 4, **C1}, 1.0, 0.0),
        ("wgmma-NN-splitk3-batch2-biasrow-silu",
         dict(M=130, N=192, K=1000, batch=2, dtype="f16", layout="NN",
              epilogue=_epi("row", "silu")), {"split_k": 3, "BN": 64}, 1.5, 0.5),
        ("wgmma-NT-splitk6-odd-n", dict(nt, M=127, N=129, K=1000), {"split_k": 6}, 1.0, -1.0),
        ("wgmma-NT-splitk2-c2-biascol-gelu-f32out",
         dict(nt, M=256, N=512, K=2048, out_dtype="f32", epilogue=_epi("col", "gelu_tanh")),
         {"split_k": 2, **C2_WIDE}, 1.0, 0.0),
        # split-K summed in a cluster of the slices' CTAs (reduce "cluster"): uneven slices,
        # ranks with no share (split 8 of 2 register groups), batch, odd N, two consumers, the chain
        ("wgmma-NT-splitk4-cluster", dict(nt, M=128, N=1024, K=1024),
         {"split_k": 4, "reduce": "cluster", **C1}, 1.0, 0.0),
        ("wgmma-NN-splitk3-cluster-batch2-biasrow-silu",
         dict(M=130, N=192, K=1000, batch=2, dtype="f16", layout="NN",
              epilogue=_epi("row", "silu")), {"split_k": 3, "BN": 64, "reduce": "cluster"},
         1.5, 0.5),
        ("wgmma-NT-splitk6-cluster-odd-n", dict(nt, M=127, N=129, K=1000),
         {"split_k": 6, "reduce": "cluster"}, 1.0, -1.0),
        ("wgmma-NT-splitk2-cluster-c2-biascol-gelu-f32out",
         dict(nt, M=256, N=512, K=2048, out_dtype="f32", epilogue=_epi("col", "gelu_tanh")),
         {"split_k": 2, "reduce": "cluster", **C2_WIDE}, 1.0, 0.0),
        ("wgmma-NT-swap-m16-splitk4-cluster", dict(nt, M=16, N=1024, K=1024),
         {"swap_ab": True, "split_k": 4, "reduce": "cluster"}, 1.0, 0.0),
        ("wgmma-NT-swap-m8-splitk8-cluster-beta", dict(nt, M=8, N=520, K=4096),
         {"swap_ab": True, "split_k": 8, "reduce": "cluster"}, 1.0, 0.5),
        ("wgmma-NN-swap-m128-splitk4-cluster-biascol", dict(M=128, N=1000, K=2048,
                                                          dtype="bf16", layout="NN",
                                                          epilogue=_epi("col", "relu")),
         {"swap_ab": True, "split_k": 4, "reduce": "cluster"}, 1.0, 0.0),
        # swap_ab: C^T = B^T A^T, N over wgmma's 64-row M, M as its N (M below BN: TMA zero
        # fill), the transposed accumulator stored into row-major C (bias row/col of C)
        ("wgmma-NT-swap-m16-splitk4", dict(nt, M=16, N=1024, K=1024),
         {"swap_ab": True, "split_k": 4}, 1.0, 0.0),
        ("wgmma-NT-swap-m5-partial-beta", dict(nt, M=5, N=300, K=200), {"swap_ab": True},
         1.5, -0.5),
        ("wgmma-NT-swap-m100-biascol-gelu", dict(nt, M=100, N=520, K=256,
                                                 epilogue=_epi("col", "gelu_tanh")),
         {"swap_ab": True, "split_k": 1}, 1.0, 0.0),
        ("wgmma-NT-swap-m64-biasrow-batch2-splitk3-f32out",
         dict(nt, M=64, N=384, K=1000, batch=2, out_dtype="f32", epilogue=_epi("row", "relu")),
         {"swap_ab": True, "split_k": 3}, 1.0, 0.5),
        ("wgmma-NT-swap-m24-odd-n-2cta", dict(M=24, N=129, K=520, dtype="f16", layout="NT"),
         {"swap_ab": True, "ctas_per_sm": 2}, 1.0, 0.0),
        ("wgmma-TT-swap-m136", dict(M=136, N=300, K=200, dtype="f16", layout="TT"),
         {"swap_ab": True}, 1.0, 0.0),
        # wgmma's A operand MN-major (transpose bit): TN/TT, NN and TN swapped
        ("wgmma-TN-batch2-biasrow-beta", dict(M=256, N=192, K=320, batch=2, dtype="bf16",
                                              layout="TN", epilogue=_epi("row", "silu")),
         {}, 1.0, 0.5),
        ("wgmma-TT-c2-tall-odd-n", dict(M=520, N=129, K=200, dtype="f16", layout="TT"),
         C2_TALL, 1.0, 0.0),
        ("wgmma-NN-swap-m16-splitk4", dict(M=16, N=1024, K=1024, dtype="bf16", layout="NN"),
         {"swap_ab": True, "split_k": 4}, 1.0, 0.0),
        ("wgmma-NN-swap-m100-biascol-gelu", dict(M=100, N=520, K=256, dtype="bf16", layout="NN",
                                                 epilogue=_epi("col", "gelu_tanh")),
         {"swap_ab": True, "split_k": 1}, 1.0, -1.0),
        ("wgmma-TN-swap-m64-splitk2-2cta", dict(M=64, N=640, K=1000, dtype="f16", layout="TN"),
         {"swap_ab": True, "split_k": 2, "ctas_per_sm": 2}, 1.0, 0.0),
        # ping-pong: 17 x 17 = 289 tiles on 132 CTAs: 25 walk 3 (warpgroup 1 takes two), the
        # rest 2; partial tiles in M, N and K
        ("wgmma-NT-pingpong-odd-tiles", dict(nt, M=2100, N=2100, K=200),
         {**PP, "BM": 128, "BN": 128, "stages": 6}, 1.0, 0.0),
        # 16 x 8 x 3 = 384 tiles of 64 x 256 (2 or 3 per CTA), B MN-major, C read
        ("wgmma-NN-pingpong-64x256-batch3-beta", dict(M=1000, N=2000, K=192, batch=3,
                                                     dtype="f16", layout="NN"),
         {**PP, "BM": 64, "BN": 256, "stages": 5}, 0.5, 2.0),
        # 12 tiles: one per CTA, the second warpgroup has none (no turn is passed)
        ("wgmma-NT-pingpong-one-tile-bias-gelu", dict(nt, M=300, N=520, K=200,
                                                     epilogue=_epi("col", "gelu_tanh")),
         {**PP, "BM": 128, "BN": 128}, 1.0, 0.0),
    ]
    return out + tf32_cases() + tma_store_cases() + cluster_1x2_cases()


def cluster_1x2_cases() -> list:
    """1x2 clusters (cluster_n 2: the CTAs of neighbouring tile columns share A, each loading
    half of A's tile and multicasting it to both): bf16 NT and NN at 4096^3, an odd number of
    tile columns (the last pair's second CTA past N: it loads its half of A for its peer and
    stores nothing), partial tiles in M and N, batch, bias and beta, A MN-major (TN: one of
    the two 64-row boxes per CTA), 64-row tiles (32-row halves), swap_ab (wgmma's A is B: B
    shared), the TMA epilogue, tf32, and the 2x1 twin of the first."""
    nt = dict(dtype="bf16", layout="NT")
    cl = {"cluster_n": 2}
    wide = {"BM": 128, **C2_WIDE}  # spelled out: the default tile moves with the shape
    return [
        ("cl12-bf16-NT-4096", dict(nt, M=4096, N=4096, K=4096), {**cl, **wide}, 1.0, 0.0),
        ("cl12-bf16-NN-4096", dict(M=4096, N=4096, K=4096, dtype="bf16", layout="NN"),
         {**cl, **wide}, 1.0, 0.0),
        ("cl12-bf16-NT-4096-cl21", dict(nt, M=4096, N=4096, K=4096),
         {"cluster_m": 2, **wide}, 1.0, 0.0),
        # 1100 / 256: 5 tile columns (a spare CTA per row), 1000 / 128: 8 rows, the last partial
        ("cl12-bf16-NT-odd-cols-partial", dict(nt, M=1000, N=1100, K=1000),
         {**cl, **wide}, 1.0, 0.0),
        # 640 / 128: 5 columns, 600 / 128: 5 rows (partial), batch 2, bias + gelu, beta
        ("cl12-f16-NN-odd-cols-batch2-bias-beta",
         dict(M=600, N=640, K=256, batch=2, dtype="f16", layout="NN",
              epilogue=_epi("col", "gelu_tanh")), {**cl, **C1}, 1.0, 0.5),
        ("cl12-bf16-TN-odd-cols-biasrow", dict(M=768, N=1152, K=320, dtype="bf16", layout="TN",
                                               epilogue=_epi("row", "silu")),
         {**cl, **wide}, 1.5, -0.5),
        ("cl12-bf16-NT-64x128-odd-cols", dict(nt, M=500, N=770, K=512),
         {**cl, "BM": 64, "BN": 128, "consumers": 1}, 1.0, 0.0),
        # swap_ab: tile rows over N (8 of 128), columns over M (1 of 64: its pair's spare CTA)
        ("cl12-bf16-NT-swap-m64", dict(nt, M=64, N=1000, K=512),
         {**cl, "swap_ab": True, "BM": 128, "BN": 64, "split_k": 1}, 1.0, 0.0),
        ("cl12-bf16-NT-tmast-odd-cols", dict(nt, M=1000, N=520, K=1000),
         {**cl, **wide, "epilogue": "tma", "epilogue_n": 32}, 1.0, 0.5),
        ("cl12-tf32-NT-odd-cols", dict(M=1000, N=520, K=1000, dtype="f32", allow_tf32=True,
                                       layout="NT"), {**cl, **wide}, 1.0, 0.0),
    ]


def tma_store_cases() -> list:
    """The TMA epilogue (epilogue "tma": stmatrix into swizzled shared sub-tiles of 64 x 16,
    32 or 64 columns, TMA stores clipping partial tiles): one and two consumers, ping-pong
    (odd tile counts per CTA; an odd number of sub-tiles per tile), persistent (one and two
    CTAs per SM), a 2x1 cluster, partial tiles in M and N (a tile of 8 valid columns, M below
    one slab), batch, alpha/beta with C read, bias and activations."""
    nt = {"dtype": "bf16", "layout": "NT"}
    t = {"epilogue": "tma"}
    return [
        ("wgmma-tmast-NT-partial-c1-n32", {**nt, "M": 1000, "N": 520, "K": 1000},
         {**t, **C1, "epilogue_n": 32}, 1.0, 0.0),
        ("wgmma-tmast-NN-batch2-c2-n64-beta",
         {"M": 256, "N": 512, "K": 192, "batch": 2, "dtype": "f16", "layout": "NN"},
         {**t, **C2_WIDE, "epilogue_n": 64}, 2.0, 1.0),
        ("wgmma-tmast-NT-biascol-gelu-c2tall-n16",
         {**nt, "M": 300, "N": 520, "K": 200, "epilogue": _epi("col", "gelu_tanh")},
         {**t, **C2_TALL, "epilogue_n": 16}, 1.0, 0.0),
        ("wgmma-tmast-NN-biasrow-silu-beta",
         {"M": 130, "N": 192, "K": 96, "dtype": "f16", "layout": "NN",
          "epilogue": _epi("row", "silu")},
         {**t, "BN": 64, "epilogue_n": 64}, 1.0, 0.5),
        ("wgmma-tmast-NT-alpha-beta", {**nt, "M": 384, "N": 256, "K": 256}, {**t, **C1}, 1.5, -0.5),
        ("wgmma-tmast-NT-batch3-n8-tail-f16",
         {"M": 200, "N": 136, "K": 520, "batch": 3, "dtype": "f16", "layout": "NT"},
         {**t, **C1}, 1.0, 0.0),
        ("wgmma-tmast-NT-m40", {**nt, "M": 40, "N": 128, "K": 64}, {**t, **C1, "epilogue_n": 64},
         1.0, 0.0),
        ("wgmma-tmast-NT-pingpong-odd-tiles", {**nt, "M": 2100, "N": 2104, "K": 200},
         {**t, **PP, "BM": 128, "BN": 128, "stages": 6}, 1.0, 0.0),
        ("wgmma-tmast-NN-pingpong-64x192-n64-batch3-beta",
         {"M": 1000, "N": 2000, "K": 192, "batch": 3, "dtype": "f16", "layout": "NN"},
         {**t, **PP, "BM": 64, "BN": 192, "stages": 5, "epilogue_n": 64}, 0.5, 2.0),
        ("wgmma-tmast-NN-pingpong-128x192-bias-relu",
         {"M": 2000, "N": 1920, "K": 256, "dtype": "bf16", "layout": "NN",
          "epilogue": _epi("col", "relu")},
         {**t, **PP, "BM": 128, "BN": 192, "stages": 5}, 1.0, 0.0),
        ("wgmma-tmast-NT-persistent-batch2", {**nt, "M": 2000, "N": 1000, "K": 200, "batch": 2},
         {**t, "persistent": True, **C1}, 1.0, 0.0),
        ("wgmma-tmast-NN-persistent-c2-beta",
         {"M": 2048, "N": 2048, "K": 320, "dtype": "f16", "layout": "NN"},
         {**t, "persistent": True, **C2_WIDE, "epilogue_n": 64}, 0.5, 2.0),
        ("wgmma-tmast-NT-persistent-2cta", {**nt, "M": 4096, "N": 2048, "K": 128},
         {**t, "persistent": True, "ctas_per_sm": 2, "stages": 3, "consumer_registers": 216,
          **C1}, 1.0, 0.0),
        ("wgmma-tmast-NT-cluster2-partial", {**nt, "M": 1000, "N": 520, "K": 1000},
         {**t, "cluster_m": 2, **C2_WIDE}, 1.0, 0.0),
    ]


def tf32_cases() -> list:
    """tf32 (f32 data in global and shared memory, read as tf32 by m64nNk8 wgmma; layout NT
    only, BK 32): the default explicit tile (128x128 or 128x256, two consumers), partial tiles
    (K keeps 16-byte rows: K % 4 == 0), odd N, K below two tiles, batch, split-K, alpha/beta,
    the epilogue chain, persistent, a 2x1 cluster and swap_ab. Checked at the tf32 tolerance
    (runtime/measure.py)."""
    t = dict(dtype="f32", allow_tf32=True, layout="NT")
    return [
        ("wgmma-tf32-NT-256", dict(t, M=256, N=256, K=256), {}, 1.0, 0.0),
        ("wgmma-tf32-NT-128x256c2-512", dict(t, M=512, N=512, K=512), C2_WIDE, 1.0, 0.0),
        ("wgmma-tf32-NT-partial", dict(t, M=1000, N=1000, K=1000), {}, 1.0, 0.0),
        ("wgmma-tf32-NT-odd-n-k40-c1", dict(t, M=127, N=129, K=40), C1, 1.0, 0.0),
        ("wgmma-tf32-NT-batch2", dict(t, M=200, N=136, K=520, batch=2), {}, 1.0, 0.0),
        ("wgmma-tf32-NT-alpha-beta", dict(t, M=384, N=256, K=256), {}, 1.5, -0.5),
        ("wgmma-tf32-NT-splitk2-beta", dict(t, M=128, N=512, K=1024), {"split_k": 2}, 1.0, 0.5),
        ("wgmma-tf32-NT-biascol-gelu-c2", dict(t, M=300, N=520, K=200,
                                               epilogue=_epi("col", "gelu_tanh")), C2_WIDE,
         1.0, 0.0),
        ("wgmma-tf32-NT-persistent", dict(t, M=2000, N=1000, K=200), {"persistent": True},
         1.0, 0.0),
        ("wgmma-tf32-NT-cluster2-partial", dict(t, M=1000, N=520, K=1000),
         {"cluster_m": 2, **C2_WIDE}, 1.0, 0.0),
        ("wgmma-tf32-NT-swap-m16-splitk4", dict(t, M=16, N=1024, K=1024),
         {"swap_ab": True, "split_k": 4}, 1.0, 0.0),
    ]


def compile_case(spec_fields: dict, given: dict, target: str = "sm_90a"):
    from deepgen.compiler import compile_artifact
    from deepgen.spec import GemmSpec

    return compile_artifact(GemmSpec(**spec_fields), {"strategy": "wgmma", **given}, target,
                            keep_ir=False)
