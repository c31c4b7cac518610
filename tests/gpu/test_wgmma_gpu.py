"""GPU correctness of the wgmma strategy (TMA + mbarrier ring + warp-specialized wgmma, sm_90a):
every case of wgmma_cases.py against float64 with C poisoned, every element written, nothing
written outside C, no local memory.

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_wgmma_gpu.py -m gpu

An mbarrier phase bug hangs rather than fails: run this under `timeout`.
"""
from __future__ import annotations

import zlib

import pytest

import make_bundle
from deepgen.spec import GemmSpec
from test_gemm_gpu import GUARD, SENTINEL, _guarded_c

pytestmark = pytest.mark.gpu

CASES = make_bundle.wgmma_cases().cases()


@pytest.fixture(scope="module")
def hopper():
    import torch

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"wgmma kernels are sm_90a: {torch.cuda.get_device_name()} is not Hopper")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_wgmma_case_matches_float64(case, kernels, hopper):
    import torch

    from deepgen.runtime import measure

    name, spec_fields, given, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.wgmma(name, spec_fields, given)
    assert k.spec == spec and k.config["strategy"] == "wgmma"
    for key, value in given.items():
        assert k.config[key] == value, key
    torch.manual_seed(zlib.crc32(name.encode()))
    for _ in range(2):  # fresh inputs each time: a race shows as a moving error
        a, b = measure.operand(spec, "A"), measure.operand(spec, "B")
        extra = {n: measure.operand(spec, n) for n in spec.epilogue.operands()}
        buf, c = _guarded_c(spec, beta)
        ref = measure.reference(a, b, c, alpha, beta, spec.epilogue, extra.get("bias"))
        k(a, b, c, alpha=alpha, beta=beta, **extra)
        torch.cuda.synchronize()
        nan = int(torch.isnan(c).sum())
        assert nan == 0, f"{nan} elements of C not written"
        err = measure.rel_error(c, ref)
        assert err <= measure.tolerance(spec), f"relative error {err:.3e}"
        margins = torch.cat([buf[:GUARD], buf[-GUARD:]])
        assert bool((margins == SENTINEL).all()), "the kernel wrote outside C"
    for attrs in k.driver_attributes():
        assert attrs["local_bytes"] == 0, attrs
