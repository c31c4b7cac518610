"""CPU counterpart of tests/gpu/test_decode_gpu.py (issue 15's decode defaults): every case
of tests/gpu/decode_cases.py gets the rule it names from the default heuristic, and its
kernel compiles to PTX with the config's stages and no local memory (spills)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from deepgen.compiler import strategies
from deepgen.compiler.strategies.wgmma import config as W

from deepgen.spec import GemmSpec

_path = Path(__file__).parent / "gpu" / "decode_cases.py"
_spec = importlib.util.spec_from_file_location("deepgen_tests_decode_cases_cpu", _path)
decode_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decode_cases)
CASES = decode_cases.cases()
H100 = strategies._target("sm_90a")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_decode_case_takes_its_rule(case):
    name, spec_fields, expect, _alpha, _beta = case
    spec = GemmSpec(**spec_fields)
    assert strategies.choose(spec, H100).name == "wgmma"
    cfg = strategies.default_config(spec, H100)
    assert {k: getattr(cfg, k) for k in expect} == expect, name
    W.validate(cfg, spec, H100)
    stage = sum(W.tile_bytes(cfg, spec))
    if cfg.ctas_per_sm == 2:  # two resident CTAs: each a ring in half the SM's shared memory
        est = W.estimates(cfg, spec)
        assert 2 * (est["shared_bytes"] + W.CTA_RESERVED_SHARED) <= W.SM_SHARED, name
        assert 2 * (est["shared_bytes"] + stage + W.CTA_RESERVED_SHARED) > W.SM_SHARED, name
        return
    # the deep ring: the stages DECODE_RING_BYTES holds, past the 8 of the older rings where
    # the tile is narrow
    assert cfg.stages == min(W.MAX_STAGES, W.DECODE_RING_BYTES // stage), name


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in (
    "decode-narrow-NT-m100-partial-biascol-gelu-beta", "decode-narrow-NT-m100-c2-biascol-relu",
    "decode-swap64-NT-m13-beta", "decode-swap64-cluster-NT-m100-k14336-beta",
    "decode-swap-2cta-NT-m5-partial")], ids=lambda c: c[0])
def test_decode_case_compiles_without_spills(case):
    name, spec_fields, expect, _alpha, _beta = case
    art = decode_cases.compile_case(spec_fields, expect)
    assert art.config["stages"] == expect["stages"]
    ptx = art.assembly
    # one full and one empty mbarrier per stage, initialised once each
    assert len(re.findall(r"mbarrier\.init\.shared", ptx)) >= 2 * expect["stages"], name
    for entry, res in art.resources.items():
        assert res["spill_stores"] == res["spill_loads"] == res["stack_bytes"] == 0, (entry, res)
