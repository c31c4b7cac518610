"""The wgmma strategy on the CPU (its GPU counterpart: tests/gpu/test_wgmma_gpu.py):
WgmmaConfig validation names the field and the limit; the default heuristic takes it only
where it was measured faster (enough output tiles, M >= 128, f16/bf16, NT/NN, TMA-alignable); its kernels compile to PTX with wgmma.mma_async, cp.async.bulk.tensor, mbarriers,
setmaxnreg, elect.sync and by-value grid-constant descriptors; ptxas assembles them without
spills; the SASS has HGMMA, UTMALDG and SYNCS and no local memory (cuobjdump); the artifact's
signature holds the TMA params the runtime encodes."""
from __future__ import annotations

import re

import pytest
from sass_text import sass_of

from deepgen.compiler import compile_artifact, strategies
from deepgen.compiler.strategies.wgmma import WgmmaConfig
from deepgen.compiler.strategies.wgmma.config import tile_bytes
from deepgen.compiler.target import get_target
from deepgen.spec import GemmSpec, SpecError

H100 = get_target("sm_90a")
NT = GemmSpec(M=512, N=512, K=512, dtype="bf16", layout="NT")
NN = GemmSpec(M=512, N=512, K=512, dtype="f16", layout="NN")
SWAP16 = GemmSpec(M=16, N=4096, K=4096, dtype="bf16", layout="NT")  # a decode shape
TF32 = GemmSpec(M=512, N=512, K=512, dtype="f32", allow_tf32=True, layout="NT")
PP = {"mode": "pingpong", "consumers": 2, "persistent": True}


def _validate(spec=NT, target=H100, **fields):
    strategies.resolve({"strategy": "wgmma", **fields}, spec, target)


