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

import make_bundle
import pytest
import quant_gpu
from quant_gpu import tolerance

from deepgen.dtypes import DTYPES
from deepgen.spec import GemmSpec

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("fp8_block").cases()
ERRORS: dict = {}


hopper = quant_gpu.hopper_fixture(ERRORS, "DEEPGEN_FP8_BLOCK_ERRORS", "fp8")


def block_scales(spec: GemmSpec, g) -> dict:
    """measure.scale_operands drawn on the CPU from `g` (0.25 .. 2.25), on the GPU, as the
    kernel takes them: scale_a (K/128, M), scale_b (N/128, K/128) (deepgen.gemm takes
    scale_a.t(): (M, K/128), M-major)."""
    from deepgen.runtime import measure

    return {k: v.cuda() for k, v in measure.scale_operands(spec, "cpu", g).items()}


def _operands(spec, seed: int):
    """Random fp8 A and W (torch's global generator, seeded), block scales from a generator."""
    import torch
    from deepgen.runtime import measure

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    fp8 = getattr(torch, DTYPES[spec.dtype].torch)

    def one(_run: int):
        a = torch.randn(spec.M, spec.K, device="cuda").to(fp8)
        w = torch.randn(spec.N, spec.K, device="cuda").to(fp8)
        scale_args = block_scales(spec, g)
        return (a, w.t(), *measure.dequantized(spec, a, w.t(), scale_args), scale_args)

    return one


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_block_case_matches_float64(case, kernels, hopper):
    quant_gpu.check_case(kernels, "fp8_block", case, ERRORS, _operands)


def test_gemm_block_form_matches_float64_and_torch(kernels, hopper):
    import torch
    from deepgen.runtime import measure, preload

    import deepgen

    name = "block-4096x2112x7168"
    spec = GemmSpec(**next(c[1] for c in CASES if c[0] == name))
    if kernels.bundle is None:
        pytest.skip("needs the bundle (preload)")
    preload(kernels.bundle / "fp8_block" / name)  # (alpha, beta given: the chain with them)
    preload(kernels.bundle / "fp8_block" / f"{name}-plain")  # what alpha 1, beta 0 asks for
    g = torch.Generator().manual_seed(11)
    a = torch.randn(spec.M, spec.K, device="cuda").to(torch.float8_e4m3fn)
    w = torch.randn(spec.N, spec.K, device="cuda").to(torch.float8_e4m3fn)
    scale_args = block_scales(spec, g)
    sa, sb = scale_args["scale_a"].t(), scale_args["scale_b"]  # the API's scale_a: (M, K/128)
    out = deepgen.gemm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    a64, b64 = measure.dequantized(spec, a, w.t(), scale_args)
    ref = a64 @ b64
    theirs = a64.bfloat16() @ b64.bfloat16()  # torch: dequantize, bf16 matmul
    err, err_torch = measure.rel_error(out, ref), measure.rel_error(theirs, ref)
    ERRORS["api-block-vs-torch-dequant-bf16"] = {"deepgen": err, "torch": err_torch}
    assert out.shape == (spec.M, spec.N) and out.dtype == torch.bfloat16
    assert err <= tolerance(spec), err
    # a row-major scale_a (copied into the kernel's layout per call) gives the same result
    again = deepgen.gemm(a, w.t(), scale_a=sa.contiguous(), scale_b=sb,
                         out_dtype=torch.bfloat16)
    assert torch.equal(again, out)
    # alpha 1, beta 0 ran the kernel without alpha_beta; alpha and beta the one with it
    from deepgen import scaled
    assert () in {k.spec.epilogue.steps for k in scaled._by_spec.values()}
    c = torch.randn(spec.M, spec.N, device="cuda").bfloat16()
    want = 2.0 * ref + 0.5 * c.double()
    deepgen.gemm(a, w.t(), out=c, scale_a=sa, scale_b=sb, alpha=2.0, beta=0.5)
    assert measure.rel_error(c, want) <= tolerance(spec)
