"""GPU correctness of the wgmma strategy (TMA + mbarrier ring + warp-specialized wgmma, sm_90a):
every case of wgmma_cases.py against float64 with C poisoned, every element written, nothing
written outside C, no local memory.

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_wgmma_gpu.py -m gpu

An mbarrier phase bug hangs rather than fails: run this under `timeout`.
"""
from __future__ import annotations

import pytest

import make_bundle
from test_gemm_gpu import check_strategy_case

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("wgmma").cases()


@pytest.fixture(scope="module")
def hopper():
    import torch

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"wgmma kernels are sm_90a: {torch.cuda.get_device_name()} is not Hopper")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_wgmma_case_matches_float64(case, kernels, hopper):
    check_strategy_case(kernels, "wgmma", case, runs=2)
