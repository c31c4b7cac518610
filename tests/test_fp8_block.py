"""Block-scaled fp8 GEMMs on the CPU (DeepSeek-V3 / DeepGEMM's 1 x 128 scales of A and
128 x 128 of B; GemmSpec.scale "block"; the GPU side: tests/gpu/test_fp8_block_gpu.py): the
spec's scale operands, validation naming the field and the limit, the default, the kernel's
PTX (per K tile: the wgmma into one of two temporary accumulators, the previous tile's
promotion (one FMA per register into the main f32 accumulator) while it runs, wait_group 0;
persistent, the next tile's first K tile under the last promotion and the epilogue; the
scales loaded before the wait; no wgmma serialized by ptxas) and SASS (QGMMA, no local
memory), deepgen.gemm's block form and the torch op's fake; the opt-in smem_scales (scale_a
staged in shared memory by the producer's TMA) and persistent 2x1 clusters."""
from __future__ import annotations

import math
import re

import pytest
from sass_text import sass_of
import torch

import deepgen
from deepgen import build, scaled
from deepgen.compiler import compile_artifact, strategies
from deepgen.compiler.strategies.wgmma import WgmmaConfig
from deepgen.compiler.target import get_target
from deepgen.epilogue import EpilogueSpec
from deepgen.spec import GemmSpec, SpecError

H100 = get_target("sm_90a")
BLOCK = GemmSpec(M=4096, N=2112, K=7168, dtype="e4m3", out_dtype="bf16", layout="NT",
                 scale="block")
# 128 x 128 tiles with two temporaries: the block default where 128 x 192 tiles make less
# than a wave, and BLOCK's before BLOCK_WIDE (the walks below are built on it)
TILE128 = {"BN": 128, "temporaries": 2, "issue_ahead": True, "stages": 6}


def test_block_spec_operands_and_key():
    assert BLOCK.operands() == ("scale_a", "scale_b")
    assert BLOCK.operand_shape("scale_a") == (56, 4096)  # (ceil(K/128), M): M-major
    assert BLOCK.operand_shape("scale_b") == (17, 56)  # (ceil(N/128), ceil(K/128))
    assert BLOCK.operand_dtype("scale_a") == "f32"
    odd = GemmSpec(**{**BLOCK.to_dict(), "K": 4000, "N": 1000})
    assert odd.operand_shape("scale_a") == (32, 4096) and odd.operand_shape("scale_b") == (8, 32)
    rowwise = GemmSpec(**{**BLOCK.to_dict(), "scale": "rowwise"})
    keys = [build.key_parts(s, {"strategy": "wgmma"}, "sm_90a")["spec"] for s in (BLOCK,
                                                                                 rowwise)]
    assert keys[0] != keys[1]


@pytest.mark.parametrize("M,N,persistent,stages", [(128, 4096, False, 7), (100, 2112, False, 7),
                                                   (128, 24576, True, 6), (64, 24576, True, 8),
                                                   (4096, 4096, True, 5)])
def test_block_default_one_wave_of_tiles_is_not_persistent(M, N, persistent, stages):
    """One row of 128-row tiles that fits one wave of the target's SMs (132): a tile per CTA,
    non-persistent, 7 stages; more tiles, or 64-row tiles (M <= 64), or many rows: persistent."""
    spec = GemmSpec(**{**BLOCK.to_dict(), "M": M, "N": N})
    cfg = strategies.resolve(None, spec, H100)
    assert (cfg.persistent, cfg.stages) == (persistent, stages), cfg


@pytest.mark.parametrize("M,N,out,expected", [
    (4096, 4096, "bf16", ("tma", 32, 5)), (4096, 2112, "f16", ("tma", 32, 5)),
    (128, 7168, "bf16", ("tma", 32, 7)), (64, 24576, "bf16", ("tma", 32, 8)),
    (128, 4096, "bf16", ("direct", 32, 7)),  # split_k 2: the cluster's shares per thread
    (4096, 4096, "f32", ("direct", 32, 5)),  # stmatrix stores 16-bit elements
    (4096, 2100, "bf16", ("direct", 32, 5))])  # C's row pitch 4200 bytes: not for TMA
def test_block_default_takes_the_tma_epilogue_where_c_does(M, N, out, expected):
    """The block default stores through the TMA epilogue where C takes it (16-bit, a row
    pitch of 16-byte multiples) in 32-column sub-tiles; elsewhere per thread."""
    spec = GemmSpec(**{**BLOCK.to_dict(), "M": M, "N": N, "out_dtype": out})
    cfg = strategies.resolve(None, spec, H100)
    assert (cfg.epilogue, cfg.epilogue_n, cfg.stages) == expected, cfg


def test_block_default_drops_staged_scales_where_bn_straddles():
    """BN 136 given over the block default (scale_a staged where M % 4 == 0): the staged
    scale_a dropped (validate rejects it with tiles across two blocks of B's scales); given
    explicitly it is an error (above)."""
    cfg = strategies.resolve({"strategy": "wgmma", "BN": 136, "cluster_m": 1}, BLOCK, H100)
    assert cfg.BN == 136 and not cfg.smem_scales
    assert strategies.resolve({"strategy": "wgmma", "BN": 128}, BLOCK, H100).smem_scales


def test_block_given_wide_tile_takes_the_stages_that_fit():
    """BN 192 (one temporary) given over a default of 128 x 128 tiles in 6 stages (M = 256:
    the wide tiles would not make a wave): the stages that fit beside the TMA epilogue's
    buffers (5 of 40 KiB); given stages are kept, and rejected where they do not fit."""
    spec = GemmSpec(**{**BLOCK.to_dict(), "M": 256})
    assert strategies.resolve(None, spec, H100).stages == 6
    cfg = strategies.resolve({"strategy": "wgmma", "BN": 192, "temporaries": 1}, spec, H100)
    assert (cfg.BN, cfg.temporaries, cfg.issue_ahead, cfg.stages, cfg.epilogue) == (
        192, 1, False, 5, "tma"), cfg
    with pytest.raises(SpecError, match=r"^stages: 6 stages of 40960 bytes"):
        strategies.resolve({"strategy": "wgmma", "BN": 192, "temporaries": 1, "stages": 6},
                           spec, H100)


