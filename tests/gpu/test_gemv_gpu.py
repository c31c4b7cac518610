"""GPU correctness of the gemv strategy (decode-sized GEMMs): every case of gemv_cases.py
against float64, every element written, nothing outside C, no local memory.

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_gemv_gpu.py -m gpu
"""
from __future__ import annotations

import pytest

import make_bundle
from test_gemm_gpu import check_strategy_case

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("gemv").cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gemv_case_matches_float64(case, kernels):
    check_strategy_case(kernels, "gemv", case)
