"""The wgmma strategy's TMA epilogue (WgmmaConfig.epilogue "tma") on the CPU (its GPU
counterpart: the "wgmma-tmast-" cases of tests/gpu/wgmma_cases.py): validation names the
field and the limit before any IR; the default keeps "direct"; the kernels' PTX stores the
accumulator with stmatrix into swizzled shared buffers and sends them out with TMA stores
(cp.async.bulk.tensor global.shared::cta, commit, wait_group.read, fence.proxy.async, a named
barrier per consumer warpgroup) and no st.global; C's store descriptor is a by-value
grid-constant parameter of the typed signature; no spills; the SASS has STSM and UTMASTG."""
from __future__ import annotations

import re

import pytest
from sass_text import sass_of
from deepgen.compiler import compile_artifact, strategies
from deepgen.compiler.strategies.wgmma.config import WgmmaConfig, epilogue_bytes
from deepgen.compiler.target import get_target

from deepgen.spec import GemmSpec, SpecError

H100 = get_target("sm_90a")
NT = GemmSpec(M=512, N=512, K=512, dtype="bf16", layout="NT")
PP = {"mode": "pingpong", "consumers": 2, "persistent": True}
T = {"strategy": "wgmma", "epilogue": "tma"}


@pytest.mark.parametrize("spec,fields,message", [
    (NT, {"epilogue": "smem"}, r"^epilogue: must be one of \('direct', 'tma'\), got 'smem'"),
    (GemmSpec(M=512, N=512, K=512, dtype="bf16", layout="NT", out_dtype="f32"), T,
     r"^epilogue: 'tma' stores bf16/f16 outputs .* got out_dtype f32"),
    (GemmSpec(M=127, N=129, K=40, dtype="bf16", layout="NT"), T,
     (r"^epilogue: 'tma' needs C's row pitch a multiple of 16 bytes: N = 129 bf16 elements = "
      r"258 bytes")),
    (NT, {**T, "split_k": 2}, r"^split_k: split_k 2 with epilogue 'tma': not built"),
    (GemmSpec(M=16, N=4096, K=4096, dtype="bf16", layout="NT"), {**T, "swap_ab": True, "split_k": 1},
     r"^swap_ab: swap_ab with epilogue 'tma': not built"),
    (NT, {**T, "epilogue_n": 48},
     r"^epilogue_n: 'tma' sub-tile columns: one of \(16, 32, 64\) dividing BN = 128, got 48"),
    (NT, {**T, "BN": 40, "epilogue_n": 16}, r"^epilogue_n: .*dividing BN = 40, got 16"),
    # the buffers count in the shared-memory check: ping-pong 128 x 128 in 7 stages is full
    (GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="NN"),
     {**T, **PP, "BM": 128, "BN": 128, "stages": 7, "epilogue_n": 32},
     (r"^stages: 7 stages of 32768 bytes \(\+ barriers, \+ 16384 of TMA epilogue buffers\) = "
      r"245872 bytes exceed the 232448")),
])
def test_validation_names_the_field_and_the_limit(spec, fields, message):
    with pytest.raises(SpecError, match=message):
        strategies.resolve({"strategy": "wgmma", **fields}, spec, H100)


def test_buffers_two_per_consumer_warpgroup_of_64_rows():
    cfg = WgmmaConfig(BN=256, consumers=2, epilogue="tma", epilogue_n=64)
    assert epilogue_bytes(cfg, NT) == 2 * 2 * 64 * 64 * 2
    assert epilogue_bytes(cfg.replace(epilogue="direct"), NT) == 0
    assert epilogue_bytes(cfg.replace(epilogue_n=16), GemmSpec(M=512, N=512, K=512, dtype="bf16", layout="NT", out_dtype="f16")) == 2 * 2 * 64 * 16 * 2


