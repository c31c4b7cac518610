"""GPU correctness of the decode defaults (issue 15): every case of decode_cases.py, the
spec's default config (checked to be the rule the case names), against float64 with C
poisoned, every element written, nothing written outside C, no local memory.

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_decode_gpu.py -m gpu

The CPU counterpart (tests/test_decode_rules.py) checks the same cases' configs and their
PTX resources (no spills).
"""
from __future__ import annotations

import make_bundle
import pytest
from test_gemm_gpu import check_guarded

from deepgen.spec import GemmSpec

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("decode").cases()


@pytest.fixture(scope="module")
def hopper():
    import torch

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"the decode defaults are wgmma kernels (sm_90a): "
                    f"{torch.cuda.get_device_name()} is not Hopper")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_decode_default_matches_float64(case, kernels, hopper):
    name, spec_fields, expect, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.strategy_case("decode", name, spec_fields, expect)
    assert k.spec == spec and k.config["strategy"] == "wgmma"
    for key, value in expect.items():
        assert k.config[key] == value, key
    check_guarded(k, spec, alpha, beta, seed=name, runs=2)