@pytest.mark.parametrize("fields,spec,target,message", [
    ({"BM": 96}, NT, H100, r"^BM: must be a multiple of consumers x 64 = 64"),
    ({"BM": 128, "consumers": 2, "BN": 64}, NT, H100, None),
    ({"BM": 64, "consumers": 2}, NT, H100, r"^BM: .*consumers x 64 = 128"),
    ({"BM": 512, "consumers": 2}, NT, H100, r"^BM: A's TMA box has BM rows: at most 256"),
    ({"BN": 264}, NT, H100, r"^BN: the wgmma N: a multiple of 8 from 8 to 256"),
    ({"BN": 100}, NT, H100, r"^BN: the wgmma N: a multiple of 8"),
    ({"BN": 96}, NN, H100, r"^BN: .*multiple of 64 .*layout NN"),
    ({"BK": 32}, NT, H100, r"^BK: one 128-byte swizzle span: 64 bf16 elements"),
    ({"stages": 17}, NT, H100, r"^stages: must be 2 to 16"),
    ({"BN": 256, "consumers": 2, "stages": 5}, NT, H100,
     r"^stages: 5 stages of 49152 bytes .* exceed the 232448 bytes of shared memory"),
    ({"consumers": 3, "BM": 192}, NT, H100, r"^consumers: 1 or 2"),
    ({"consumer_registers": 236}, NT, H100, r"^consumer_registers: setmaxnreg takes a multiple of 8"),
    ({"BN": 256, "consumers": 2, "consumer_registers": 248}, NT, H100,
     r"^consumer_registers: 1 CTA\(s\) per SM: 128 x \(40 \+ 2 x 248\) = 68608 registers "
     r"exceed the 384 x 168 = 64512 a CTA of 384 threads holds"),
    # two consumers at two CTAs per SM: 80 registers per thread, 240 per 128 threads
    ({"BM": 128, "BN": 64, "consumers": 2, "ctas_per_sm": 2, "stages": 3,
      "consumer_registers": 104}, NT, H100,
     r"^consumer_registers: 2 CTA\(s\) per SM: 128 x \(40 \+ 2 x 104\) = 31744 registers "
     r"exceed the 384 x 80 = 30720"),
    ({"ctas_per_sm": 2}, NT, H100, r"^consumer_registers: 2 CTA\(s\)"),
    ({"ctas_per_sm": 2, "consumer_registers": 216}, NT, H100,
     r"^ctas_per_sm: .* shared memory exceed the 233472 of an SM"),
    ({"ctas_per_sm": 2, "consumer_registers": 216, "stages": 3}, NT, H100, None),
    ({"mode": "pingpong"}, NT, H100, r"^consumers: mode 'pingpong' takes turns between 2 "),
    ({"mode": "pingpong", "consumers": 2}, NT, H100, r"^persistent: mode 'pingpong' walks a "),
    ({"mode": "spin"}, NT, H100, r"^mode: must be one of \('cooperative', 'pingpong'\)"),
    ({**PP, "cluster_m": 2}, NT, H100, r"^cluster_m: mode 'pingpong' with clusters"),
    ({**PP, "ctas_per_sm": 2}, NT, H100, r"^ctas_per_sm: mode 'pingpong' .*: 1, got 2"),
    ({**PP, "swap_ab": True}, NT, H100, r"^swap_ab: mode 'pingpong' with swap_ab: not built"),
    ({**PP, "split_k": 2}, NT, H100, r"^split_k: split_k 2 with the persistent grid"),
    ({**PP, "BM": 96}, NT, H100, r"^BM: mode 'pingpong': one warpgroup's tile rows, a multiple "
                                 r"of 64"),
    ({**PP, "BM": 128, "BN": 256}, NT, H100,
     r"^BN: 2 slab\(s\) x BN/2 = 256 accumulator registers"),
    ({**PP, "BM": 128, "BN": 128, "stages": 7}, NT, H100, None),
    ({**PP, "BM": 128, "BN": 128, "stages": 8}, NT, H100, r"^stages: 8 stages of 32768 bytes"),
    ({**PP, "BM": 64, "BN": 256, "stages": 5}, NN, H100, None),
    ({"cluster_m": 2}, NT, H100, None),
    # 1x2 clusters: A's tile halves (BM/2 rows K-major, or BM/64 boxes MN-major) multicast
    ({"cluster_n": 2}, NT, H100, None),
    ({"cluster_n": 2, "BM": 64}, NT, H100, None),  # 32-row halves: whole swizzle atoms
    ({"cluster_n": 2, "BM": 64}, GemmSpec(M=512, N=512, K=512, dtype="bf16", layout="TN"), H100,
     r"^BM: a 1x2 cluster multicasts half of A from each CTA: BM/2 must be a multiple of 8 "
     r"\(A K-major: .*\) or BM a multiple of 128 \(A MN-major: boxes of 64\), got 64"),
    ({"cluster_n": 2, "BM": 64, "swap_ab": True}, NN, H100,
     r"^BM: a 1x2 cluster multicasts half of B from each CTA"),  # swapped: wgmma's A is B
    ({"cluster_n": 3}, NT, H100, r"^cluster_n: 1 or 2 \(clusters 1x1, 2x1 and 1x2 are built\), "
                                 r"got 3"),
    ({"cluster_m": 2, "cluster_n": 2}, NT, H100,
     r"^cluster_n: cluster_m x cluster_n <= 2 \(1x1, 2x1 and 1x2 are built\), got 2x2"),
    ({"cluster_n": 2, "persistent": True}, NT, H100, r"^persistent: clusters with the "),
    ({**PP, "cluster_n": 2}, NT, H100, r"^cluster_n: mode 'pingpong' with clusters: not built "
                                       r"\(1x1 only\), got 1x2"),
    ({"split_k": 2, "cluster_n": 2}, NT, H100, r"^split_k: .* or clusters: not built"),
    ({"cluster_m": 2, "persistent": True}, NT, H100, r"^persistent: clusters with the "),
    ({"cluster_m": 2, "BN": 64}, NN, H100, r"^BN: a 2x1 cluster multicasts half of B"),
    ({"persistent": True}, NT, H100, None),
    ({"split_k": 8}, NT, H100, None),  # 8 slices of one K tile each
    ({"split_k": 5}, NT, H100, r"^split_k: 5 slices of 2 K tiles leave the last one empty: "
                               r"K=512 has 8 tiles of BK=64"),
    ({"split_k": 2, "persistent": True}, NT, H100, r"^split_k: split_k 2 with the persistent"),
    ({"split_k": 2, "cluster_m": 2}, NT, H100, r"^split_k: .* or clusters: not built"),
    ({"swap_ab": True, "BN": 16}, NT, H100, None),
    ({"swap_ab": True}, NN, H100, None),  # B MN-major as wgmma's A: its transpose bit
    ({"swap_ab": True, "BN": 12}, NT, H100,
     r"^BN: the wgmma N: a multiple of 8 from 8 to 256 \(swap_ab: BN runs over M\), got 12"),
    ({"swap_ab": True, "BN": 32}, GemmSpec(M=32, N=64, K=64, dtype="bf16", layout="TT"), H100,
     r"^BN: the wgmma N: a multiple of 64 .*layout TT: B MN-major"),
    ({}, NT, get_target("sm_90"), r"^strategy: wgmma needs sm_90a"),
    # tf32: f32 inputs with allow_tf32, layout NT only (no transpose bits), BK = 32 f32
    ({}, TF32, H100, None),
    ({}, GemmSpec(M=64, N=64, K=64, dtype="f32", layout="NT"), H100,
     r"^dtype: .*f16, bf16, fp8 \(e4m3, e5m2\), int8, or f32 as tf32 \(allow_tf32=True\), got f32 "
     r"without allow_tf32"),
    ({}, GemmSpec(M=64, N=64, K=64, dtype="f32", allow_tf32=True, layout="NN"), H100,
     r"^layout: tf32 wgmma reads only K-major operands \(A stored M x K, B stored N x K: "
     r"layout NT\), got layout NN"),
    ({"swap_ab": True}, GemmSpec(M=64, N=64, K=64, dtype="f32", allow_tf32=True,
                                 layout="TT"), H100, r"^layout: tf32 wgmma reads only K-major"),
    ({"BK": 64}, TF32, H100, r"^BK: one 128-byte swizzle span: 32 f32 elements .*got 64"),
    ({"BN": 256, "consumers": 2, "stages": 5}, TF32, H100,
     r"^stages: 5 stages of 49152 bytes .* exceed the 232448 bytes"),
    ({}, GemmSpec(M=64, N=64, K=66, dtype="f32", allow_tf32=True, layout="NT"), H100,
     r"^layout: TMA needs 16-byte-aligned row strides: rows of A .* 66 f32 elements = 264 "
     r"bytes"),
    ({}, GemmSpec(M=64, N=64, K=64, dtype="bf16", layout="TN"), H100, None),
    ({"BN": 96}, GemmSpec(M=64, N=64, K=64, dtype="bf16", layout="TN"), H100,
     r"^BN: the wgmma N: a multiple of 64 .*layout TN: B MN-major"),
    # TMA needs 16-byte row pitches: K = 33 bf16 in a K-major operand cannot be loaded
    ({}, GemmSpec(M=64, N=64, K=33, dtype="bf16", layout="NT"), H100,
     r"^layout: TMA needs 16-byte-aligned row strides: rows of A .* 33 bf16 elements = 66 "
     r"bytes"),
    ({}, GemmSpec(M=64, N=127, K=64, dtype="f16", layout="NN"), H100,
     r"^layout: TMA needs 16-byte-aligned row strides: rows of B"),
])
def test_validation_names_the_field_and_the_limit(fields, spec, target, message):
    if message is None:
        _validate(spec, target, **fields)
        return
    with pytest.raises(SpecError, match=message):
        _validate(spec, target, **fields)


