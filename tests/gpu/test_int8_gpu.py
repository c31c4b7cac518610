"""GPU correctness of int8 (w8a8) GEMMs (wgmma .s32.s8.s8, layout NT; the CPU side:
tests/test_int8.py): every case of int8_cases.py against float64 of the dequantized inputs
(a * scale_a) @ (b * scale_b), inputs uniform in -127..127, C poisoned, every element
written, nothing written outside C, no local memory; deepgen.gemm's int8 form against
torch._int_mm followed by the scaling in torch (the issue's reference).

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_int8_gpu.py -m gpu

The integer products are exact (s32 on the tensor cores; the conversion to f32 is exact while
|acc| < 2^24, which full-range inputs keep up to K ~ 1000 at worst and random ones far beyond),
so f32 output is held to 1e-6 (deepgen/dtypes.py: only the f32 scaling's rounding remains);
bf16/f16 output to the output type's rounding. DEEPGEN_INT8_ERRORS=FILE writes each case's
measured relative error there (JSON).
"""
from __future__ import annotations

import make_bundle
import pytest
import quant_gpu
from quant_gpu import tolerance

from deepgen.spec import GemmSpec

pytestmark = pytest.mark.gpu

CASES = make_bundle.strategy_cases("int8").cases()
ERRORS: dict = {}


hopper = quant_gpu.hopper_fixture(ERRORS, "DEEPGEN_INT8_ERRORS", "int8")


def _operand(spec: GemmSpec, name: str, g):
    """A or B as the kernel takes it (NT: a (M, K) row-major, b the (K, N) view of an (N, K)
    row-major w; batched: a leading batch dimension), uniform in -127..127."""
    import torch

    rows, cols = (spec.M, spec.K) if name == "A" else (spec.N, spec.K)
    batch = (spec.batch,) if spec.batch > 1 else ()
    t = torch.randint(-127, 128, (*batch, rows, cols), generator=g, dtype=torch.int8).cuda()
    return t if name == "A" else t.transpose(-2, -1)


def _operands(spec, seed: int):
    """A, B and the scales (about 1/127 as a quantizer's: results of order sqrt(K)) from one
    generator."""
    import torch
    from deepgen.runtime import measure

    g = torch.Generator().manual_seed(seed)

    def one(_run: int):
        a, b = _operand(spec, "A", g), _operand(spec, "B", g)
        sa, sb = quant_gpu.scales(spec, g, unit=127)
        scale_args = {} if sa is None else {"scale_a": sa, "scale_b": sb}
        return (a, b, *measure.dequantized(spec, a, b, scale_args), scale_args)

    return one


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_int8_case_matches_float64(case, kernels, hopper):
    quant_gpu.check_case(kernels, "int8", case, ERRORS, _operands)


@pytest.mark.parametrize("name,out_dtype", [("int8-rowwise-4096", "bfloat16"),
                                            ("int8-rowwise-f32-4096", "float32")])
def test_gemm_int8_matches_int_mm_then_scaled(kernels, hopper, name, out_dtype):
    """deepgen.gemm(a, w.t(), scale_a=(M, 1), scale_b=(1, N), out_dtype=) against
    torch._int_mm(a, w.t()) * scale_a * scale_b in torch and float64; f32 out equals the
    exact product scaled in f32 to 1e-6."""
    import torch
    from deepgen.runtime import measure, preload

    import deepgen

    spec_fields = next(c[1] for c in CASES if c[0] == name)
    spec = GemmSpec(**spec_fields)
    if kernels.bundle is None:
        pytest.skip("needs the bundle (preload)")
    preload(kernels.bundle / "int8" / name)
    g = torch.Generator().manual_seed(9)
    a = torch.randint(-127, 128, (spec.M, spec.K), generator=g, dtype=torch.int8).cuda()
    w = torch.randint(-127, 128, (spec.N, spec.K), generator=g, dtype=torch.int8).cuda()
    sa = (0.25 + torch.rand(spec.M, 1, generator=g)).cuda() / 127
    sb = (0.25 + torch.rand(1, spec.N, generator=g)).cuda() / 127
    dt = getattr(torch, out_dtype)
    out = deepgen.gemm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=dt)
    exact = torch._int_mm(a, w.t())  # int32, exact
    ref = exact.double() * sa.double() * sb.double()
    theirs = (exact.float() * sa * sb).to(dt)
    err, err_torch = measure.rel_error(out, ref), measure.rel_error(theirs, ref)
    ERRORS[f"api-{name}-vs-int_mm"] = {"deepgen": err, "torch": err_torch}
    assert out.dtype == dt and out.shape == (spec.M, spec.N)
    assert err <= tolerance(spec), err
    assert measure.rel_error(out, theirs.double()) <= 2 * tolerance(spec)
    # the accumulator is exact: with scales of 1 and f32 out every element is the int32
    # sum (|acc| < 2^24 here), bit for bit
    if dt is torch.float32:
        ones = deepgen.gemm(a, w.t(), scale_a=torch.ones(spec.M, 1, device="cuda"),
                            scale_b=torch.ones(1, spec.N, device="cuda"), out_dtype=dt)
        assert exact.abs().max().item() < 2**24
        assert torch.equal(ones, exact.float())