@pytest.mark.parametrize("spec_fields,config,message", [
    (dict(dtype="int8"), None, r"^scale: block scales are built for fp8 \(e4m3, e5m2\) inputs"),
    (dict(layout="NN"), None, r"^layout: fp8 \(e4m3\) wgmma reads only K-major operands"),
    (dict(), {"mode": "pingpong", "BM": 128, "BN": 128, "consumers": 2, "persistent": True},
     r"^mode: block scales: mode 'cooperative'"),
    (dict(), {"BN": 256}, r"^BN: block scales keep a main and 1 temporary accumulator\(s\) of "
                          r"slabs x BN / 2 registers .* at most 204 in all, got 128 \+ 128 = 256"),
    (dict(), {**TILE128, "BM": 128, "consumers": 1},
     r"^BN: block scales keep a main and 2 temporary .* got 128 \+ 256 = 384"),
    (dict(), {"BN": 192, "temporaries": 2},
     r"^BN: block scales keep a main and 2 temporary .* got 96 \+ 192 = 288 .*"
     r"temporaries 1 takes twice the BN of 2"),
    (dict(), {"temporaries": 3}, r"^temporaries: block scales' temporary accumulators: 1 or 2, "
                                 r"got 3"),
    (dict(), {"BN": 256, "temporaries": 1, "temp_parts": 3},
     r"^temp_parts: block scales' temporary in 1 or 2 column parts of the tile, got 3"),
    (dict(), {**TILE128, "temp_parts": 2},
     r"^temp_parts: a temporary of BN / 2 columns is built for temporaries 1 .* got temporaries "
     r"2"),
    ({"scale": "tensor"}, {"prefetch_scales": True},
     r"^prefetch_scales: prefetches block scales' scale_b \(scale 'block'\), got scale "
     r"'tensor'"),
    ({"scale": "tensor"}, {"temp_parts": 2},
     r"^temp_parts: schedules block scales' K loop \(scale 'block'\), got scale 'tensor'"),
    (dict(), {"temporaries": 1, "issue_ahead": True},
     r"^issue_ahead: issues a K tile while the previous one's temporary is promoted: it needs "
     r"temporaries 2"),
    ({"scale": "tensor"}, {"temporaries": 1, "issue_ahead": True},
     r"^temporaries: schedules block scales' K loop \(scale 'block'\), got scale 'tensor'"),
    (dict(), {"split_k": 2, "persistent": False, "cluster_m": 1},
     r"^reduce: block scales with split_k: reduce 'cluster' .* got 'workspace'"),
    (dict(), {"split_k": 3, "persistent": False, "cluster_m": 1, "reduce": "cluster"},
     r"^split_k: block scales with split_k: .* the 56 K tiles must divide into split_k equal "
     r"slices, got 3"),
    (dict(M=16), {"swap_ab": True, "BN": 16, "BM": 128, "consumers": 1, "split_k": 1},
     r"^swap_ab: block scales with swap_ab: not built"),
    ({"scale": "tensor"}, {"smem_scales": True},
     (r"^smem_scales: stages block scales' scale_a in shared memory \(scale 'block'\), got "
      r"scale 'tensor'")),
    (dict(), {"BN": 152, "cluster_m": 1},
     r"^BN: block scales: a tile's columns must lie in at most two 128-row blocks .* got 152"),
    (dict(M=64), {"stagger": True},
     r"^stagger: staggers block scales' two consumer warpgroups .* with 1 consumer\(s\)"),
    ({}, {"BN": 136, "cluster_m": 1, "smem_scales": True},
     r"^smem_scales: staged scale_a with tiles across two blocks of B's scales at offsets finer "
     r"than 32 columns \(gcd\(BN, 128\) = 8, BN 136\) gave rows of wrong results"),
    ({"M": 4097}, {"smem_scales": True},
     r"^smem_scales: TMA loads scale_a .* M must be a multiple of 4, got M = 4097"),
    ({}, {**TILE128, "smem_scales": True, "stages": 7},
     (r"^stages: 7 stages of 32768 bytes \(\+ barriers, \+ 3584 of staged scale_a\) = "
      r"233072 bytes exceed")),
])
def test_block_validation_names_the_field_and_the_limit(spec_fields, config, message):
    spec = GemmSpec(**{**BLOCK.to_dict(), **spec_fields})
    with pytest.raises(SpecError, match=message):
        strategies.resolve(None if config is None else {"strategy": "wgmma", **config}, spec,
                           H100)


@pytest.mark.parametrize("K,persistent", [(128, False), (256, False), (384, False),
                                          (512, True), (7168, True)])
def test_block_default_walks_a_tile_per_cta_below_four_k_tiles(K, persistent):
    """Two or three K tiles a tile: ptxas spills in the persistent walk, so the default takes
    a tile per CTA there (and, with one, as well: BLOCK_PERSISTENT_MIN_K_TILES); the kernels
    either way free of local memory."""
    spec = GemmSpec(**{**BLOCK.to_dict(), "K": K})
    cfg = strategies.resolve(None, spec, H100)
    assert cfg.persistent == cfg.tail_split == persistent, cfg  # (tail_split: of the walk)
    if K <= 512:
        art = compile_artifact(spec, None, "sm_90a", keep_ir=False)
        res = art.resources[art.launches[0].entry]
        assert res["spill_stores"] == res["stack_bytes"] == 0, (K, res)


@pytest.mark.parametrize("M,N,K,split", [
    (64, 2112, 7168, 2), (128, 4096, 7168, 2),  # 33 / 64 tiles: at most half the 132 SMs
    (128, 7168, 16384, 1),  # 112 tiles
    (64, 2112, 1536, 1),  # 12 K tiles: under BLOCK_SPLIT_MIN_K_TILES
    (64, 4096, 7040, 1),  # 55 K tiles: no equal halves
    (256, 2112, 7168, 1)])  # 2x1 clusters (persistent pairs)
def test_block_default_splits_k_where_the_tiles_fill_at_most_half_the_sms(M, N, K, split):
    spec = GemmSpec(**{**BLOCK.to_dict(), "M": M, "N": N, "K": K})
    cfg = strategies.resolve(None, spec, H100)
    assert cfg.split_k == split, cfg
    if split > 1:
        assert (cfg.reduce, cfg.persistent, cfg.cluster_m) == ("cluster", False, 1)


@pytest.mark.parametrize("M,N,K,split", [(128, 2112, 7168, 4), (64, 4096, 7168, 2),
                                         (100, 392, 1040, 3)])
