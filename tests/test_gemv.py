"""The gemv strategy (decode-sized GEMMs) on the CPU: config validation (errors name field and
limit), the default heuristic's choice, and the PTX of its kernels: 16-byte global loads,
warp shuffles, no spills, every layout and dtype, split-K with the reduce kernel."""
import re

import pytest

from deepgen.compiler import compile_artifact, strategies
from deepgen.compiler.strategies.gemv import GemvConfig
from deepgen.compiler.target import get_target
from deepgen.epilogue import EpilogueSpec
from deepgen.spec import GemmSpec, SpecError

H200 = get_target("sm_90a")
NT = GemmSpec(M=1, N=4096, K=4096, dtype="bf16", layout="NT")
V4_LOAD = re.compile(r"ld\.global(?:\.nc)?(?:\.L1::\w+)?(?:\.L2::\w+)?\.(?:v4\.(?:b|u|f)32|b128)")


def _spec(**kw):
    return GemmSpec(**{**dict(M=1, N=4096, K=4096, dtype="bf16", layout="NT"), **kw})


def test_registered_and_round_trips():
    s = strategies.get("gemv")
    assert s.name == "gemv" == GemvConfig.strategy
    cfg = s.default_config(NT, H200)
    assert GemvConfig.from_dict(cfg.to_dict()) == cfg
    assert s.pipeline(cfg) == ["deepgen-gemv"]
    assert set(s.estimates(cfg, NT)) == {"shared_bytes", "registers"}
    assert strategies.resolve({"strategy": "gemv", "rows": 1}, NT).rows == 1
    assert strategies.resolve({"strategy": "gemv", "rows": 1}, NT).strategy == "gemv"


@pytest.mark.parametrize("cfg, spec, field, words", [
    (GemvConfig(vec=16), NT, "vec", "16-byte vector limit"),
    (GemvConfig(vec=8), _spec(K=4100), "vec", "not a multiple of vec=8"),
    (GemvConfig(vec=6), NT, "vec", "power of two"),
    (GemvConfig(warps=3), NT, "warps", "power of two"),
    (GemvConfig(warps=64), NT, "threads", "limit 1024"),
    (GemvConfig(rows=0), NT, "rows", ">= 1"),
    (GemvConfig(rows=8), _spec(M=16), "rows", "accumulators exceed 64"),
    (GemvConfig(split_k=64), _spec(K=1024), "split_k", "exceed the 4 K pieces"),
    (GemvConfig(), _spec(M=33), "M", "M <= 32"),
    (GemvConfig(vec=4), _spec(dtype="f32", allow_tf32=True), "dtype", "no tf32"),
    (GemvConfig(rows=4, unroll=16), _spec(M=8), "registers", "limit 255"),
    (GemvConfig(warps=8, k_warps=3), _spec(layout="NN"), "k_warps", "must divide warps=8"),
    (GemvConfig(warps=8, k_warps=8), NT, "k_warps", "N-contiguous B"),
    (GemvConfig(rows=1, warps=32, k_warps=32, vec=4, unroll=1), _spec(M=32, layout="NN"),
     "shared memory", "exceed the limit"),
])
def test_validation_names_field_and_limit(cfg, spec, field, words):
    with pytest.raises(SpecError, match=rf"^{re.escape(field)}: .*{re.escape(words)}"):
        strategies.get("gemv").validate(cfg, spec, H200)


def test_amd_is_refused():
    with pytest.raises(SpecError, match="NVIDIA"):
        strategies.get("gemv").validate(GemvConfig(), NT, get_target("gfx942"))
    assert not strategies.get("gemv").serves(NT, get_target("gfx942"))


@pytest.mark.parametrize("spec", [_spec(M=m, N=n, K=k, layout=lay, dtype=dt)
                                  for m in (1, 2, 4, 8, 16, 32) for (n, k) in
                                  ((4096, 4096), (57344, 8192), (96, 2048), (203, 1000))
                                  for lay in ("NT", "NN") for dt in ("bf16", "f32")])
def test_default_config_validates(spec):
    cfg = strategies.get("gemv").default_config(spec, H200)
    strategies.get("gemv").validate(cfg, spec, H200)
    blocks = cfg.grid(spec)[0] * cfg.split_k
    assert cfg.split_k == 1 or blocks <= 2 * H200.multiprocessors