def test_the_default_only_where_measured_faster():
    assert strategies.get("wgmma").config_class is WgmmaConfig
    big = GemmSpec(M=4096, N=4096, K=4096, dtype="bf16")
    for spec in (NT, NN, GemmSpec(M=512, N=4096, K=4096, dtype="bf16", layout="TN"),  # tiles
                 GemmSpec(M=16, N=4096, K=4096, dtype="bf16", layout="TN"),  # swap: not measured
                 GemmSpec(M=16, N=2048, K=4096, dtype="bf16", layout="NT"),  # N < 4096
                 GemmSpec(M=16, N=4096, K=4096, batch=2, dtype="bf16"),  # batched decode
                 GemmSpec(M=1, N=4096, K=4096, dtype="bf16", layout="NN"),  # M < 2
                 GemmSpec(M=3, N=28672, K=4096, dtype="bf16", layout="NT"),  # gemv's
                 GemmSpec(M=4096, N=4100, K=4096, dtype="bf16", layout="NN"),  # TMA: N*2 % 16
                 GemmSpec(M=4096, N=4096, K=4096, dtype="f32")):
        assert strategies.choose(spec, H100).name != "wgmma", spec
        assert strategies.default_config(spec, H100).strategy != "wgmma", spec
    # the large tile: ping-pong 128 x 128 per warpgroup where K <= PINGPONG_MAX_K in the
    # measured layouts (NT, NN), 128 x 192 up to WIDE_PINGPONG_MAX_K, else the cooperative
    # 128 x 256
    pingpong = WgmmaConfig(BM=128, BN=128, consumers=2, mode="pingpong", persistent=True,
                           stages=7)
    wide = pingpong.replace(BN=192, stages=5)
    coop = WgmmaConfig(BN=256, consumers=2)
    # with the TMA epilogue where measured faster (config.PINGPONG_TMA, COOPERATIVE_TMA): its
    # buffers take the ping-pong ring's 7th stage; C in f32 or of an odd row pitch keeps direct
    pp_tma = pingpong.replace(epilogue="tma", epilogue_n=64, stages=6)
    coop_tma = coop.replace(epilogue="tma", epilogue_n=32)
    for spec, want in ((big, pp_tma),
                       (GemmSpec(M=2048, N=14336, K=4096, dtype="f16", layout="NT"), pp_tma),
                       (GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", out_dtype="f32"),
                        pingpong),
                       (GemmSpec(M=4096, N=4104, K=4096, dtype="bf16", layout="NT"), pp_tma),
                       (GemmSpec(M=4096, N=4100, K=4096, dtype="bf16", layout="NT"), pingpong),
                       (GemmSpec(M=512, N=512, K=512, batch=64, dtype="bf16"),
                        pingpong.replace(stages=4)),  # a short K loop: 4 stages
                       (GemmSpec(M=2048, N=4096, K=14336, dtype="bf16"), coop_tma),
                       (GemmSpec(M=8192, N=8192, K=8192, dtype="f16", layout="NT"), wide),
                       (GemmSpec(M=4096, N=4096, K=8200, dtype="bf16"), coop_tma),
                       (GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="TN"), coop),
                       (GemmSpec(M=8192, N=8192, K=8192, dtype="f16", layout="TT"), coop)):
        assert strategies.default_config(spec, H100) == want, spec
        assert strategies.default_config(spec, get_target("sm_80")).strategy == "mma_sync"
    mid = {(1024, 1024): WgmmaConfig(BM=64, BN=128, consumers=2, mode="pingpong",
                                     persistent=True, stages=6),
           (256, 14336): WgmmaConfig(),
           (1024, 4096): pp_tma}
    for (m, n), want in mid.items():
        assert strategies.default_config(GemmSpec(M=m, N=n, K=4096, dtype="bf16"), H100) == want
    # decode sizes, M = 8..128 against N, K >= 4096 (NT and NN): swap_ab with split-K to a
    # wave; a split of 2 summed in 2-CTA clusters, where 128-row tiles would split 4, 64-row
    # tiles split 2 in clusters (M > 32: with the deep ring); 64-row tiles without a split
    # (deep ring) where they alone make a wave (M <= 32: of at least 100 CTAs) and K <= 8192
    swap = {(16, 4096, 4096, "NT"): (64, 16, 8, 2, "cluster"),
            (8, 14336, 4096, "NN"): (128, 8, 8, 1, "workspace"),
            (16, 8192, 8192, "NT"): (64, 16, 16, 1, "workspace"),
            (16, 6144, 4096, "NT"): (128, 16, 8, 2, "cluster"),
            (128, 4096, 4096, "NN"): (64, 128, 9, 1, "workspace"),
            (64, 8192, 8192, "NN"): (64, 64, 14, 1, "workspace"),
            (64, 10240, 8192, "NN"): (128, 64, 6, 1, "workspace"),
            (128, 28672, 4096, "NN"): (128, 128, 5, 1, "workspace"),
            (64, 8192, 28672, "NT"): (128, 64, 6, 2, "cluster"),
            (100, 4096, 14336, "NT"): (64, 104, 10, 2, "cluster"),
            (32, 4096, 14336, "NT"): (64, 32, 8, 2, "cluster")}
    for (m, n, k, layout), (bm, bn, stages, split, reduce) in swap.items():
        spec = GemmSpec(M=m, N=n, K=k, dtype="bf16", layout=layout)
        assert strategies.choose(spec, H100).name == "wgmma", spec
        want = WgmmaConfig(BM=bm, BN=bn, stages=stages, split_k=split, swap_ab=True,
                           reduce=reduce)
        assert strategies.default_config(spec, H100) == want, spec
    # 32 < M <= 128, NT, K <= 8192: the narrow non-swapped tile, N / 132 columns rounded up to
    # 16 (one wave), 64 rows (M <= 64) or 128 with 2 consumers, the deep ring, no split
    # (M > 64 with at least 48 columns: 64-row tiles of twice the columns in 2x1 clusters)
    narrow = {(64, 4096, 4096): (64, 32, 1, 16, 1), (128, 4096, 4096): (128, 32, 2, 11, 1),
              (128, 6144, 4096): (64, 96, 1, 11, 2), (128, 10240, 8192): (64, 160, 1, 8, 2),
              (96, 28672, 4096): (128, 224, 2, 5, 1), (64, 28672, 4096): (64, 224, 1, 6, 1)}
    for (m, n, k), (bm, bn, consumers, stages, cluster) in narrow.items():
        spec = GemmSpec(M=m, N=n, K=k, dtype="bf16", layout="NT")
        assert strategies.default_config(spec, H100) == WgmmaConfig(
            BM=bm, BN=bn, consumers=consumers, stages=stages, cluster_m=cluster), spec
    # M <= 32, NT, one to two waves of 128-row swap_ab tiles: two CTAs per SM, one wave
    two = strategies.default_config(GemmSpec(M=16, N=28672, K=4096, dtype="bf16", layout="NT"),
                                    H100)
    assert two == WgmmaConfig(BN=16, stages=6, swap_ab=True, ctas_per_sm=2,
                              consumer_registers=216)
    assert strategies.default_config(GemmSpec(M=16, N=28672, K=4096, dtype="bf16", layout="NN"),
                                     H100).ctas_per_sm == 1
    # not past K = 8192 nor past N = 224 x 132 (swap_ab's rules there)
    assert strategies.default_config(GemmSpec(M=64, N=57344, K=8192, dtype="bf16", layout="NT"),
                                     H100).swap_ab
    assert strategies.default_config(GemmSpec(M=128, N=8192, K=28672, dtype="bf16",
                                              layout="NT"), H100).swap_ab
    # enough 128x256 tiles at M = 128: the first tile rule stays (measured 1.02x vs 0.98x)
    assert strategies.default_config(GemmSpec(M=128, N=57344, K=8192, dtype="bf16",
                                              layout="NT"), H100) == WgmmaConfig(BN=256,
                                                                                 consumers=2)
    # gemv keeps M = 1, and M = 2, 3 against N > 16384; swap_ab takes the other M = 2..4
    assert strategies.choose(GemmSpec(M=1, N=4096, K=4096, dtype="bf16", layout="NT"),
                             H100).name == "gemv"
    assert strategies.default_config(GemmSpec(M=2, N=4096, K=4096, dtype="bf16", layout="NT"),
                                     H100) == WgmmaConfig(BM=64, BN=8, stages=8, split_k=2,
                                                          swap_ab=True, reduce="cluster")
    cfg = strategies.resolve({"strategy": "wgmma", "BN": 256, "consumers": 2}, NT, H100)
    assert cfg == WgmmaConfig(BN=256, consumers=2)
    # where the default is ping-pong, fields naming the kernel's shape without a mode complete
    # the cooperative default; other fields complete the ping-pong default
    coop = strategies.resolve({"strategy": "wgmma", "BN": 256, "consumers": 2}, big, H100)
    assert coop == WgmmaConfig(BN=256, consumers=2, stages=4)
    assert strategies.resolve({"strategy": "wgmma", "persistent": True}, big, H100) == \
        WgmmaConfig(BN=256, consumers=2, persistent=True)
    assert strategies.resolve({"strategy": "wgmma", "stages": 5}, big, H100) == \
        pp_tma.replace(stages=5)
    # fields the default's TMA epilogue cannot take drop it (an explicit epilogue keeps it)
    assert strategies.resolve({"strategy": "wgmma", "stages": 7}, big, H100) == pingpong
    with pytest.raises(SpecError, match=r"^stages: 7 stages .* TMA epilogue buffers"):
        _validate(big, epilogue="tma", stages=7)
    k14 = GemmSpec(M=2048, N=4096, K=14336, dtype="bf16")
    assert strategies.resolve({"strategy": "wgmma", "split_k": 2}, k14, H100) == \
        coop.replace(split_k=2)
    assert WgmmaConfig.from_dict(cfg.to_dict()) == cfg
    assert strategies.get("wgmma").serves(NT, H100)
    assert not strategies.get("wgmma").serves(NT, get_target("sm_80"))
    with pytest.raises(SpecError, match="^stagez: not a wgmma config field"):
        _validate(stagez=3)