def test_block_split_k_sums_the_slices_in_a_cluster(M, N, K, split):
    """split_k with block scales (reduce "cluster"): the grid's z holds the K slices of a
    tile, one cluster (1, 1, split); each slice promotes its own K tiles (K / 128 / split per
    slice: the fma per register under the next K tile's wgmma), stashes its f32 sums in
    shared memory and adds its share of the cluster's stashes (mapa, ld.shared::cluster), no
    TMA epilogue (the shares go out per thread), no spills."""
    spec = GemmSpec(M=M, N=N, K=K, dtype="e4m3", out_dtype="bf16", layout="NT", scale="block")
    art = compile_artifact(spec, {"strategy": "wgmma", "split_k": split, "reduce": "cluster",
                                  "persistent": False}, "sm_90a", keep_ir=False)
    cfg = art.config if isinstance(art.config, dict) else art.config.to_dict()
    main = art.launches[0]
    tiles = -(-M // cfg["BM"]) * -(-N // cfg["BN"])
    assert (main.grid, main.cluster, cfg["epilogue"]) == ((tiles, 1, split), (1, 1, split),
                                                          "direct")
    ptx = art.assembly
    assert "mapa" in ptx and "barrier.cluster.arrive" in ptx
    assert re.search(r"ld\.shared::cluster\.v4\.b32", ptx)
    assert re.search(r"wgmma\.mma_async\.sync\.aligned\.m64n64k32\.f32\.e4m3\.e4m3", ptx)
    assert len(re.findall(r"fma\.rn\.f32\s", ptx)) >= 32
    res = art.resources[main.entry]
    assert res["spill_stores"] == res["stack_bytes"] == 0, res


def test_tail_split_halves_the_last_round_where_it_leaves_half_the_clusters_idle():
    """tail_split (the block default with persistent 2x1 clusters; without narrow_column,
    which takes 4096 x 2112's last column instead): 4096 x 2112 makes 16 pairs of tile rows
    x 17 columns = 272 pairs over 66 clusters, 4 rounds and 8 left, whose 16 tiles go to 16
    clusters on two halves of K each (a second K loop in the kernel, summed through DSMEM:
    mapa and two more cluster barriers); 4096 x 4096 leaves 50 (100 tiles > 66 clusters): no
    tail, the kernel as without; an odd count of K tiles: no tail."""
    from deepgen.compiler.strategies.wgmma.kernel import pair_tail

    cfg = strategies.resolve({"strategy": "wgmma", **TILE128}, BLOCK, H100)
    assert cfg.tail_split and pair_tail(cfg, BLOCK) is None  # narrow_column's there
    cfg = cfg.replace(narrow_column=False)
    assert pair_tail(cfg, BLOCK) == (4, 8)
    square = GemmSpec(**{**BLOCK.to_dict(), "N": 4096})
    odd_k = GemmSpec(**{**BLOCK.to_dict(), "K": 7040})  # 55 K tiles
    assert pair_tail(cfg, square) is None and pair_tail(cfg, odd_k) is None
    arts = {on: compile_artifact(BLOCK, {"strategy": "wgmma", **TILE128, "tail_split": on,
                                         "narrow_column": False}, "sm_90a", keep_ir=False)
            for on in (True, False)}
    mma, syncs = ({on: len(re.findall(pattern, a.assembly)) for on, a in arts.items()}
                  for pattern in (r"wgmma\.mma_async", r"barrier\.cluster\.arrive"))
    assert mma[True] > mma[False] and syncs[True] == syncs[False] + 2, (mma, syncs)
    assert re.search(r"ld\.shared::cluster\.v4\.b32", arts[True].assembly)
    res = arts[True].resources[arts[True].launches[0].entry]
    assert res["spill_stores"] == res["stack_bytes"] == 0, res
    with pytest.raises(SpecError, match=r"^tail_split: splits the last round of block scales' "
                                        r"persistent 2x1 clusters .* cluster_m 1"):
        strategies.resolve({"strategy": "wgmma", "tail_split": True, "cluster_m": 1}, BLOCK,
                           H100)


def test_narrow_column_walks_a_half_column_in_the_clusters_a_pair_short():
    """narrow_column (the block default with persistent 2x1 clusters): 4096 x 2112's 17th
    tile column holds 64 of 128 columns. The 16 full columns make 256 pairs over 66 clusters
    (3 rounds, 58 clusters a pair ahead); the 8 clusters a pair short take the 16 pairs of
    the last column, two each, with m64n64k32 wgmma (half the work a pair): 4 rounds for
    every cluster, where tail_split's halves made 4.5. Not where the last column is more
    than half full (N = 2144), N a multiple of 128, no full round (M = 1000: 4 pairs x 16),
    or the strips more than the short clusters take (M = 2048 x N = 4160: 8 pairs x 32 =
    256, 58 ahead; 8 strips fit; M = 4096 x N = 8256: 16 x 64 = 1024, 34 ahead, 32 short:
    16 strips fit), or where tail_split's walk ends sooner. Validated for persistent 2x1
    clusters only."""
    from deepgen.compiler.strategies.wgmma.kernel import pair_strip

    tile128 = {"strategy": "wgmma", **TILE128}
    cfg = strategies.resolve(tile128, BLOCK, H100)
    assert cfg.narrow_column and pair_strip(cfg, BLOCK) == (16, 58, 16)
    for fields in ({"N": 2144}, {"N": 4096}, {"M": 1000}):
        spec = GemmSpec(**{**BLOCK.to_dict(), **fields})
        assert pair_strip(strategies.resolve(tile128, spec, H100), spec) is None, fields
    for fields, want in (({"M": 2048, "N": 4160}, (32, 58, 8)),
                         ({"M": 4096, "N": 8256}, (64, 34, 16))):
        spec = GemmSpec(**{**BLOCK.to_dict(), **fields})
        assert pair_strip(strategies.resolve(tile128, spec, H100), spec) == want, fields
    # not where the whole columns' walk with its last round split ends sooner: 4096 x 4096 in
    # the wide default's 192-wide tiles (21 full columns: 336 pairs, 5 rounds and 6 ahead, so
    # the strips' walk takes 6 rounds; 22 columns: 352 pairs, 5 rounds and 22 left in halves)
    from deepgen.compiler.strategies.wgmma.kernel import pair_tail

    square = GemmSpec(**{**BLOCK.to_dict(), "N": 4096})
    wide = strategies.resolve(None, square, H100)
    assert wide.BN == 192 and wide.narrow_column and pair_strip(wide, square) is None
    assert pair_tail(wide, square) == (5, 22)
    art = compile_artifact(BLOCK, tile128, "sm_90a", keep_ir=False)
    off = compile_artifact(BLOCK, {**tile128, "narrow_column": False}, "sm_90a",
                           keep_ir=False)
    narrow = r"wgmma\.mma_async\.sync\.aligned\.m64n64k32\.f32\.e4m3\.e4m3"
    assert re.search(narrow, art.assembly) and not re.search(narrow, off.assembly)
    res = art.resources[art.launches[0].entry]
    assert res["spill_stores"] == res["stack_bytes"] == 0, res
    with pytest.raises(SpecError, match=r"^narrow_column: walks the last tile column of block "
                                        r"scales' persistent 2x1 clusters .* cluster_m 1"):
        strategies.resolve({"strategy": "wgmma", "narrow_column": True, "cluster_m": 1},
                           BLOCK, H100)


def test_persistent_clusters_are_built_for_block_scales_only():
    cfg = strategies.resolve({"strategy": "wgmma", "cluster_m": 2}, BLOCK, H100)
    assert (cfg.cluster_m, cfg.persistent, cfg.smem_scales) == (2, True, True)
    bf16 = GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="NT")
    with pytest.raises(SpecError, match=r"^persistent: clusters with the persistent grid: "
                                        r"built for block-scaled fp8 in 2x1 clusters only"):
        strategies.resolve({"strategy": "wgmma", "mode": "cooperative", "cluster_m": 2,
                            "persistent": True}, bf16, H100)


@pytest.mark.parametrize("M,N,batch,group_m,bn", [
    (4096, 2112, 1, 8, 128), (1101, 392, 1, 8, 128), (4001, 2112, 1, 8, 128),
    (300, 384, 3, 8, 128), (5120, 896, 1, 3, 128), (64, 128, 1, 8, 128),
    (2560, 2080, 1, 8, 128), (1000, 2112, 2, 8, 128), (4096, 7168, 1, 8, 192)])
