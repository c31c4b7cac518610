"""GPU correctness of the gemv strategy (decode-sized GEMMs): every case of gemv_cases.py
against float64, every element written, nothing outside C, no local memory.

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_gemv_gpu.py -m gpu
"""
from __future__ import annotations

import zlib

import pytest

import make_bundle
from deepgen.spec import GemmSpec
from test_gemm_gpu import GUARD, SENTINEL, _guarded_c

pytestmark = pytest.mark.gpu

CASES = make_bundle.gemv_cases().cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gemv_case_matches_float64(case, kernels):
    import torch

    from deepgen.runtime import measure

    name, spec_fields, given, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.gemv(name, spec_fields, given)
    assert k.spec == spec and k.config["strategy"] == "gemv"
    for key, value in given.items():
        assert k.config[key] == value, key
    torch.manual_seed(zlib.crc32(name.encode()))
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
