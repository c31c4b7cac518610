"""Space generation: derived fields, pruning and its counts per reason, sampling."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from deepgen.compiler.config import validate
from deepgen.compiler.strategies import SimtConfig
from deepgen.spec import GemmSpec, SpecError
from deepgen.tuner import configfile, space
from deepgen.tuner.space import Space

SPEC = GemmSpec(256, 256, 256)
LEGACY = Path(__file__).parent / "data" / "tuner" / "GEMM_configs_2048.json"


def walk(spec, values, **kw):
    sp = Space(spec, values, **kw)
    configs = list(sp)
    r = sp.report
    assert r.kept == len(configs)
    assert sum(r.pruned.values()) + r.kept == r.total  # every point counted exactly once
    for cfg in configs:
        validate(cfg, spec, sp.target)  # nothing invalid gets through
    return configs, r


def test_total_is_the_product_of_the_lists():
    _, r = walk(SPEC, {"BK": [8, 16, 32], "register_prefetch": [False, True]})
    assert r.total == 6 and r.kept == 6 and not r.pruned


def test_lanes_must_fill_a_warp_and_one_side_follows_from_the_other():
    configs, r = walk(SPEC, {"lanes_m": [4, 8], "lanes_n": [4, 8]})
    assert r.kept == 2
    assert r.by_rule() == {"lanes_m*lanes_n: must equal the warp size N of sm_90a, got N*N": 2}
    configs, _ = walk(SPEC, {"lanes_m": [4, 16]})
    assert [(c.lanes_m, c.lanes_n) for c in configs] == [(4, 8), (16, 2)]


def test_listed_structure_must_be_consistent():
    configs, r = walk(SPEC, {"BM": [64, 128], "warps_m": [2], "lanes_m": [8], "TM": [4, 8]})
    assert r.by_rule() == {"BM: must equal warps_m*lanes_m*TM = N, got N": 2}
    assert [(c.BM, c.TM) for c in configs] == [(64, 4), (128, 8)]


def test_warps_are_derived_from_the_block_and_thread_tiles():
    configs, r = walk(SPEC, {"BM": [32, 64, 128], "TM": [8]})
    assert r.by_rule() == {"BM: must be a multiple of lanes_m*TM = N, got N": 1}
    assert [(c.BM, c.warps_m, c.lanes_m, c.TM) for c in configs] == [(64, 1, 8, 8),
                                                                   (128, 2, 8, 8)]


def test_tiles_larger_than_the_problem_are_pruned():
    spec = GemmSpec(16, 4096, 4096)
    configs, r = walk(spec, {"BM": [16, 32, 64]})
    assert [c.BM for c in configs] == [16]
    assert r.by_rule() == {"BM: N is larger than M=N needs (at most N; idle threads)": 2}


def test_no_effect_fields_keep_one_point():
    configs, r = walk(SPEC, {"BK": [8, 16], "kk_unroll": [0, 8]})
    assert [(c.BK, c.kk_unroll) for c in configs] == [(8, 0), (16, 0), (16, 8)]
    assert r.by_rule() == {"duplicate: kk_unroll=BK is the full unroll (N)": 1}
    # The canonical value need not be listed: kk_unroll=8 with BK=8 is kept as 0.
    configs, r = walk(SPEC, {"BK": [8], "kk_unroll": [8]})
    assert [(c.BK, c.kk_unroll) for c in configs] == [(8, 0)]


def test_free_fields_multiply_the_rest():
    configs, r = walk(SPEC, {"BK": [8, 16], "local_split_k": [1, 2],
                             "reduce_c_contiguous": [False, True], "block_swizzle": [1, 8]})
    assert r.total == 16 and r.kept == 4
    assert {(c.BK, c.block_swizzle) for c in configs} == {(8, 1), (8, 8), (16, 1), (16, 8)}
    assert r.by_rule() == {
        "local_split_k: intra-block K split (legacy LOCAL_SPLIT_U) is not built yet; only N "
        "is supported, got N": 8,
        "duplicate: reduce_c_contiguous has no effect when local_split_k=N": 4}


def test_free_fields_are_still_checked_only_on_their_own():
    """The factorization above holds while validate checks these fields alone: the outcome for
    a free field's value must not depend on the rest of the config."""
    anchors, _ = walk(GemmSpec(1000, 1000, 1000, layout="TN"),
                      {"BM": [32, 64, 128], "BN": [64, 256], "BK": [8, 32], "TM": [4, 8]})
    anchors += walk(GemmSpec(512, 512, 512, dtype="bf16"), {"mma": ["m16n8k16"]})[0]
    probes = {"fetch_contiguous": [False, True], "block_swizzle": [0, 1, 3, 8, 16],
              "local_split_k": [0, 1, 2], "reduce_c_contiguous": [False, True]}
    for name, values in probes.items():
        assert name in space.FREE
        for v in values:
            outcomes = set()
            for cfg in anchors:
                if name not in cfg.field_names():  # not a field of this strategy
                    continue
                spec = GemmSpec(512, 512, 512, dtype="bf16") if cfg.strategy == "mma_sync" \
                    else GemmSpec(1000, 1000, 1000, layout="TN")
                try:
                    validate(cfg.replace(**{name: v}), spec)
                    outcomes.add("ok")
                except SpecError as e:
                    outcomes.add(str(e).split(":", 1)[0])
            assert len(outcomes) == 1, (name, v, outcomes)