@pytest.fixture(scope="module")
def artifacts():
    return {
        "nt": compile_artifact(NT, {"strategy": "wgmma"}, "sm_90a", keep_ir=False),
        "nn_c2": compile_artifact(NN, {"strategy": "wgmma", "BN": 256, "consumers": 2},
                                  "sm_90a", keep_ir=False),
        "nt_split4": compile_artifact(NT, {"strategy": "wgmma", "split_k": 4}, "sm_90a",
                                      keep_ir=False),
        "swap_m16_split4": compile_artifact(SWAP16, {"strategy": "wgmma", "swap_ab": True,
                                                     "split_k": 4}, "sm_90a", keep_ir=False),
        "pp": compile_artifact(GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="NN"),
                               {"strategy": "wgmma", **PP, "BM": 128, "BN": 128, "stages": 6,
                                "epilogue": "direct"},
                               "sm_90a", keep_ir=False),
    }


@pytest.mark.parametrize("name", ["nt", "nn_c2"])
def test_ptx_has_wgmma_tma_mbarriers_and_grid_constant_descriptors(artifacts, name):
    art = artifacts[name]
    ptx = art.assembly
    entry = art.launches[0].entry
    for index in (0, 1):  # A's and B's descriptors: by-value 128-byte __grid_constant__
        assert f".param .align 64 .b8 {entry}_param_{index}[128]" in ptx
    n = 128 if name == "nt" else 256
    dtype = "bf16" if name == "nt" else "f16"
    mma = re.findall(rf"wgmma\.mma_async\.sync\.aligned\.m64n{n}k16\.f32\.{dtype}\.{dtype} "
                     r"\{[^}]*\}, %rd\d+, %rd\d+, (p|\d), 1,\s*1, (\d),\s*(\d);", ptx)
    slabs = 2 if name == "nt" else 1
    assert len(mma) == 2 * 4 * slabs  # the peeled first K tile and the loop, 4 k-steps each
    # transpose bits: A K-major; B K-major (NT) or MN-major (NN)
    assert {(ta, tb) for _, ta, tb in mma} == {("0", "0" if name == "nt" else "1")}
    for needle in ("wgmma.fence.sync.aligned", "wgmma.commit_group.sync.aligned",
                   "wgmma.wait_group.sync.aligned \t1", "wgmma.wait_group.sync.aligned \t0",
                   "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx",
                   "mbarrier.init.shared.b64", "mbarrier.arrive.expect_tx.shared.b64",
                   "mbarrier.try_wait.parity.shared.b64", "mbarrier.arrive.shared.b64",
                   "setmaxnreg.dec.sync.aligned.u32 \t40", "setmaxnreg.inc.sync.aligned.u32 \t232",
                   "elect.sync", ".extern .shared .align 1024 .b8", ".minnctapersm 1",
                   "fence.proxy.async.shared::cta"):
        assert needle in ptx, needle
    threads = 256 if name == "nt" else 384
    assert re.search(rf"\.(maxntid|reqntid) {threads}, 1, 1", ptx)
    res = art.resources[entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def test_signature_has_the_tma_params_the_runtime_encodes(artifacts):
    nt, nn = artifacts["nt"].launches[0], artifacts["nn_c2"].launches[0]
    assert [p.kind for p in nt.params] == ["tma", "tma", "ptr", "f32", "f32"]
    a, b = nt.params[:2]
    assert (a.operand, a.shape, a.box, a.swizzle) == ("A", ("batch", "M", "K"), (1, 128, 64), 128)
    assert (b.operand, b.shape, b.box) == ("B", ("batch", "N", "K"), (1, 128, 64))
    nb = nn.params[1]  # B stored (K, N): boxes of 64 k-rows by one 128-byte span of columns
    assert (nb.shape, nb.box) == (("batch", "K", "N"), (1, 64, 64))
    assert nt.block == (256, 1, 1) and nn.block == (384, 1, 1)
    assert nt.grid == (16, 1, 1) and nn.grid == (8, 1, 1)
    assert nt.shared_bytes == 4 * 32768 + 64 and nn.shared_bytes == 4 * 49152 + 64
    assert artifacts["nt"].config["strategy"] == "wgmma"


def test_split_k_writes_partials_to_the_workspace_and_launches_the_shared_reduce():
    """split_k: grid z = batch x slices, each CTA's K slice from its z; the main kernel takes
    W instead of C/alpha/beta/bias; deepgen-split-k's reduce (the one mma_sync and gemv use)
    is the second launch and applies the epilogue chain."""
    from deepgen.compiler.passes import split_k as SK

    spec = GemmSpec(M=130, N=192, K=1000, batch=2, dtype="f16", layout="NN",
                    epilogue={"steps": ["alpha_beta", "bias_row", "silu"]})
    art = compile_artifact(spec, {"strategy": "wgmma", "split_k": 3, "BN": 64}, "sm_90a",
                           keep_ir=False)
    main, red = art.launches
    assert main.grid == (2 * 3, 1, 2 * 3) and main.entry == "deepgen_wgmma_gemm"
    assert [p.kind for p in main.params] == ["tma", "tma", "workspace"]
    assert red == SK.reduce_launch(spec) and red.entry == "deepgen_splitk_reduce"
    assert [p.name for p in red.params] == ["W", "C", "alpha", "beta", "bias"]
    assert art.workspace_bytes == 2 * 3 * 130 * 192 * 4
    ptx = art.assembly
    assert ".entry deepgen_wgmma_gemm" in ptx and ".entry deepgen_splitk_reduce" in ptx
    main_ptx = ptx.split("deepgen_splitk_reduce")[0]
    # three parameters: the two descriptors and W (no C, alpha, beta or bias)
    assert "deepgen_wgmma_gemm_param_2" in main_ptx
    assert "deepgen_wgmma_gemm_param_3" not in main_ptx
    assert re.search(r"st\.global\.v2\.(f32|b32)", main_ptx)  # raw partial pairs into W
    assert "ex2.approx" not in main_ptx  # silu (the epilogue) runs in the reduce only
    assert "ex2.approx" in ptx.split("deepgen_splitk_reduce", 1)[1]
    for entry, res in art.resources.items():
        assert res["spill_stores"] == res["stack_bytes"] == 0, (entry, res)
    # the 128 x 4096 x 4096 target: 32 tiles x 4 slices of 16 K tiles
    big = compile_artifact(GemmSpec(M=128, N=4096, K=4096, dtype="bf16", layout="NT"),
                           {"strategy": "wgmma", "swap_ab": True, "split_k": 4, "BM": 128,
                            "reduce": "workspace"}, "sm_90a", keep_ir=False)
    assert big.launches[0].grid == (32, 1, 4) and big.workspace_bytes == 4 * 128 * 4096 * 4


@pytest.mark.parametrize("fields, message", [
    ({"split_k": 2, "reduce": "atomic"}, r"^reduce: must be one of \('workspace', 'cluster'\), "
                                         r"got 'atomic'"),
    ({"split_k": 9, "BN": 64, "reduce": "cluster"},
     r"^split_k: reduce 'cluster': the split_k CTAs of a tile form one cluster, at most 8 "
     r"\(portable\), got 9"),
])
def test_cluster_reduce_validation_names_the_field_and_the_limit(fields, message):
    spec = GemmSpec(M=128, N=512, K=4608, dtype="bf16", layout="NT")  # 72 K tiles
    with pytest.raises(SpecError, match=message):
        _validate(spec, **fields)


@pytest.mark.parametrize("given, spec, groups", [
    # swap_ab at M = 128: two 64-row slabs of n128, 128 registers = 32 groups per thread
    ({"swap_ab": True, "split_k": 4}, GemmSpec(M=128, N=4096, K=4096, dtype="bf16",
                                               layout="NT"), 32),
    # two consumers on 128 x 256, split 3 of 32 groups (shares of 10, 11, 11)
    ({"BN": 256, "consumers": 2, "split_k": 3},
     GemmSpec(M=256, N=512, K=2048, dtype="f16", layout="NN",
              epilogue={"steps": ["alpha_beta", "bias_col", "silu"]}), 32),
])
def test_cluster_reduce_sums_the_slices_in_one_launch(given, spec, groups):
    """reduce "cluster": the split_k CTAs of a tile are one cluster along grid z; one launch
    with C, alpha, beta (and bias) as without split-K, no workspace; each CTA stashes its
    accumulator (16-byte shared stores, one per register group), then after a cluster
    barrier (the producer's and the consumers') loops over its share of the groups, loading
    each from every CTA (mapa + ld.shared::cluster: one load per CTA in the loop body), and
    runs the epilogue chain (the silu in this kernel); a final cluster barrier keeps every
    CTA's shared memory until its peers are done; no local memory."""
    from deepgen.compiler.strategies.wgmma.kernel import _Stash

    cfg = strategies.resolve({"strategy": "wgmma", "reduce": "cluster", **given}, spec, H100)
    art = compile_artifact(spec, cfg, "sm_90a", keep_ir=False)
    split = cfg.split_k
    (main,) = art.launches
    assert main.cluster == (1, 1, split) and main.grid[2] == spec.batch * split
    assert art.workspace_bytes == 0
    names = [p.name for p in main.params]
    assert names[2:5] == ["C", "alpha", "beta"] and ("bias" in names) == bool(spec.epilogue.bias)
    assert _Stash(cfg).groups == groups
    ptx = art.assembly
    assert len(re.findall(r"ld\.shared::cluster\.v4\.(f32|b32)", ptx)) == split
    assert len(re.findall(r"\bst\.shared\.v4\.(f32|b32)", ptx)) == groups
    assert ptx.count("barrier.cluster.arrive") == 3 and "mapa.shared::cluster" in ptx
    assert "deepgen_splitk_reduce" not in ptx
    assert ("ex2.approx" in ptx) == ("silu" in spec.epilogue.steps)
    for entry, res in art.resources.items():
        assert res["spill_stores"] == res["stack_bytes"] == 0, (entry, res)
    # the stash reuses the drained ring: shared memory as without it where the ring is larger
    assert cfg.stages * sum(tile_bytes(cfg, spec)) >= cfg.BM * cfg.BN * 4
    assert main.shared_bytes == cfg.replace(reduce="workspace").replace(
        split_k=split).stages * sum(tile_bytes(cfg, spec)) + 16 * cfg.stages


def test_swap_ab_puts_n_on_wgmma_m_and_m_on_its_n(artifacts):
    """swap_ab at M = 16: descriptor 0 (wgmma's A) is B's, 128 rows of N by BK; descriptor 1
    is A's, 16 rows of M (the TMA box may pass M: zero fill); m64n16k16 with both operands
    K-major; 32 tiles of N x 4 K slices; the transposed partials go to W one element per
    store (neighbouring accumulator columns are neighbouring rows of C)."""
    art = artifacts["swap_m16_split4"]
    main, red = art.launches
    a, b = main.params[:2]
    assert (a.operand, a.shape, a.box) == ("B", ("batch", "N", "K"), (1, 128, 64))
    assert (b.operand, b.shape, b.box) == ("A", ("batch", "M", "K"), (1, 16, 64))
    assert main.grid == (32, 1, 4) and red.entry == "deepgen_splitk_reduce"
    assert art.config["swap_ab"] and art.config["BN"] == 16
    main_ptx = art.assembly.split("deepgen_splitk_reduce")[0]
    mma = re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k16\.f32\.bf16\.bf16 "
                     r"\{[^}]*\}, %rd\d+, %rd\d+, (?:p|\d), 1,\s*1, (\d),\s*(\d);", main_ptx)
    assert mma and {m for m in mma} == {("16", "0", "0")}
    assert re.search(r"st\.global\.(f32|b32)", main_ptx)
    assert not re.search(r"st\.global\.v2", main_ptx)
    # every decode shape gets a tile of its M and a split that fills the SMs, validated
    cfg = strategies.resolve({"strategy": "wgmma", "swap_ab": True}, SWAP16, H100)
    assert (cfg.BM, cfg.BN, cfg.split_k) == (128, 16, 4)
    two = strategies.resolve({"strategy": "wgmma", "swap_ab": True, "ctas_per_sm": 2},
                             GemmSpec(M=64, N=14336, K=4096, dtype="bf16", layout="NT"), H100)
    assert (two.BN, two.split_k, two.consumer_registers) == (64, 2, 216)