def test_split_k_when_n_does_not_fill_the_gpu():
    small = strategies.get("gemv").default_config(_spec(N=96, K=8192), H200)
    assert small.split_k > 1
    assert strategies.get("gemv").default_config(NT, H200).split_k == 1


def _ptx_and_resources(spec, cfg=None):
    art = compile_artifact(spec, {"strategy": "gemv", **(cfg or {})}, keep_ir=False)
    return art, art.assembly


@pytest.mark.parametrize("dtype", ["bf16", "f16", "f32"])
@pytest.mark.parametrize("layout", ["NT", "NN", "TN", "TT"])
def test_every_layout_and_dtype_compiles_spill_free(dtype, layout):
    spec = GemmSpec(M=3, N=203 if layout[1] == "T" else 256, K=1000, dtype=dtype, layout=layout)
    art, ptx = _ptx_and_resources(spec)
    for entry, res in art.resources.items():
        assert res["spill_stores"] == 0 == res["spill_loads"], (entry, res)
        assert res["stack_bytes"] == 0, (entry, res)
    assert V4_LOAD.search(ptx), "no 16-byte global load"
    if layout[1] == "T":  # K-contiguous B: a cross-lane reduction
        assert "shfl.sync.bfly" in ptx


@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("layout", ["NT", "NN", "TN", "TT"])
@pytest.mark.parametrize("m, n, k", [(8, 4096, 1000), (16, 4096, 1000), (32, 4096, 1000),
                                     (32, 203, 1001)])
def test_gemv_defaults_up_to_its_largest_m_do_not_spill(m, n, k, layout, dtype):
    """An explicit {"strategy": "gemv"} up to MAX_M (the default heuristic stops at 4): the
    default fields fit the registers (TT: narrower vectors as A's rows are gathered)."""
    spec = GemmSpec(M=m, N=n, K=k, dtype=dtype, layout=layout)
    art, _ = _ptx_and_resources(spec)
    for entry, res in art.resources.items():
        assert res["spill_stores"] == 0 == res["stack_bytes"], (entry, res)


