"""GPU correctness of block-scaled fp8 GEMMs (GemmSpec.scale "block"; the CPU side:
tests/test_fp8_block.py): every case of fp8_block_cases.py against float64 of the
dequantized inputs (a[m, k] * scale_a[m, k // 128]) @ (w[n, k] * scale_b[n // 128, k // 128])
with C poisoned, every element written, nothing written outside C, no local memory; and
deepgen.gemm's block form (M-major scale_a, as DeepGEMM takes it) against the same reference
and against torch's dequantize + bf16 matmul.

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_fp8_block_gpu.py -m gpu

DEEPGEN_FP8_BLOCK_ERRORS=FILE writes each case's measured relative error (JSON): the f32
promotion every 128 of K should keep the error at the output type's rounding, at any K.
"""
from __future__ import annotations

import json
import os
import zlib

import pytest

import make_bundle
from deepgen.dtypes import DTYPES
from deepgen.spec import GemmSpec
from test_gemm_gpu import GUARD, SENTINEL, _guarded_c

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("fp8_block").cases()
ERRORS: dict = {}


def tolerance(spec: GemmSpec) -> float:
    return max(DTYPES[spec.dtype].tolerance, DTYPES[spec.out_dtype].tolerance)


@pytest.fixture(scope="module")
def hopper():
    import torch

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"fp8 wgmma kernels are sm_90a: {torch.cuda.get_device_name()} is not "
                    f"Hopper")
    yield
    path = os.environ.get("DEEPGEN_FP8_BLOCK_ERRORS")
    if path:
        with open(path, "w") as f:
            json.dump(ERRORS, f, indent=1, sort_keys=True)


def block_scales(M: int, N: int, K: int, g):
    """(scale_a (M, K/128) M-major, scale_b (N/128, K/128)) in 0.25 .. 2.25, on the GPU."""
    import torch

    kb, nb = -(-K // 128), -(-N // 128)
    sa_t = (0.25 + 2 * torch.rand(kb, M, generator=g)).cuda()
    sb = (0.25 + 2 * torch.rand(nb, kb, generator=g)).cuda()
    return sa_t.t(), sb


def dequantized(a, w, sa, sb):
    """float64 a * scale_a per 1 x 128 block, w (N, K) * scale_b per 128 x 128 block."""
    K = a.shape[1]
    ka = sa.double().repeat_interleave(128, dim=1)[:, :K]
    kw = sb.double().repeat_interleave(128, dim=0)[:w.shape[0]].repeat_interleave(128, dim=1)
    return a.double() * ka, w.double() * kw[:, :K]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_block_case_matches_float64(case, kernels, hopper):
    import torch

    from deepgen.runtime import measure

    name, spec_fields, given, alpha, beta = case
    spec = GemmSpec(**spec_fields)
    k = kernels.strategy_case("fp8_block", name, spec_fields, given)
    assert k.spec == spec and k.config["strategy"] == "wgmma"
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    torch.manual_seed(zlib.crc32(name.encode()))
    fp8 = getattr(torch, DTYPES[spec.dtype].torch)
    errs = []
    for _run in range(2):
        a = torch.randn(spec.M, spec.K, device="cuda").to(fp8)
        w = torch.randn(spec.N, spec.K, device="cuda").to(fp8)
        extra = {n: measure.operand(spec, n) for n in spec.epilogue.operands()}
        sa, sb = block_scales(spec.M, spec.N, spec.K, g)
        buf, c = _guarded_c(spec, beta)
        a64, w64 = dequantized(a, w, sa, sb)
        ref = measure.reference(a64, w64.t(), c, alpha, beta, spec.epilogue, extra.get("bias"))
        k(a, w.t(), c, alpha=alpha, beta=beta, scale_a=sa.t(), scale_b=sb, **extra)
        torch.cuda.synchronize()
        nan = int(torch.isnan(c).sum())
        assert nan == 0, f"{nan} elements of C not written"
        errs.append(measure.rel_error(c, ref))
        margins = torch.cat([buf[:GUARD], buf[-GUARD:]])
        assert bool((margins == SENTINEL).all()), "the kernel wrote outside C"
    ERRORS[name] = {"errors": errs, "tolerance": tolerance(spec), "config": k.config}
    assert max(errs) <= tolerance(spec), f"relative errors {errs}"
    for attrs in k.driver_attributes():
        assert attrs["local_bytes"] == 0, attrs


def test_gemm_block_form_matches_float64_and_torch(kernels, hopper):
    import torch

    import deepgen
    from deepgen.runtime import measure, preload

    name = "block-4096x2112x7168"
    spec = GemmSpec(**next(c[1] for c in CASES if c[0] == name))
    if kernels.bundle is None:
        pytest.skip("needs the bundle (preload)")
    preload(kernels.bundle / "fp8_block" / name)
    g = torch.Generator().manual_seed(11)
    a = torch.randn(spec.M, spec.K, device="cuda").to(torch.float8_e4m3fn)
    w = torch.randn(spec.N, spec.K, device="cuda").to(torch.float8_e4m3fn)
    sa, sb = block_scales(spec.M, spec.N, spec.K, g)
    out = deepgen.gemm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    a64, w64 = dequantized(a, w, sa, sb)
    ref = a64 @ w64.t()
    theirs = a64.bfloat16() @ w64.bfloat16().t()  # torch: dequantize, bf16 matmul
    err, err_torch = measure.rel_error(out, ref), measure.rel_error(theirs, ref)
    ERRORS["api-block-vs-torch-dequant-bf16"] = {"deepgen": err, "torch": err_torch}
    assert out.shape == (spec.M, spec.N) and out.dtype == torch.bfloat16
    assert err <= tolerance(spec), err
    # a row-major scale_a (copied into the kernel's layout per call) gives the same result
    again = deepgen.gemm(a, w.t(), scale_a=sa.contiguous(), scale_b=sb,
                         out_dtype=torch.bfloat16)
    assert torch.equal(again, out)