def test_swap_ab_epilogue_maps_the_bias_and_stores_transposed():
    """Without split-K the swapped kernel applies the chain itself: a bias per column of C
    is read at the accumulator's row (n); C is read with beta (layout TT: A, wgmma's B, is
    MN-major: its transpose bit set, boxes of 64 columns of M)."""
    spec = GemmSpec(M=100, N=520, K=256, dtype="bf16", layout="NT",
                    epilogue={"steps": ["alpha_beta", "bias_col", "gelu_tanh"]})
    art = compile_artifact(spec, {"strategy": "wgmma", "swap_ab": True, "split_k": 1},
                           "sm_90a", keep_ir=False)
    (main,) = art.launches
    assert [p.name for p in main.params] == ["B", "A", "C", "alpha", "beta", "bias"]
    assert main.grid == (5, 1, 1) and art.config["BN"] == 104
    assert "m64n104k16" in art.assembly and art.workspace_bytes == 0
    tt = compile_artifact(GemmSpec(M=136, N=300, K=200, dtype="f16", layout="TT"),
                          {"strategy": "wgmma", "swap_ab": True}, "sm_90a", keep_ir=False)
    (launch,) = tt.launches
    # BN at most 128 (two slabs' accumulators): M = 136 takes two tiles of columns
    assert launch.params[1].box == (1, 64, 64) and tt.config["BN"] == 128
    assert launch.grid == (3 * 2, 1, 1)
    bits = set(re.findall(r"m64n128k16\.f32\.f16\.f16 \{[^}]*\}, %rd\d+, %rd\d+, "
                          r"(?:p|\d), 1,\s*1, (\d),\s*(\d);", tt.assembly))
    assert bits == {("0", "1")}
    for a in (art, tt):
        res = a.resources[launch.entry]
        assert res["spill_stores"] == res["stack_bytes"] == 0, res