def test_nt_kernel_streams_b_with_16_byte_loads_and_shuffles():
    art, ptx = _ptx_and_resources(NT, {"rows": 2, "unroll": 4})
    assert [l.entry for l in art.launches] == ["deepgen_gemv"]
    assert art.launches[0].grid == (4096 // (4 * 2), 1, 1)
    loop = ptx[ptx.index("$L__BB0_1"):]
    loop = loop[:loop.index("bra.uni")] if "bra.uni" in loop else loop
    # all 8 of a lane's B vectors (2 rows x 4) and A's 4 come before the first FMA
    first_fma = loop.index("fma.rn.f32")
    assert len(V4_LOAD.findall(loop[:first_fma])) >= 8
    assert ptx.count("shfl.sync.bfly") == 2 * 5  # M x rows sums, 5 butterfly steps each
    res = art.resources["deepgen_gemv"]
    assert res["spill_stores"] == 0 and res["registers"] <= 64


def test_split_k_adds_the_deterministic_reduce_and_the_epilogue():
    spec = _spec(M=3, N=200, K=4096,
                 epilogue=EpilogueSpec.of(bias="row", activation="silu"))
    art, ptx = _ptx_and_resources(spec, {"split_k": 2})
    assert [l.entry for l in art.launches] == ["deepgen_gemv", "deepgen_splitk_reduce"]
    assert [p.name for p in art.launches[0].params] == ["A", "B", "W"]
    assert [p.name for p in art.launches[1].params] == ["W", "C", "alpha", "beta", "bias"]
    assert art.workspace_bytes == 2 * 3 * 200 * 4
    assert art.launches[0].grid == (-(-200 // 8), 1, 2)
    assert "ex2.approx" in ptx or "__nv_expf" in ptx or "ex2" in ptx


def test_epilogue_without_split_in_the_kernel():
    spec = _spec(M=2, N=512, K=1024, out_dtype="f32",
                 epilogue=EpilogueSpec.of(bias="col", activation="gelu_tanh"))
    art, _ = _ptx_and_resources(spec, {"split_k": 1})
    assert [p.name for p in art.launches[0].params] == ["A", "B", "C", "alpha", "beta", "bias"]
    assert art.workspace_bytes == 0


def test_batch_uses_grid_z():
    spec = _spec(M=2, N=64, K=256, batch=3)
    art, _ = _ptx_and_resources(spec, {"split_k": 1})
    assert art.launches[0].grid[2] == 3


TENSOR_CORES = ("mma_sync", "wgmma")


@pytest.mark.parametrize("spec, names", [
    (_spec(M=1), ("gemv",)), (_spec(M=2, N=57344, K=8192), ("gemv",)),
    (_spec(M=4, dtype="f16"), ("wgmma",)), (_spec(M=1, N=1, K=1), ("gemv",)),
    (_spec(M=1, layout="NN"), ("gemv",)), (_spec(M=4, N=14336, layout="NN"), ("wgmma",)),
    # M = 2..4 against large weights: wgmma's swap_ab (decode_m2to4), except M < 4 against
    # N > 16384; below N, K = 4096 gemv keeps them
    (_spec(M=3, N=28672, K=4096), ("gemv",)), (_spec(M=4, N=28672, K=4096), ("wgmma",)),
    (_spec(M=2, N=2048, K=4096), ("gemv",)),
    (_spec(M=8), TENSOR_CORES), (_spec(M=16), TENSOR_CORES),  # measured: tensor cores
    (_spec(M=8, layout="NN"), TENSOR_CORES),
    (_spec(M=1, layout="TT"), TENSOR_CORES), (_spec(M=1, layout="TN"), TENSOR_CORES),  # unmeasured
    (_spec(M=1, dtype="f32"), ("simt",)),
])
def test_default_heuristic_takes_gemv_where_measured_faster(spec, names):
    assert strategies.choose(spec, H200).name in names
    assert strategies.default_config(spec, H200).strategy in names
    assert strategies.choose(spec, get_target("gfx942")).name == "simt"


@pytest.mark.parametrize("m, rows, unroll", [(1, 1, 8), (2, 2, 4), (4, 2, 4), (8, 4, 2)])
def test_default_rows_and_unroll_follow_the_measurements(m, rows, unroll):
    cfg = strategies.get("gemv").default_config(_spec(M=m), H200)
    assert (cfg.rows, cfg.unroll, cfg.vec, cfg.split_k, cfg.k_warps) == (rows, unroll, 8, 1, 1)


@pytest.mark.parametrize("m, warps, unroll", [(1, 16, 8), (2, 16, 8), (4, 8, 16)])
def test_n_contiguous_default_follows_the_measurements(m, warps, unroll):
    """NN (H200, 2026-12-02): every warp of a block on one column block, K split among them."""
    spec = _spec(M=m, N=14336, layout="NN")
    cfg = strategies.get("gemv").default_config(spec, H200)
    assert (cfg.rows, cfg.warps, cfg.k_warps, cfg.unroll, cfg.vec) == (1, warps, warps, unroll, 8)
    blocks = cfg.grid(spec)[0] * cfg.split_k
    assert H200.multiprocessors <= blocks <= 4 * H200.multiprocessors


def test_k_warps_sum_through_shared_memory_in_one_kernel():
    """N-contiguous B with k_warps = 8: one column block per 256 columns, the warps' sums meet
    in dynamic shared memory behind one barrier; a deeper K slice per block needs fewer grid
    slices (split_k) than one warp per column block does."""
    spec = _spec(layout="NN")
    g = strategies.get("gemv")
    kw = g.complete({"warps": 8, "k_warps": 8, "unroll": 8}, spec, H200)
    plain = g.complete({"warps": 4, "k_warps": 1, "unroll": 8}, spec, H200)
    assert kw.grid(spec)[0] == 4096 // 256 and kw.split_k < plain.split_k
    assert g.estimates(kw, spec)["shared_bytes"] == 7 * 1 * 32 * 8 * 4
    art = compile_artifact(spec, kw, keep_ir=False)
    ptx = art.assembly.split("deepgen_splitk_reduce")[0]  # the gemv kernel comes first
    assert ptx.count("bar.sync") == 1
    assert re.search(r"st\.shared\.v4\.(b|f)32", ptx) and re.search(r"ld\.shared\.v4", ptx)
    assert art.launches[0].shared_bytes == 7 * 32 * 8 * 4
    assert art.resources["deepgen_gemv"]["spill_stores"] == 0