@pytest.mark.parametrize("spec,want", [
    # ping-pong 128 x 128 (K 512 < K <= 4096): 64-column sub-tiles in 6 stages; a short K
    # loop keeps direct (not measured); the cooperative 128 x 256 past K = 8192: 32 columns
    (GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="NN"), ("tma", 64, 6)),
    (GemmSpec(M=2048, N=14336, K=4096, dtype="f16", layout="NT"), ("tma", 64, 6)),
    (GemmSpec(M=512, N=512, K=512, batch=64, dtype="bf16", layout="NN"), ("direct", 32, 4)),
    (GemmSpec(M=2048, N=4096, K=14336, dtype="bf16", layout="NN"), ("tma", 32, 4)),
    # 8192^3 (ping-pong 128 x 192) measured level: direct
    (GemmSpec(M=8192, N=8192, K=8192, dtype="bf16", layout="NN"), ("direct", 32, 5)),
    # C the TMA epilogue cannot store: f32, a row pitch not a multiple of 16 bytes
    (GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="NN", out_dtype="f32"),
     ("direct", 32, 7)),
    (GemmSpec(M=4096, N=4100, K=4096, dtype="bf16", layout="NT"), ("direct", 32, 7)),
    (GemmSpec(M=2048, N=4100, K=14336, dtype="bf16", layout="NT"), ("direct", 32, 4)),
    # the cooperative 128 x 256 elsewhere (layout TN) and the mid-size tiles: direct
    (GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="TN"), ("direct", 32, 4)),
    (GemmSpec(M=1024, N=1024, K=1024, dtype="bf16", layout="NN"), ("direct", 32, 6)),
])
def test_the_default_takes_the_tma_epilogue_where_measured_faster(spec, want):
    cfg = strategies.default_config(spec, H100)
    assert (cfg.epilogue, cfg.epilogue_n, cfg.stages) == want, cfg


KERNELS = {
    # one consumer, partial tiles in M and N, beta (C read), bias + activation
    "c1": (GemmSpec(M=1000, N=520, K=1000, dtype="bf16", layout="NT",
                    epilogue={"steps": ["alpha_beta", "bias_col", "gelu_tanh"]}),
           {**T, "BM": 128, "BN": 128, "consumers": 1}, 2, 128, 32),
    # cooperative 128 x 256, 128-byte rows (swizzle 128)
    "c2": (GemmSpec(M=4096, N=4096, K=4096, dtype="f16", layout="NN"),
           {**T, "BN": 256, "consumers": 2, "stages": 4, "epilogue_n": 64}, 1, 256, 64),
    # ping-pong 128 x 128, a ring stage fewer than the direct default's 7
    "pp": (GemmSpec(M=4096, N=4096, K=4096, dtype="bf16", layout="NN"),
           {**T, **PP, "BM": 128, "BN": 128, "stages": 6, "epilogue_n": 16}, 2, 128, 16),
}


@pytest.fixture(scope="module")
def artifacts():
    return {name: compile_artifact(spec, cfg, "sm_90a", keep_ir=False)
            for name, (spec, cfg, *_rest) in KERNELS.items()}


@pytest.mark.parametrize("name", list(KERNELS))
def test_ptx_stores_through_stmatrix_and_tma(artifacts, name):
    spec, cfg, slabs, bn, cols = KERNELS[name]
    art = artifacts[name]
    ptx, launch = art.assembly, art.launches[0]
    entry = launch.entry
    for index in (0, 1, 2):  # A's, B's and C's descriptors: by-value __grid_constant__
        assert f".param .align 64 .b8 {entry}_param_{index}[128]" in ptx
    # per consumer warpgroup and tile: one stmatrix.x4 per 16 columns of each 64-row slab, one
    # TMA store per sub-tile, each after a fence and the warpgroup's named barrier
    assert ptx.count("stmatrix.sync.aligned.m8n8.x4.shared.b16") == slabs * bn // 16
    stores = re.findall(r"cp\.async\.bulk\.tensor\.3d\.global\.shared::cta\.tile\.bulk_group", ptx)
    assert len(stores) == slabs * bn // cols
    assert ptx.count("cp.async.bulk.commit_group") == len(stores)
    assert "cp.async.bulk.wait_group.read \t0" in ptx
    assert ptx.count("fence.proxy.async.shared::cta") >= len(stores)
    assert len(re.findall(r"\bbar\.sync \t%r\d+, 128;", ptx)) >= len(stores)
    assert "st.global" not in ptx  # nothing stored per thread
    if "bias_col" in spec.epilogue.steps:  # beta's C read stays a per-thread load
        assert "ld.global" in ptx
    c_store = launch.params[2]
    assert (c_store.kind, c_store.operand, c_store.shape) == ("tma", "C", ("batch", "M", "N"))
    assert (c_store.box, c_store.swizzle) == ((1, 64, cols), cols * 2)
    resolved = strategies.resolve(cfg, spec, H100)
    ring = resolved.stages * (resolved.BM + resolved.BN) * 64 * 2
    assert launch.shared_bytes == ring + resolved.consumers * 2 * 64 * cols * 2 \
        + 2 * resolved.stages * 8
    res = art.resources[entry]
    assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, res


def test_sass_has_stsm_and_utmastg(artifacts):
    for name, art in artifacts.items():
        sass = sass_of(art.binary)
        assert "STSM" in sass and "UTMASTG" in sass, name
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory in the SASS"