@pytest.mark.parametrize("layout,given,bits,a_box", [
    ("TN", {"BN": 256, "consumers": 2}, ("1", "1"), (1, 64, 64)),  # both MN-major
    ("TT", {}, ("1", "0"), (1, 64, 64)),
    ("NN", {"swap_ab": True}, ("1", "0"), (1, 64, 64)),  # B (K x N) as wgmma's A
    ("TN", {"swap_ab": True}, ("1", "1"), (1, 64, 64)),
])
def test_a_mn_major_sets_the_transpose_bit_and_loads_64_wide_boxes(layout, given, bits, a_box):
    """wgmma's A operand MN-major (A stored K x M, or B stored K x N with swap_ab): its
    transpose bit set, TMA boxes of BK rows by one 128-byte span (one 64-row slab each),
    BM/64 of them per stage; no spills."""
    spec = GemmSpec(M=128 if given.get("swap_ab") and layout == "TN" else 512, N=512, K=512,
                    dtype="bf16", layout=layout)
    art = compile_artifact(spec, {"strategy": "wgmma", **given}, "sm_90a")
    main = art.launches[0]
    assert main.params[0].box == a_box
    assert main.params[0].operand == ("B" if given.get("swap_ab") else "A")
    ptx = art.assembly.split("deepgen_splitk_reduce")[0]
    found = set(re.findall(r"wgmma\.mma_async\S+ \{[^}]*\}, %rd\d+, %rd\d+, (?:p|\d), "
                           r"1,\s*1, (\d),\s*(\d);", ptx))
    assert found == {bits}
    cfg = strategies.resolve({"strategy": "wgmma", **given}, spec, H100)
    built = next(iter(art.ir_stages.values()))  # the builder's module, before lowering
    tma_loads = built.count("nvvm.cp.async.bulk.tensor.shared.cluster.global")
    a_boxes = cfg.BM // 64
    b_boxes = 1 if (cfg.swap_ab or layout[1] == "T") and not (cfg.swap_ab and layout[0] == "T") \
        else cfg.BN // 64
    assert tma_loads == a_boxes + b_boxes, (tma_loads, a_boxes, b_boxes)
    res = art.resources[main.entry]
    assert res["spill_stores"] == res["stack_bytes"] == 0, res