def test_absent_widths_are_the_widest_that_validate():
    configs, _ = walk(GemmSpec(64, 98, 64), {"BK": [16]})
    (cfg,) = configs
    assert cfg.load_width_b == 2 and cfg.store_width == 2 and cfg.load_width_a == 4
    configs, _ = walk(GemmSpec(256, 256, 256, dtype="f16"), {"mma": ["none"], "BK": [32]})
    assert configs[0].load_width_a == 8  # 16 bytes of f16


def test_scatter_fields_are_capped_by_the_thread_tile():
    configs, _ = walk(SPEC, {"TM": [2], "TN": [2], "BM": [32], "BN": [32]})
    (cfg,) = configs
    assert cfg.warp_scatter_m == cfg.thread_scatter_m == 2 and cfg.store_width == 2


def test_tensor_core_points_ignore_the_thread_tile():
    spec = GemmSpec(1024, 1024, 1024, dtype="bf16")
    configs, r = walk(spec, {"mma": ["m16n8k16"], "TM": [4, 8], "warp_scatter_m": [2, 4]})
    assert len(configs) == 1 and configs[0].mma == "m16n8k16"
    assert r.by_rule() == {"duplicate: TM and TN do not apply with mma": 2,
                           "duplicate: warp_scatter_m does not apply to strategy mma_sync": 1}
    assert configs[0].strategy == "mma_sync" and not hasattr(configs[0], "TM")


def test_simt_points_of_f16_start_from_the_simt_heuristic():
    spec = GemmSpec(1024, 1024, 1024, dtype="f16")
    configs, _ = walk(spec, {"mma": ["none", "m16n8k16"]})
    kinds = {c.strategy: c for c in configs}
    assert set(kinds) == {"simt", "mma_sync"}
    assert kinds["simt"].shared_stages <= 2 and kinds["simt"].lowering().mma == "none"
    assert kinds["mma_sync"].async_copy  # the heuristic's own tensor-core pick


def test_fixed_base_uses_tileconfig_defaults():
    configs, _ = walk(SPEC, {"BK": [16]}, base="fixed")
    assert configs[0].replace(BK=8, split_k=1) == SimtConfig()


def test_unknown_field_is_named():
    with pytest.raises(SpecError, match="^BLOCK: not a config field"):
        Space(SPEC, {"BLOCK": [1]})