def test_persistent_cluster_walk_covers_every_tile_once_in_pairs(M, N, batch, group_m, bn):
    """The persistent 2x1 walk (kernel._cluster_walk, on ints: irb folds them): the two
    CTAs of a cluster take the same count of tiles, tile i of each in the same column and
    batch element, vertically adjacent; over the grid every tile (the spare past M of an odd
    tile-row count included) exactly once, or (tail_split: 5120 x 896) a tile of the last
    round by both CTAs of one cluster (a half of K each); the strip pairs of narrow_column
    (4096, 4001 and 1000 x 2 x 2112, 2560 x 2080) after a cluster's full pairs, a strip
    half a pair's work: no cluster's work above the mean rounded up. BN 192 (the wide
    default, one temporary) at 4096 x 7168: 16 x 38 = 608 pairs, 9 rounds and 14 left (the
    last column's 16 pairs more than the 2 short clusters take: no strip), so tail_split."""
    from deepgen.compiler.strategies.wgmma import kernel as K

    spec = GemmSpec(**{**BLOCK.to_dict(), "M": M, "N": N, "K": 1024, "batch": batch})
    tile = TILE128 if bn == 128 else {"BN": 192, "temporaries": 1}
    cfg = strategies.resolve({"strategy": "wgmma", **tile, "cluster_m": 2, "group_m": group_m},
                             spec, H100)
    tm, tn = -(-M // cfg.BM), -(-N // cfg.BN)
    grid = K.grid(cfg, spec)[0]
    assert grid == 2 * min(-(-tm // 2) * tn * batch, 66)
    seen, halves, work = {}, {}, []
    for pid in range(grid):
        (tile, count, tail, strip), (peer, peer_count, peer_tail, peer_strip) = (
            K._cluster_walk(cfg, spec, p, tm, tn) for p in (pid, pid ^ 1))
        assert count == peer_count
        work.append(count)
        for i in range(count):
            m0, n0, bz = tile(i)
            assert (n0, bz) == peer(i)[1:] and abs(m0 - peer(i)[0]) == cfg.BM
            seen.setdefault((m0, n0, bz), []).append(pid)
        if strip is not None:
            assert strip.count == peer_strip.count and strip.g0 == count * -(-spec.K // 128)
            for j in range(strip.count):
                (m0, n0, bz), other = strip.tile(j), peer_strip.tile(j)
                assert (n0, bz) == other[1:] and abs(m0 - other[0]) == cfg.BM
                assert n0 == N // cfg.BN * cfg.BN
                seen.setdefault((m0, n0, bz), []).append(pid)
            work[-1] += strip.count / 2
        if tail is not None and tail.active:
            assert (peer_tail.origin, peer_tail.active) == (tail.origin, tail.active)
            # the two CTAs on the two halves of K, after the full rounds
            assert {tail.ks.first, peer_tail.ks.first} == {0, tail.ks.count}
            assert tail.g0 == count * -(-spec.K // 128) and 2 * tail.ks.count == -(-spec.K // 128)
            halves.setdefault(tuple(tail.origin), []).append(pid)
    assert (len(halves) > 0) == ((M, N) in ((5120, 896), (4096, 7168)))
    assert (K.pair_strip(cfg, spec) is not None) == (N in (2112, 2080))
    assert max(work) == math.ceil(sum(work) / grid), work
    assert sorted(seen.keys() | halves.keys()) == sorted(
        (r * cfg.BM, c * cfg.BN, b) for r in range(2 * -(-tm // 2)) for c in range(tn)
        for b in range(batch))
    assert not seen.keys() & halves.keys()
    assert all(len(v) == 1 for v in seen.values())
    assert all(len(v) == 2 and v[0] ^ 1 == v[1] for v in halves.values())


def test_block_default():
    # 2112 = 11 x 192: the wide tiles (BLOCK_WIDE), one temporary, 5 stages; 176 pairs over
    # 66 clusters, at most 3 rounds: consumer 1 staggered (BLOCK_STAGGER_MAX_ROUNDS)
    assert strategies.resolve(None, BLOCK, H100) == WgmmaConfig(
        BM=128, BN=192, BK=128, consumers=2, stages=5, persistent=True, producer_registers=24,
        consumer_registers=240, cluster_m=2, smem_scales=True, epilogue="tma", epilogue_n=32,
        tail_split=True, narrow_column=True, temporaries=1, issue_ahead=False, stagger=True)
    # 128 x 128 with two temporaries where 192-wide tiles make less than a wave (M = 256 x N
    # = 2112: 22 tiles)
    for fields in ({"M": 256},):
        spec = GemmSpec(**{**BLOCK.to_dict(), **fields})
        assert strategies.resolve(None, spec, H100) == WgmmaConfig(
            BM=128, BN=128, BK=128, consumers=2, stages=6, persistent=True,
            producer_registers=24, consumer_registers=240, cluster_m=2, smem_scales=True,
            epilogue="tma", epilogue_n=32, tail_split=True, narrow_column=True), fields
    small = GemmSpec(**{**BLOCK.to_dict(), "M": 64, "N": 24576, "K": 1536})
    assert strategies.resolve(None, small, H100) == WgmmaConfig(
        BM=64, BN=64, BK=128, consumers=1, stages=8, persistent=True, consumer_registers=240,
        smem_scales=True, epilogue="tma", epilogue_n=32)
    # 33 tiles of 64 x 64 (N = 2112): two K slices summed in a 2-CTA cluster, 66 CTAs
    assert strategies.resolve(None, GemmSpec(**{**BLOCK.to_dict(), "M": 64}), H100) == (
        WgmmaConfig(BM=64, BN=64, BK=128, consumers=1, stages=8, persistent=False,
                    consumer_registers=240, smem_scales=True, split_k=2, reduce="cluster"))
    # BN 64 up to M = 128 (BLOCK_NARROW_MAX_M; N = 2112: 33 tiles, one wave, so not
    # persistent), 128 in persistent 2x1 clusters past it, with scale_a staged in shared
    # memory where M % 4 == 0 (its TMA's 16-byte row pitch)
    for m, bn, cluster_m, smem in ((128, 64, 1, True), (127, 64, 1, False),
                                   (129, 128, 2, False), (132, 128, 2, True)):
        cfg = strategies.resolve(None, GemmSpec(**{**BLOCK.to_dict(), "M": m}), H100)
        assert (cfg.BM, cfg.BN, cfg.consumers, cfg.cluster_m, cfg.persistent,
                cfg.smem_scales) == (128, bn, 2, cluster_m, m > 128, smem), (m, cfg)
    # a given BN completes the block default, not the ping-pong one
    cfg = strategies.resolve({"strategy": "wgmma", "BN": 64}, BLOCK, H100)
    assert (cfg.mode, cfg.BN, cfg.consumers) == ("cooperative", 64, 2)


@pytest.fixture(scope="module")
def artifacts():
    def c(spec, config=None):
        return compile_artifact(spec, config, "sm_90a", keep_ir=False)

    return {
        "default": c(BLOCK),  # the wide tiles (BN 192, one temporary)
        "tile128": c(BLOCK, {"strategy": "wgmma", **TILE128}),
        "m64": c(GemmSpec(**{**BLOCK.to_dict(), "M": 64})),
        "bn64_bias_relu_f32": c(GemmSpec(M=1000, N=1000, K=4000, dtype="e4m3",
                                         out_dtype="f32", layout="NT", scale="block",
                                         epilogue=EpilogueSpec.of(bias="col",
                                                                  activation="relu")),
                                {"strategy": "wgmma", "BN": 64, "persistent": False,
                                 "cluster_m": 1, "smem_scales": False}),
        "e5m2": c(GemmSpec(M=256, N=256, K=512, dtype="e5m2", out_dtype="f16", layout="NT",
                           scale="block")),
        "odd": c(GemmSpec(M=256, N=256, K=1040, dtype="e4m3", out_dtype="bf16", layout="NT",
                          scale="block")),  # 9 K tiles: the loop's 4 pairs and no last tile
        "one": c(GemmSpec(M=256, N=256, K=96, dtype="e4m3", out_dtype="bf16", layout="NT",
                          scale="block")),  # one K tile: no loop
        "smem": c(BLOCK, {"strategy": "wgmma", **TILE128, "smem_scales": True}),
        "cluster_pers": c(BLOCK, {"strategy": "wgmma", **TILE128, "cluster_m": 2}),
        # both; 9 tile rows (a spare CTA past M), 9 K tiles (the last partial)
        "both_odd": c(GemmSpec(M=1100, N=392, K=1040, dtype="e4m3", out_dtype="bf16",
                               layout="NT", scale="block"),
                      {"strategy": "wgmma", "cluster_m": 2, "smem_scales": True}),
        "smem_m64": c(GemmSpec(**{**BLOCK.to_dict(), "M": 60}),
                      {"strategy": "wgmma", "smem_scales": True}),
        "stagger": c(BLOCK, {"strategy": "wgmma", **TILE128, "stagger": True}),
        "ahead_off": c(BLOCK, {"strategy": "wgmma", **TILE128, "issue_ahead": False}),
        "stagger_odd": c(GemmSpec(M=1101, N=392, K=1040, dtype="e4m3", out_dtype="bf16",
                                  layout="NT", scale="block"),
                         {"strategy": "wgmma", "stagger": True, "persistent": False}),
        # tiles across two blocks of B's scales (BN 136): scale_a from global memory (the
        # default's staged scale_a dropped: validate rejects it with BN 136); non-persistent
        # (persistent, ptxas spills 8-16 bytes here)
        "straddle": c(GemmSpec(M=1000, N=2112, K=1040, dtype="e4m3", out_dtype="bf16",
                               layout="NT", scale="block"),
                      {"strategy": "wgmma", **TILE128, "BN": 136, "cluster_m": 1,
                       "persistent": False}),
        "straddle_global": c(GemmSpec(M=301, N=392, K=1040, dtype="e4m3", out_dtype="f16",
                                      layout="NT", scale="block"),
                             {"strategy": "wgmma", **TILE128, "BN": 136, "cluster_m": 1,
                              "persistent": False}),
        # 128 x 256 tiles, the temporary in two 128-column parts (temp_parts); persistent
        # pairs, 9 K tiles
        "wide256": c(GemmSpec(M=4096, N=4096, K=1040, dtype="e4m3", out_dtype="bf16",
                              layout="NT", scale="block"),
                     {"strategy": "wgmma", "BN": 256, "temporaries": 1, "temp_parts": 2,
                      "stages": 4}),
        # BN 160, one temporary, scale_a staged (offsets in the tiles' blocks: multiples of 32)
        "straddle_160": c(GemmSpec(M=1000, N=2112, K=1040, dtype="e4m3", out_dtype="bf16",
                                   layout="NT", scale="block"),
                          {"strategy": "wgmma", "BN": 160, "temporaries": 1, "cluster_m": 2}),
    }


def _issues_ahead(name: str, art) -> bool:
    """Whether artifact `name` has a K loop that issues ahead (wait_group 1 within a trip):
    issue_ahead (not "ahead_off", nor the one-temporary ones) and 3 K tiles or more."""
    spec = art.spec if isinstance(art.spec, dict) else art.spec.to_dict()
    cfg = art.config if isinstance(art.config, dict) else art.config.to_dict()
    return cfg["issue_ahead"] and -(-spec["K"] // 128) >= 3


@pytest.mark.parametrize("name,n,dtype", [("tile128", 128, "e4m3"), ("m64", 64, "e4m3"),
                                          ("bn64_bias_relu_f32", 64, "e4m3"),
                                          ("e5m2", 128, "e5m2"), ("odd", 128, "e4m3"),
                                          ("one", 128, "e4m3"), ("smem", 128, "e4m3"),
                                          ("cluster_pers", 128, "e4m3"),
                                          ("both_odd", 128, "e4m3"), ("smem_m64", 64, "e4m3"),
                                          ("ahead_off", 128, "e4m3")])
def test_ptx_promotes_every_k_tile_under_the_next(artifacts, name, n, dtype):
    """The K tiles' wgmma issued in groups of 4 k32 (slabs 1; each K tile a fresh temporary,
    scale-d 0 first), one commit and one wait per group: wait_group 1 within a trip of the K
    loop (its second K tile issued before the first is waited for: issue_ahead, the default)
    and wait_group 0 elsewhere, wait_group 1 only with the K loop there (3 K tiles or more);
    "ahead_off" only wait_group 0; a group's commit followed by the previous K tile's
    promotion (fma.rn.f32 of every register, N/2 per slab) before its wait (LLVM lays the
    blocks out in its own order: at least one such commit, where there is more than one K
    tile); the scales read before the first wgmma; the scale operands' shapes; no spills."""
    from deepgen.compiler.strategies.wgmma.kernel import pair_strip

    art = artifacts[name]
    main = art.launches[0]
    ptx = art.assembly
    # narrow_column (the 2112-wide shapes' walk): the last column's groups m64n(n / 2)k32
    cfg = art.config if isinstance(art.config, WgmmaConfig) else WgmmaConfig.from_dict(
        art.config)
    spec = art.spec if isinstance(art.spec, GemmSpec) else GemmSpec.from_dict(art.spec)
    width = f"(?:{n}|{n // 2})" if pair_strip(cfg, spec) else n
    mma = [m.start() for m in re.finditer(
        rf"wgmma\.mma_async\.sync\.aligned\.m64n{width}k32\.f32\.{dtype}\.{dtype} ", ptx)]
    commits = [m.start() for m in re.finditer(r"wgmma\.commit_group\.sync\.aligned;", ptx)]
    waits = [(m.start(), m.group(1)) for m in re.finditer(
        r"wgmma\.wait_group\.sync\.aligned\s+(\d+);", ptx)]
    assert mma and len(mma) == 4 * len(commits), (len(mma), len(commits))
    kb = -(-spec.K // 128)
    assert {w for _, w in waits} == ({"0", "1"} if _issues_ahead(name, art) else {"0"}), (
        name, waits)
    assert len(waits) == len(commits), waits
    fmas = [m.start() for m in re.finditer(r"fma\.rn\.f32\s", ptx)]
    under = [len([p for p in fmas if c < p < min((w for w, _ in waits if w > c),
                                                 default=len(ptx))])
             for c in commits]
    if kb > 1:
        assert n // 2 in under, under
    loads = [m.start() for m in re.finditer(r"ld\.global(\.nc)?\.[bf]32\s", ptx)]
    assert any(p < mma[0] for p in loads)  # the scales of the tile, before its wgmma
    names = [(p.name, p.shape) for p in main.params if p.kind != "tma"]
    assert names[-2:] == [("scale_a", (kb, "M")), ("scale_b", (-(-spec.N // 128), kb))]
    res = art.resources[main.entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


@pytest.mark.parametrize("name,n", [("default", 192), ("straddle_160", 160), ("wide256", 128)])
def test_one_temporary_promotes_between_the_wait_and_the_next_issue(artifacts, name, n):
    """temporaries 1 (the wide default, BN 192; BN 160; BN 256 in two parts of 128 columns,
    temp_parts 2, each part a group of its own): each K tile's group of 4 m64nNk32
    committed and at once waited for (wait_group 0 only), no FMA between a commit and its wait
    but the epilogue's under the next tile's first K tile, and a K tile's N/2 FMAs (fma.rn.f32) between a wait and the next commit;
    the next K tile issued into the promoted temporary's registers keeps it to one set, so
    no spills (with a fresh one ptxas moved the FMAs under the wgmma and spilled)."""
    art = artifacts[name]
    ptx = art.assembly
    assert re.search(rf"wgmma\.mma_async\.sync\.aligned\.m64n{n}k32\.f32\.e4m3\.e4m3 ", ptx)
    commits = [m.start() for m in re.finditer(r"wgmma\.commit_group\.sync\.aligned;", ptx)]
    waits = [(m.start(), m.group(1)) for m in re.finditer(
        r"wgmma\.wait_group\.sync\.aligned\s+(\d+);", ptx)]
    assert {w for _, w in waits} == {"0"} and len(waits) == len(commits), waits
    fmas = [m.start() for m in re.finditer(r"fma\.rn\.f32\s", ptx)]
    under = [len([p for p in fmas if c < p < min(w for w, _ in waits if w > c)])
             for c in commits]
    # only the next tile's first K tile runs under something: the epilogue (its alpha FMAs)
    assert under.count(0) >= len(under) - 2 and 0 < under.count(0), under
    after = [len([p for p in fmas if w < p < min((c for c in commits if c > w),
                                                  default=len(ptx))]) for w, _ in waits]
    assert n // 2 in after, after
    res = art.resources[art.launches[0].entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def test_sass_runs_the_promotion_between_a_groups_issue_and_its_wait(artifacts):
    """In the SASS (what runs), some window from a WARPGROUP.ARRIVE to the next
    WARPGROUP.DEPBAR holds the group's QGMMA and the previous K tile's N/2 FFMA: the
    promotion issued while the tensor cores work (cuobjdump)."""
    for name, n in (("tile128", 128), ("bn64_bias_relu_f32", 64), ("odd", 128),
                    ("smem", 128), ("cluster_pers", 128), ("both_odd", 128)):
        sass = sass_of(artifacts[name].binary)
        windows = re.findall(r"WARPGROUP\.ARRIVE(.*?)WARPGROUP\.DEPBAR", sass, re.DOTALL)
        assert any(len(re.findall(r"\bQGMMA\.", w)) == 4 and len(re.findall(r"\bFFMA\b", w))
                   >= n // 2 for w in windows), name


def test_sass_keeps_groups_of_wgmma_in_flight(artifacts):
    """What ptxas does not always say: where it cannot tell a temporary's group complete
    before a read (e.g. a branch between wait_group 1 and the promotion's reads) it waits
    after every wgmma of the kernel (a WARPGROUP.DEPBAR per QGMMA) without a warning. So in
    the SASS, one DEPBAR per group of QGMMA at most, and with issue_ahead (3 K tiles or
    more) a DEPBAR.LE gsb0, 0x1: two groups in flight."""
    for name, art in artifacts.items():
        sass = sass_of(art.binary)
        mma = len(re.findall(r"\b[QH]GMMA\.", sass))
        waits = re.findall(r"WARPGROUP\.DEPBAR\.LE gsb0, (0x[01])", sass)
        assert mma and len(waits) <= mma // 2, (name, mma, len(waits))
        assert ("0x1" in waits) == _issues_ahead(name, art), (name, sorted(set(waits)))


def test_ptxas_keeps_the_block_wgmma_asynchronous(artifacts):
    """ptxas reports no serialized wgmma (C7514 / C7515: "wgmma.mma_async instructions are
    serialized ..."), which it does for a whole kernel where a non-wgmma instruction may read
    or write an accumulator whose group is in flight (the promotion overlapped with the next
    tile reads only a completed temporary)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from deepgen.toolchain import find_ptxas

    exe = find_ptxas()
    if exe is None:
        pytest.skip("ptxas not found (pip install nvidia-cuda-nvcc)")
    for name, art in artifacts.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "k.ptx"
            path.write_text(art.assembly)
            out = subprocess.run([str(exe), "-arch=sm_90a", "-v", str(path), "-o",
                                  str(Path(tmp) / "k.cubin")], capture_output=True, text=True,
                                 check=True)
        assert "serialized" not in out.stderr and "C751" not in out.stderr, (name, out.stderr)


def test_sass_has_qgmma_and_no_local_memory(artifacts):
    from test_wgmma import _check_sass

    _check_sass({k: v for k, v in artifacts.items() if k != "e5m2"},
                r"QGMMA\.64x(64|128|136|160|192)x32\.F32\.E4M3\.E4M3\b")
    _check_sass({"e5m2": artifacts["e5m2"]}, r"QGMMA\.64x128x32\.F32\.E5M2\.E5M2\b")


@pytest.mark.parametrize("name,bm,slabs", [("smem", 128, 1), ("both_odd", 128, 1),
                                           ("smem_m64", 64, 1)])
def test_smem_scales_staged_by_the_producer(artifacts, name, bm, slabs):
    """smem_scales: scale_a's descriptor the last param (a by-value grid constant over
    scale_a's ceil(K/128) x M, boxes of 1 x BM), the producer's one 2-D TMA load per stage
    beside the A and B boxes on the same full barrier, its expected bytes the stage's plus
    BM x 4, the shared memory one BM x 4 slot more per stage; the consumers read their 2 rows
    per slab from shared memory after the stage's wait (ld.shared, before the K tile's
    wgmma), and load only scale_b from global memory (one value per K tile)."""
    art = artifacts[name]
    main = art.launches[0]
    spec = art.spec if isinstance(art.spec, dict) else art.spec.to_dict()
    kb = -(-spec["K"] // 128)
    tma = main.params[-1]
    assert (tma.name, tma.kind, tma.operand, tma.shape, tma.box, tma.swizzle) == (
        "scale_a_tma", "tma", "scale_a", (kb, spec["M"]), (1, bm), 0)
    ptx = art.assembly
    last = len(main.params) - 1
    assert re.search(rf"\.param \.align 64 \.b8 deepgen_wgmma_gemm_param_{last}\[128\]", ptx)
    loads = re.findall(r"cp\.async\.bulk\.tensor\.(\d)d\.shared::cluster\.global\.tile", ptx)
    # one more in the producer's loop over narrow_column's strip pairs where the walk has
    # them (4096 x 2112 x 7168; not 1100 x 392 x 1040: 4 columns of 128, nor M = 60: no
    # clusters)
    strips = name == "smem"
    assert loads.count("2") == 1 + strips and loads.count("3") >= 2, loads
    cfg = art.config if isinstance(art.config, dict) else art.config.to_dict()
    stage = (bm + cfg["BN"]) * 128
    assert re.search(rf"\b{stage + 4 * bm}\b", ptx), stage + 4 * bm  # expect_tx bytes
    epilogue = 2 * 2 * 64 * cfg["epilogue_n"] * cfg["consumers"] if cfg["epilogue"] == "tma" else 0
    assert main.shared_bytes == cfg["stages"] * (stage + 4 * bm + 16) + epilogue
    commits = len(re.findall(r"wgmma\.commit_group\.sync\.aligned;", ptx))
    assert len(re.findall(r"ld\.shared\.[bf]32\s", ptx)) == 2 * slabs * commits
    assert len(re.findall(r"ld\.global(\.nc)?\.[bf]32\s", ptx)) == commits  # scale_b
    first_wait = ptx.index("mbarrier.try_wait.parity")
    first_mma = ptx.index("wgmma.mma_async")
    first_read = re.search(r"ld\.shared\.[bf]32\s", ptx).start()
    assert first_wait < first_read < first_mma


@pytest.mark.parametrize("name,bn", [("straddle", 136), ("straddle_global", 136),
                                     ("straddle_160", 160)])
def test_tiles_across_two_scale_blocks_pick_scale_b_per_chunk(artifacts, name, bn):
    """BN not dividing 128: m64nBNk32 wgmma; per K tile two scale_b loads (the tile's block and
    the next, clamped) and per chunk of q = gcd(BN, 128) columns that may lie in either block
    a select between their products with each row's scale_a (2 rows x (128 / q - 1) chunks
    per thread: the first chunk is always in the tile's block, chunks from 128 on always in
    the next), no spills, nothing serialized (C751x: the ptxas test above covers every
    artifact)."""
    art = artifacts[name]
    ptx = art.assembly
    assert re.search(rf"wgmma\.mma_async\.sync\.aligned\.m64n{bn}k32\.f32\.e4m3\.e4m3", ptx)
    commits = len(re.findall(r"wgmma\.commit_group\.sync\.aligned;", ptx))
    selects = len(re.findall(r"\bselp\.f32\b", ptx))
    assert selects >= 2 * (128 // math.gcd(bn, 128) - 1) * commits, (selects, commits)
    res = art.resources[art.launches[0].entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


@pytest.mark.parametrize("name", ["stagger", "stagger_odd"])
def test_stagger_holds_consumer_1_until_consumer_0s_first_group(artifacts, name):
    """stagger: one named barrier of both consumers (256 threads): consumer 1 waits on it
    (bar.sync) before its first K tile's wgmma, consumer 0 passes it (bar.arrive) after its
    first group's wait_group 0 (nothing in flight there); a kernel without stagger (both_odd:
    128 x 128 tiles, where the default does not stagger) has neither."""
    ptx = artifacts[name].assembly
    sync = [m.start() for m in re.finditer(r"bar\.sync \s*6, 256;", ptx)]
    arrive = [m.start() for m in re.finditer(r"bar\.arrive 6, 256;", ptx)]
    assert len(sync) == len(arrive) == 1, (sync, arrive)
    first_wait = ptx.index("wgmma.wait_group.sync.aligned")
    assert sync[0] < ptx.index("wgmma.mma_async") and first_wait < arrive[0]
    assert not artifacts["both_odd"].config["stagger"]
    assert not re.search(r"bar\.(sync|arrive) \s*6,", artifacts["both_odd"].assembly)


@pytest.mark.parametrize("name,grid", [("cluster_pers", 132), ("both_odd", 40)])
def test_persistent_clusters_walk_pairs_of_tiles(artifacts, name, grid):
    """Persistent 2x1 clusters: 2 x min(pairs of tiles, 66) CTAs in clusters of (2, 1, 1),
    B's half multicast from each CTA (multicast mask), the stage released in both CTAs
    (mapa + remote arrive), and the consumers' loop over the cluster's tiles."""
    art = artifacts[name]
    main = art.launches[0]
    assert (main.grid, main.cluster) == ((grid, 1, 1), (2, 1, 1))
    ptx = art.assembly
    assert re.search(r"cp\.async\.bulk\.tensor\.3d\.shared::cluster\.global\.tile"
                     r"\.mbarrier::complete_tx::bytes\.multicast::cluster", ptx)
    assert "mapa" in ptx and "barrier.cluster.wait" in ptx


# -- deepgen.gemm's block form ----------------------------------------------------------------

@pytest.fixture
def cpu(monkeypatch):
    monkeypatch.setattr(scaled, "_check_devices", lambda tensors: None)


E4 = torch.float8_e4m3fn


def test_block_spec_and_extras_follow_deepgemms_layout(cpu):
    M, N, K = 300, 200, 1000  # K blocks 8, N blocks 2
    a, w = torch.randn(M, K).to(E4), torch.randn(N, K).to(E4)
    sa_t = torch.rand(8, M)  # stored (K/128, M): the M-major (M, K/128) view
    sb = torch.rand(2, 8)
    spec = scaled.spec_for(a, w.t(), scale_a=sa_t.t(), scale_b=sb, out_dtype=torch.bfloat16)
    assert (spec.scale, spec.layout, spec.operand_shape("scale_a")) == ("block", "NT", (8, M))
    extra = scaled._extras(spec, None, sa_t.t(), sb)
    assert extra["scale_a"].data_ptr() == sa_t.data_ptr()  # no copy for M-major scales
    assert extra["scale_b"] is sb
    row_major = sa_t.t().contiguous()  # (M, K/128) row-major: copied into the kernel's layout
    extra = scaled._extras(spec, None, row_major, sb)
    assert extra["scale_a"].is_contiguous() and torch.equal(extra["scale_a"], sa_t)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(a=torch.randint(-9, 9, (300, 1000), dtype=torch.int8),
          b=torch.randint(-9, 9, (200, 1000), dtype=torch.int8).t(),
          scale_a=torch.rand(300, 8), scale_b=torch.rand(2, 8), out_dtype=torch.bfloat16),
     TypeError, r"^scale_a, scale_b: block scales are built for fp8 inputs"),
    (dict(a=torch.randn(300, 1000).to(E4), b=torch.randn(200, 1000).to(E4).t(),
          scale_a=torch.rand(300, 7), scale_b=torch.rand(2, 8), out_dtype=torch.bfloat16),
     ValueError, r"scale_a \(M, ceil\(K/128\)\) = \(300, 8\) and scale_b \(ceil\(N/128\), "
                 r"ceil\(K/128\)\) = \(2, 8\)"),
])
def test_block_arguments_are_checked(cpu, kwargs, error, message):
    a, b = kwargs.pop("a"), kwargs.pop("b")
    with pytest.raises(error, match=message):
        deepgen.gemm(a, b, **kwargs)


def test_torch_op_fake_takes_block_scales():
    a = torch.empty(300, 1000, dtype=E4, device="meta")
    b = torch.empty(200, 1000, dtype=E4, device="meta").t()
    out = torch.ops.deepgen.gemm(a, b, 1.0, None, "none", "col",
                                 torch.empty(300, 8, device="meta"),
                                 torch.empty(2, 8, device="meta"), torch.bfloat16)
    assert (tuple(out.shape), out.dtype) == ((300, 200), torch.bfloat16)


@pytest.mark.parametrize("M,N,K,stagger", [
    (4096, 2112, 7168, True), (2048, 4096, 7168, True), (3072, 2112, 7168, True),  # <= 3 rounds
    (2000, 4096, 1536, True),  # 8 pairs x 22 columns: 2.7 rounds
    (4096, 4096, 7168, False), (4096, 24576, 1536, False), (8192, 2112, 7168, False),
    (256, 2112, 7168, False),  # 128 x 128 tiles (two temporaries): not measured staggered
    (128, 2112, 7168, False)])  # one wave, a tile per CTA
def test_block_default_staggers_the_wide_tiles_walked_in_at_most_three_rounds(M, N, K, stagger):
    spec = GemmSpec(**{**BLOCK.to_dict(), "M": M, "N": N, "K": K})
    assert strategies.resolve(None, spec, H100).stagger is stagger


@pytest.mark.parametrize("M,N,K,config,prefetches", [
    # M = 64: one tile per CTA (its K slice); persistent pairs: the first tile, the next one
    # at each tile's end, and the same in the narrow strip's walk; BN 136: two rows of
    # scale_b per tile
    (64, 2112, 7168, {}, 1),
    (4096, 2112, 7168, {}, 3),
    (301, 392, 1040, {"BN": 136, "cluster_m": 1, "persistent": False}, 2),
])
def test_prefetch_scales_brings_each_tiles_scale_b_rows_into_l1(M, N, K, config, prefetches):
    """prefetch_scales: where a tile's first K tile is issued, a prefetch.global.L1 per row
    of scale_b the tile reads (a line per lane), at least `prefetches` sites in the PTX
    (CCTL.E.PF1 in the SASS); off, none; no local memory either way."""
    spec = GemmSpec(M=M, N=N, K=K, dtype="e4m3", out_dtype="bf16", layout="NT", scale="block")
    for on in (False, True):
        art = compile_artifact(spec, {"strategy": "wgmma", **config, "prefetch_scales": on},
                               "sm_90a", keep_ir=False)
        sites = len(re.findall(r"prefetch\.global\.L1\s", art.assembly))
        assert (sites >= prefetches) if on else sites == 0, (on, sites)
        assert ("CCTL.E.PF1" in sass_of(art.binary)) == on
        res = art.resources[art.launches[0].entry]
        assert res["spill_stores"] == res["stack_bytes"] == 0, res


def test_block_call_with_alpha_1_and_beta_0_takes_a_kernel_without_alpha_beta(cpu,
                                                                             monkeypatch):
    """deepgen.gemm's block form with alpha 1 and beta 0 (the defaults) asks for the spec
    whose chain has no alpha_beta step; any other alpha or beta, the chain with it; the
    per-call cache keeps the two apart; rowwise and per-tensor scales keep alpha_beta (per
    tensor, the scales are folded into alpha)."""
    asked = []

    class Fake:
        def __init__(self, spec):
            self.spec = spec

        def __call__(self, a, b, c, alpha, beta, **extra):
            asked.append((self.spec.scale, self.spec.epilogue.steps, alpha, beta))
            return c

    monkeypatch.setattr(scaled, "_target_of", lambda device: "sm_90a")
    monkeypatch.setattr(scaled, "kernel_for", lambda spec, config, target: Fake(spec))
    monkeypatch.setattr(scaled, "_by_call", {})
    M, N, K = 256, 256, 512
    a, w = torch.randn(M, K).to(E4), torch.randn(N, K).to(E4)
    sa, sb = torch.rand(M, 4) + 0.5, torch.rand(2, 4) + 0.5
    out = torch.empty(M, N, dtype=torch.bfloat16)
    for alpha, beta in ((1.0, 0.0), (1.0, 0.5), (2.0, 0.0), (1, 0)):
        deepgen.gemm(a, w.t(), out=out, scale_a=sa, scale_b=sb, alpha=alpha, beta=beta)
    deepgen.gemm(a, w.t(), out=out, scale_a=torch.rand(M, 1), scale_b=torch.rand(1, N))
    deepgen.gemm(a, w.t(), out=out, scale_a=torch.rand(()), scale_b=torch.rand(()))
    assert asked == [("block", (), 1.0, 0.0), ("block", ("alpha_beta",), 1.0, 0.5),
                     ("block", ("alpha_beta",), 2.0, 0.0), ("block", (), 1, 0),
                     ("rowwise", ("alpha_beta",), 1.0, 0.0),
                     ("tensor", ("alpha_beta",), 1.0, 0.0)]
    # block: one entry without alpha_beta ((1.0, 0.0) and (1, 0)), one with; rowwise, tensor
    assert len(scaled._by_call) == 4


def test_block_kernel_without_alpha_beta_reads_neither_c_nor_alpha_beta():
    """The block default compiled for the chain without alpha_beta: no 16-bit loads of C and
    no alpha / beta parameter read (with the step: both), no local memory."""
    spec = GemmSpec(M=256, N=256, K=512, dtype="e4m3", out_dtype="bf16", layout="NT",
                    scale="block")
    for steps in (("alpha_beta",), ()):
        art = compile_artifact(GemmSpec(**{**spec.to_dict(), "epilogue": {"steps": steps}}),
                               None, "sm_90a", keep_ir=False)
        c_loads = len(re.findall(r"ld\.global\.v2\.b16\s", art.assembly))
        f32_params = len(re.findall(r"ld\.param\.b32\s", art.assembly))
        assert (c_loads > 0 and f32_params == 2) if steps else (c_loads == f32_params == 0), \
            (steps, c_loads, f32_params)
        res = art.resources[art.launches[0].entry]
        assert res["spill_stores"] == res["stack_bytes"] == 0, res
    # with a bias and an activation after it (what a block call with bias= gets): no alpha /
    # beta read either, nothing spilled
    art = compile_artifact(GemmSpec(**{**spec.to_dict(), "epilogue": {"steps": ["bias_col",
                                                                             "relu"]}}),
                           None, "sm_90a", keep_ir=False)
    assert not re.findall(r"ld\.param\.b32\s", art.assembly)
    res = art.resources[art.launches[0].entry]
    assert res["spill_stores"] == res["stack_bytes"] == 0, res