def test_cluster_multicasts_half_of_b_and_releases_stages_in_both_ctas():
    art = compile_artifact(NT, {"strategy": "wgmma", "BN": 256, "consumers": 2,
                                "cluster_m": 2}, "sm_90a", keep_ir=False)
    launch, ptx = art.launches[0], art.assembly
    assert launch.cluster == (2, 1, 1) and launch.grid == (8, 1, 1)
    assert launch.params[1].box == (1, 128, 64)  # half of BN = 256 rows of B per CTA
    assert ptx.count(".multicast::cluster") == 1  # B's half; A is loaded alone
    assert ptx.count("mapa.shared::cluster") == 2  # the release goes to both CTAs' barrier
    assert "mbarrier.arrive.shared::cluster.b64" in ptx
    assert ptx.count("barrier.cluster.arrive.aligned") == 2  # after init, before exit
    assert art.resources[launch.entry]["spill_stores"] == 0


def _tma_loads(ptx: str) -> list[tuple[int, bool]]:
    """(kernel parameter of the descriptor, multicast?) of each TMA load in the PTX: the
    descriptor's register traced back through cvta.param to the .param it names."""
    param = dict(re.findall(r"mov\.b64 \t(%rd\d+), \w+_param_(\d+);", ptx))
    generic = {reg: int(param[src])
               for reg, src in re.findall(r"cvta\.param\.u64 \t(%rd\d+), (%rd\d+);", ptx)
               if src in param}
    return [(generic[reg], ".multicast::cluster" in op)
            for op, reg in re.findall(r"cp\.async\.bulk\.tensor\.(\S+) \[[^\]]+\], \[(%rd\d+),",
                                      ptx)
            if "shared::cluster.global" in op]