def test_legacy_space_counts_add_up():
    """The real legacy file's space (cut down to stay quick): structural consistency first,
    then validate; every point is counted under one reason."""
    cfg = configfile.load(LEGACY)
    values = dict(cfg.space, BK=[8], TM=[8], lanes_m=[8, 4], lanes_n=[4, 8], kk_unroll=[8],
                  block_swizzle=[8], load_width_a=[4], register_prefetch=[0])
    configs, r = walk(cfg.specs[0], values)
    assert r.total == math.prod(len(v) for v in values.values())
    assert r.kept > 100
    assert r.by_rule()["lanes_m*lanes_n: must equal the warp size N of sm_90a, got N*N"] \
        == r.total // 2
    assert any(k.startswith("local_split_k:") for k in r.pruned)
    assert any(k.startswith("duplicate: reduce_c_contiguous") for k in r.pruned)


def test_report_lines():
    sp = Space(SPEC, {"lanes_m": [4, 8], "lanes_n": [4, 8]})
    list(sp)
    # one rule met with two sets of numbers: the rule once, its real instances below it
    assert sp.report.lines() == [
        "256x256x256_f32_NN: 4 points -> 2 after pruning (50.0% pruned)",
        "           2  in 2 variants of: lanes_m*lanes_n: must equal the warp size N of sm_90a, "
        "got N*N",
        "                       1  lanes_m*lanes_n: must equal the warp size 32 of sm_90a, got 4*4",
        "                       1  lanes_m*lanes_n: must equal the warp size 32 of sm_90a, got 8*8"]
    assert sp.report.to_dict()["pruned_by_rule"] == {
        "lanes_m*lanes_n: must equal the warp size N of sm_90a, got N*N": 2}
    # a rule met with one set of numbers: that instance, numbers and all
    sp = Space(GemmSpec(16, 4096, 4096), {"BM": [16, 32, 64], "BK": [8]})
    list(sp)
    assert sp.report.lines()[1:] == [
        "           2  in 2 variants of: BM: N is larger than M=N needs (at most N; idle threads)",
        "                       1  BM: 32 is larger than M=16 needs (at most 16; idle threads)",
        "                       1  BM: 64 is larger than M=16 needs (at most 16; idle threads)"]
    sp = Space(SPEC, {"lanes_m": [4, 8], "lanes_n": [8]})
    list(sp)
    assert sp.report.lines()[1:] == [
        "           1  lanes_m*lanes_n: must equal the warp size 32 of sm_90a, got 8*8"]


def test_strategy_can_be_listed():
    spec = GemmSpec(1024, 1024, 1024, dtype="bf16")
    configs, r = walk(spec, {"strategy": ["simt", "mma_sync"], "BK": [32]})
    assert sorted(c.strategy for c in configs) == ["mma_sync", "simt"]
    assert all(c.to_dict()["strategy"] == c.strategy for c in configs)
    configs, r = walk(spec, {"strategy": ["simt"], "mma": ["none", "m16n8k16"]})
    assert [c.strategy for c in configs] == ["simt"]
    assert r.pruned == {"mma: 'm16n8k16' is not an instruction of strategy simt": 1}


def test_sample_is_seeded_uniform_and_keeps_order():
    items = list(range(1000))
    a = space.sample(iter(items), 30, seed=1)
    assert a == space.sample(iter(items), 30, seed=1) and a == sorted(a) and len(a) == 30
    assert a != space.sample(iter(items), 30, seed=2)
    assert space.sample(iter(range(5)), 30) == list(range(5))
    assert space.sample(iter(range(5)), None) == list(range(5))
    hits = sum(x < 500 for s in range(50) for x in space.sample(iter(items), 10, seed=s))
    assert 150 < hits < 350  # about half from each half


def test_reason_key_groups_numbers_but_keeps_names():
    assert space.reason_key("load_width_a: the A tile (128x8) does not split evenly into 256 "
                            "threads x 4 elements of f32 on sm_90a") == \
        "load_width_a: the A tile (N) does not split evenly into N threads x N elements of " \
        "f32 on sm_90a"


def test_every_yielded_point_is_distinct():
    configs, _ = walk(SPEC, {"BM": [64, 128], "BN": [64, 128], "TM": [4, 8], "TN": [4, 8],
                             "kk_unroll": [0, 4, 8], "BK": [8, 16]})
    assert len(set(configs)) == len(configs)
    assert len(list(itertools.islice(Space(SPEC, {"BK": [8, 16]}), 1))) == 1  # lazy