# 512 x 768 in 128 x 256 tiles: 4 tile rows, 3 tile columns (1x2: an odd count, the pairs'
# fourth column a spare CTA per row that loads its half of A and stores nothing)
@pytest.mark.parametrize("layout,cluster,grid,boxes,loads", [
    ("NT", (1, 2), 16, [(1, 64, 64), (1, 256, 64)], [(0, True), (1, False)]),
    ("NN", (1, 2), 16, [(1, 64, 64), (1, 64, 64)], [(0, True)] + [(1, False)] * 4),
    # A MN-major: BM/64 = 2 boxes of BK x 64, one per CTA of the pair
    ("TN", (1, 2), 16, [(1, 64, 64), (1, 64, 64)], [(0, True)] + [(1, False)] * 4),
    ("NT", (2, 1), 12, [(1, 128, 64), (1, 128, 64)], [(0, False), (1, True)]),
])
def test_cluster_multicasts_half_of_the_shared_operand(layout, cluster, grid, boxes, loads):
    """1x2 clusters share A (each CTA loads BM/2 of its rows and multicasts them), 2x1 share
    B: the multicast TMA load names the shared operand's descriptor, whose box holds the
    half; the pair is one launch cluster of 2 consecutive CTAs; both CTAs' barriers are
    released (mapa), the cluster syncs after init and before exit; no spills; the SASS has
    the multicast UTMALDG."""
    spec = GemmSpec(M=512, N=768, K=512, dtype="bf16", layout=layout)
    art = compile_artifact(spec, {"strategy": "wgmma", "BN": 256, "consumers": 2,
                                  "cluster_m": cluster[0], "cluster_n": cluster[1]},
                           "sm_90a", keep_ir=False)
    launch, ptx = art.launches[0], art.assembly
    assert launch.cluster == (2, 1, 1) and launch.grid == (grid, 1, 1)
    assert [p.box for p in launch.params[:2]] == boxes
    assert sorted(_tma_loads(ptx)) == sorted(loads)
    assert ptx.count("mapa.shared::cluster") == 2
    assert ptx.count("barrier.cluster.arrive.aligned") == 2
    res = art.resources[launch.entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res
    sass = sass_of(art.binary)
    assert re.search(r"UTMALDG\.\dD\.MULTICAST\b", sass)
    assert not re.search(r"\b(LDL|STL)\b", sass)


def test_cluster_1x2_over_a_range_of_m_pairs_the_columns_of_each_row():
    """A range kernel (M a launch argument): the grid rule is the tile rows at the actual M
    times the tile columns rounded up to pairs (N = 768: 3 columns of 256, 2 pairs)."""
    from deepgen.dims import range_of

    spec = GemmSpec(M=range_of(3000), N=768, K=512, dtype="bf16", layout="NT")
    art = compile_artifact(spec, {"strategy": "wgmma", "BN": 256, "consumers": 2,
                                  "cluster_n": 2}, "sm_90a", keep_ir=False)
    launch = art.launches[0]
    assert launch.grid == ("cdiv(M, 128) * 4", 1, 1) and launch.cluster == (2, 1, 1)
    assert [m for _, m in _tma_loads(art.assembly)] == [True, False]
    assert art.resources[launch.entry]["spill_stores"] == 0


def test_pingpong_takes_turns_on_named_barriers_and_releases_stages_alone(artifacts):
    art = artifacts["pp"]
    launch, ptx = art.launches[0], art.assembly
    assert launch.grid == (132, 1, 1) and launch.block == (384, 1, 1)  # persistent, 2 consumers
    assert launch.shared_bytes == 6 * 32768 + 6 * 16
    # one warpgroup per 128 x 128 tile: 2 slabs x 4 k-steps, the peeled first K tile and the loop
    mma = re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n128k16\.f32\.bf16\.bf16 ", ptx)
    assert len(mma) == 2 * 2 * 4
    # the turn: wait on a named barrier of both warpgroups (256 threads), pass it on without
    # waiting once the tile's wgmma are issued, before wait_group 0 and the epilogue
    waits = re.findall(r"\bbar\.sync \t%r\d+, 256;", ptx)
    passes = re.findall(r"\bbar\.arrive %r\d+, 256;", ptx)
    assert len(waits) == 1 and len(passes) == 1, (waits, passes)
    assert ptx.index(passes[0]) < ptx.index("wgmma.wait_group.sync.aligned \t0")
    # each stage is read by one warpgroup: empty barriers count 1 arrival, as the full ones
    counts = set(re.findall(r"mbarrier\.init\.shared\.b64 \t\[[^\]]+\], (%r\d+|\d+);", ptx))
    assert len(counts) == 1, counts
    res = art.resources[launch.entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def _check_sass(artifacts: dict, hgmma: str) -> None:
    """Each cubin's SASS has the HGMMA form `hgmma` (a regex), TMA loads (UTMALDG), mbarrier
    ops (SYNCS) and no local memory."""
    for name, art in artifacts.items():
        sass = sass_of(art.binary)
        assert re.search(hgmma, sass), name
        assert "UTMALDG" in sass and "SYNCS" in sass, name
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory in the SASS"


def test_sass_has_hgmma_utmaldg_syncs_and_no_local_memory(artifacts):
    _check_sass(artifacts, r"HGMMA\.64x(16|128|256)x16\.F32\b")


def test_tf32_is_built_for_nt_and_the_default_where_measured():
    """f32 inputs with allow_tf32: wgmma serves layout NT only (tf32 has no transpose bits);
    the default heuristic takes it where measured (NT with enough 128x256 tiles: 4096^3 0.96x
    cuBLAS on the H200) and keeps the rest on mma_sync; an explicit wgmma config gets BK 32
    (one 128-byte span of f32) and two consumers."""
    wgmma = strategies.get("wgmma")
    for layout in ("NT", "NN", "TN", "TT"):
        for m in (16, 4096):
            spec = GemmSpec(M=m, N=4096, K=4096, dtype="f32", allow_tf32=True, layout=layout)
            assert wgmma.serves(spec, H100) == (layout == "NT"), spec
            want = "wgmma" if (layout, m) == ("NT", 4096) else "mma_sync"
            assert strategies.choose(spec, H100).name == want, spec
            assert strategies.default_config(spec, H100).strategy == want, spec
    assert not wgmma.serves(GemmSpec(M=4096, N=4096, K=4096, dtype="f32", layout="NT"), H100)
    big = GemmSpec(M=4096, N=4096, K=4096, dtype="f32", allow_tf32=True, layout="NT")
    cfg = strategies.resolve({"strategy": "wgmma"}, big, H100)
    assert cfg == WgmmaConfig(BM=128, BN=256, BK=32, consumers=2, stages=4)
    # a stage of 128 x 32 and 256 x 32 f32: 48 KiB, twice the bytes per K element of bf16
    assert strategies.estimates(cfg, big)["shared_bytes"] == 4 * (128 + 256) * 32 * 4 + 64
    assert strategies.resolve({"strategy": "wgmma"}, TF32, H100) == WgmmaConfig(
        BM=128, BN=128, BK=32, consumers=2, stages=4)
    swap = strategies.resolve({"strategy": "wgmma", "swap_ab": True},
                              GemmSpec(M=16, N=4096, K=4096, dtype="f32", allow_tf32=True,
                                       layout="NT"), H100)
    assert (swap.BK, swap.BN, swap.swap_ab) == (32, 16, True)


@pytest.fixture(scope="module")
def tf32_artifacts():
    return {
        "tf32_c2": compile_artifact(TF32, {"strategy": "wgmma"}, "sm_90a", keep_ir=False),
        "tf32_wide": compile_artifact(TF32, {"strategy": "wgmma", "BN": 256}, "sm_90a",
                                      keep_ir=False),
        "tf32_split2": compile_artifact(TF32, {"strategy": "wgmma", "split_k": 2, "BN": 64},
                                        "sm_90a", keep_ir=False),
    }


@pytest.mark.parametrize("name,n,slabs", [("tf32_c2", 128, 1), ("tf32_wide", 256, 1),
                                          ("tf32_split2", 64, 1)])
def test_tf32_ptx_has_k8_wgmma_over_f32_tma_tiles(tf32_artifacts, name, n, slabs):
    """m64nNk8.f32.tf32.tf32 without transpose immediates (tf32 reads K-major operands only),
    BK/8 = 4 per K tile and slab; f32 TMA descriptors with boxes of 32 elements = 128 bytes
    (the swizzle span); no spills."""
    art = tf32_artifacts[name]
    main = art.launches[0]
    ptx = art.assembly.split("deepgen_splitk_reduce")[0]
    mma = re.findall(rf"wgmma\.mma_async\.sync\.aligned\.m64n{n}k8\.f32\.tf32\.tf32 "
                     r"\{[^}]*\}, %rd\d+, %rd\d+, (?:p|\d), 1,\s*1;", ptx)
    assert len(mma) == 2 * 4 * slabs  # the peeled first K tile and the loop, 4 k8 steps each
    assert not re.search(r"wgmma\.mma_async\S*(f16|bf16)", ptx)
    a, b = main.params[:2]
    assert (a.dtype, a.box, a.swizzle) == ("f32", (1, 128, 32), 128)
    assert (b.dtype, b.box) == ("f32", (1, n, 32))
    assert main.shared_bytes == 4 * (128 + n) * 32 * 4 + 64
    assert main.block == (384, 1, 1)
    assert "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx" in ptx
    res = art.resources[main.entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def test_tf32_sass_has_tf32_hgmma_utmaldg_syncs_and_no_local_memory(tf32_artifacts):
    _check_sass(tf32_artifacts, r"HGMMA\.64x(64|128|256)x8\.F32\.TF32\b")
